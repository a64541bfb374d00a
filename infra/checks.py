"""`ws check`: everything about the workspace that can be checked offline, as one list of results.

Each area contributes check functions; a check returns one or more :class:`CheckResult`. A check that
cannot run (for example a repo that is not checked out) says so as ``skipped`` with the reason; it is
never silently left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from infra.errors import CheckResult
from infra.generate import stale_files
from infra.migrate.offline import check_sqlite_migration
from infra.schema.checks import check_schema_alignment
from infra.stack.budget import check_connection_budget
from infra.stack.stackfiles import check_stack_files
from infra.workspace.env import required_report
from infra.workspace.graph import edges_of, stages
from infra.workspace.located import LoadedWorkspace

Check = Callable[[LoadedWorkspace], Iterable[CheckResult]]


def check_model(loaded: LoadedWorkspace) -> Iterable[CheckResult]:
    ws = loaded.model
    yield CheckResult(
        "workspace.yaml",
        "ok",
        f"{len(ws.repos)} repos, {len(ws.environments)} environments; names, references, secrets, ports valid",
    )
    layers = stages(edges_of(ws))
    yield CheckResult("dependency graph", "ok", " -> ".join("{" + ", ".join(layer) + "}" for layer in layers))


def check_required_env(loaded: LoadedWorkspace) -> Iterable[CheckResult]:
    missing = required_report(loaded.model)
    if missing:
        detail = "; ".join(f"{repo} needs {var} in {env}" for env, repo, var in missing)
        yield CheckResult("required env", "fail", detail)
    else:
        total = sum(len(r.requires) for r in loaded.model.repos.values()) * len(loaded.model.environments)
        yield CheckResult("required env", "ok", f"{total} required variables defined in every environment")


def check_checkouts(loaded: LoadedWorkspace) -> Iterable[CheckResult]:
    for name in loaded.model.repos:
        folder = loaded.repo_dir(name)
        if folder.is_dir():
            yield CheckResult(f"checkout {name}", "ok", str(folder))
        else:
            yield CheckResult(
                f"checkout {name}", "skipped", f"{folder} is not checked out; checks that read its files are skipped"
            )


def check_generated(loaded: LoadedWorkspace) -> Iterable[CheckResult]:
    stale = stale_files(loaded)
    if stale:
        yield CheckResult("generated files", "fail", "stale: " + ", ".join(stale) + " (run `ws generate`)")
    else:
        yield CheckResult("generated files", "ok", "up to date")


CHECKS: list[Check] = [
    check_model,
    check_required_env,
    check_checkouts,
    check_generated,
    check_stack_files,
    check_connection_budget,
    check_schema_alignment,
    check_sqlite_migration,
]


def run_checks(loaded: LoadedWorkspace) -> list[CheckResult]:
    results: list[CheckResult] = []
    for check in CHECKS:
        results.extend(check(loaded))
    return results
