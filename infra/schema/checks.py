"""The `ws check` entry of the schema area: alignment of every secondary's shared models with the primary."""

from __future__ import annotations

from collections.abc import Iterable

from infra.errors import CheckResult, WorkspaceError
from infra.schema.load import load_schemas, schema_repos
from infra.workspace.located import LoadedWorkspace


def check_schema_alignment(loaded: LoadedWorkspace) -> Iterable[CheckResult]:
    """One result per secondary: aligned, differs (with each difference), or skipped with the reason."""
    secondaries = [r for r in schema_repos(loaded) if r != loaded.model.primary]
    if not secondaries:
        yield CheckResult("schema alignment", "skipped", "no secondary repo declares a schema")
        return
    try:
        schemas = load_schemas(loaded)
    except WorkspaceError as exc:
        yield CheckResult("schema alignment", "fail", "; ".join(str(p) for p in exc.problems))
        return
    primary_skip = schemas.skipped.get(schemas.primary)
    if primary_skip:  # nothing to compare with: no alignment (nor its import) is needed
        for repo in secondaries:
            reason = schemas.skipped.get(repo) or f"primary {schemas.primary} {primary_skip}"
            yield CheckResult(f"schema alignment {repo}", "skipped", f"skipped: {reason}")
        return
    from infra.schema.align import check_alignment  # here: it imports the Prisma rules, needed only now

    report = check_alignment(schemas)
    own = [str(p) for p in report.problems if p.repo == schemas.primary]
    if own:  # the primary's own shared_models and Prisma's rules on its schema
        yield CheckResult(f"schema {schemas.primary}", "fail", "; ".join(own))
    for repo in secondaries:
        name = f"schema alignment {repo}"
        if repo in schemas.skipped:
            yield CheckResult(name, "skipped", f"skipped: {schemas.skipped[repo]}")
            continue
        statuses = [s for s in report.statuses if s.repo == repo]
        problems = [p for p in report.problems if p.repo == repo]
        aligned = sum(1 for s in statuses if s.aligned)
        differences = [str(d) for s in statuses for d in s.differences] + [str(p) for p in problems]
        if differences:
            yield CheckResult(name, "fail", f"{aligned}/{len(statuses)} aligned: " + "; ".join(differences))
        else:
            yield CheckResult(name, "ok", f"{aligned}/{len(statuses)} shared models and enums aligned (100%)")
