"""SQLite -> PostgreSQL migration of agent memories: check, run, validate, cleanup, status.

Driven by ``repos.<repo>.sqlite_migration`` in workspace.yaml. Modules: source (SQLite files), target
(PostgreSQL target tables), ledger (every statement on the ws_migrate schema), convert (named rules), encode (binary
COPY tuples and the content hash over them), plan (table mapping), check, load (run), validate, cleanup, status,
progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra.errors import UsageError
from infra.workspace.located import LoadedWorkspace

if TYPE_CHECKING:
    from infra.migrate.source import SourceFile


@dataclass(frozen=True)
class MigrationScope:
    """What one `ws migrate` command acts on: the files, the database, and the repos' folders."""

    sources: list[SourceFile]
    url: str
    repos: list[str]
    namespaces: list[str]
    archive_dirs: dict[str, Path]
    repo_dirs: dict[str, Path]


def scope(loaded: LoadedWorkspace, repos: list[str] | None, environment: str | None, url: str | None) -> MigrationScope:
    # Imported here: target loads psycopg, and source SQLite and hashing, which `ws check` (through
    # infra.migrate.offline) needs only for checked-out repos.
    from infra.migrate.source import archive_dir, discover
    from infra.migrate.target import database_url

    sources = discover(loaded, repos)
    declared = [
        n for n, r in loaded.model.repos.items() if r.sqlite_migration is not None and (not repos or n in repos)
    ]
    if not declared:
        raise UsageError(
            f"{loaded.path.name}: no repo declares sqlite_migration; add repos.<repo>.sqlite_migration "
            "(source: agents/*/memory.db) to migrate SQLite memories"
        )
    namespaces = []
    for name in declared:
        repo = loaded.model.repos[name]
        spec = repo.sqlite_migration
        assert spec is not None
        namespace = spec.namespace or (repo.schema_.namespace if repo.schema_ else None)
        if namespace:
            namespaces.append(namespace)
    return MigrationScope(
        sources=sources,
        url=database_url(loaded, environment, url, declared[0]),
        repos=declared,
        namespaces=sorted(set(namespaces)),
        archive_dirs={name: archive_dir(loaded, name) for name in declared},
        repo_dirs={name: loaded.repo_dir(name) for name in declared},
    )
