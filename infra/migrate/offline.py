"""The offline part of `ws check` for sqlite_migration: the declaration resolves and its files are found.

Profiling the files against the target database is `ws migrate check` (it needs the database); this only
checks what can be checked without one.
"""

from __future__ import annotations

from collections.abc import Iterable

from infra.errors import CheckResult, UsageError
from infra.workspace.located import LoadedWorkspace


def check_sqlite_migration(loaded: LoadedWorkspace) -> Iterable[CheckResult]:
    for name, repo in loaded.model.repos.items():
        spec = repo.sqlite_migration
        if spec is None:
            continue
        label = f"sqlite migration {name}"
        namespace = spec.namespace or (repo.schema_.namespace if repo.schema_ else None)
        if namespace is None:
            yield CheckResult(
                label,
                "fail",
                f"repos.{name}.sqlite_migration has no target namespace: set sqlite_migration.namespace or give the "
                "repo a schema with a namespace",
            )
            continue
        folder = loaded.repo_dir(name)
        if not folder.is_dir():
            yield CheckResult(label, "skipped", f"checkout {folder} is not present")
            continue
        from infra.migrate.source import discover  # here: SQLite and hashing, for checked-out repos only

        try:
            files = discover(loaded, [name])
        except UsageError as exc:
            yield CheckResult(label, "fail", str(exc))
            continue
        yield CheckResult(
            label,
            "ok",
            f"{len(files)} file(s) match {spec.source} -> schema {namespace}; `ws migrate check` profiles them "
            "against the database",
        )
