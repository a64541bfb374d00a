"""The schema checks of a deployment: ``infra.schema``'s alignment and drift, in the shape ``infra.deploy`` reads.

``infra.deploy`` and ``infra.schema`` are independent of each other; this module, one layer above both, is the
:class:`infra.deploy.schema_gate.SchemaChecks` function that the CLI hands to the deploy pipeline, `ws health`,
`ws status` and `ws up`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from infra.deploy.schema_gate import SchemaResult
from infra.schema.align import check_alignment
from infra.schema.drift import drift
from infra.schema.load import LoadedSchemas, load_schemas
from infra.workspace.located import LoadedWorkspace

NOT_SELECTED = "not selected by --repos"


def _summarise(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:3])
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{len(problems)} problem(s): {shown}{more}"


def _only(schemas: LoadedSchemas, keep: Collection[str], reason: str) -> LoadedSchemas:
    """``schemas`` restricted to the repos in ``keep``; the others are skipped with ``reason``."""
    skipped = {**schemas.skipped, **{r: reason for r in schemas.repos if r not in keep}}
    repos = {r: s for r, s in schemas.repos.items() if r in keep}
    return dataclasses.replace(schemas, repos=repos, skipped=skipped)


def schema_checks(
    loaded: LoadedWorkspace, database_url: str | None, repos: Sequence[str] | None = None
) -> list[SchemaResult]:
    """Alignment and drift of ``repos`` (all when None). A subset deploy validates only its own repos: alignment
    compares the selected repos with the primary, drift reads only their namespaces; the result names the others as
    not checked (their migrations did not run in this deployment, so their tables may not exist yet)."""
    results = []
    everything: LoadedSchemas | None = None  # every repo's schemas, read once for both checks
    selected = list(repos) if repos else None
    unchecked = [r for r in loaded.model.repos if selected is not None and r not in selected]
    note = f" (not checked: {', '.join(unchecked)}: {NOT_SELECTED})" if unchecked else ""
    unknown = ""  # repos in scope whose schema could not be read (not checked out): nothing is "ok" without them
    try:
        everything = load_schemas(loaded)
        scope = None if selected is None else {*selected, loaded.model.primary}
        unread = {r: why for r, why in everything.skipped.items() if scope is None or r in scope}
        unknown = "; ".join(f"{repo} {why}" for repo, why in unread.items())
        schemas = everything if scope is None else _only(everything, scope, NOT_SELECTED)
        report = check_alignment(schemas)
        if report.ok and unknown:
            detail = f"skipped: {unknown}; of the others {report.aligned}/{report.total} shared models aligned{note}"
            results.append(SchemaResult("alignment", None, detail))
        elif report.ok:
            results.append(
                SchemaResult("alignment", True, f"{report.aligned}/{report.total} shared models aligned{note}")
            )
        else:
            differences = [str(d) for d in report.differences()]
            detail = f"{report.aligned}/{report.total} aligned; {_summarise(differences)}{note}"
            results.append(SchemaResult("alignment", False, detail))
    except Exception as exc:  # a checker's own failure is reported, not raised into the pipeline
        results.append(SchemaResult("alignment", False, f"alignment check failed: {exc}"))
    if database_url is None:
        results.append(SchemaResult("drift", None, "not checked: no database"))
        return results
    try:
        # a subset reads only its repos' namespaces, with every repo's models declared (a join table in one
        # namespace may come from another repo's relation to a shared model)
        if everything is None:
            everything = load_schemas(loaded)
        found = drift(loaded, database_url, everything, only=set(selected) if selected else None)
        if found.items:
            results.append(
                SchemaResult("drift", False, _summarise([f"{i.object}: {i.detail}" for i in found.items]) + note)
            )
        elif unknown:
            detail = f"skipped: {unknown}; no drift in the other repos' {found.tables} tables{note}"
            results.append(SchemaResult("drift", None, detail))
        else:
            results.append(SchemaResult("drift", True, f"no drift in {found.tables} tables{note}"))
    except Exception as exc:
        results.append(SchemaResult("drift", False, f"drift check failed: {exc}"))
    return results
