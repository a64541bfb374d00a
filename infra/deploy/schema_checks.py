"""Schema alignment and live-database drift, taken from ``infra.schema`` when it provides them.

``infra.schema`` is developed separately; this module imports it lazily (``load.load_schemas``,
``align.check_alignment``, ``drift.drift``). When they are absent the result says "not available" (ok = None): shown in the validate step,
`ws health` and `ws status`, never silently skipped and never counted as a failure.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from infra.deploy.runtime import Infra
from infra.workspace.located import LoadedWorkspace


@dataclass(frozen=True)
class SchemaResult:
    name: str  # alignment | drift
    ok: bool | None
    detail: str


def _entry_points() -> tuple[Callable[..., Any] | None, Callable[..., Any] | None, Callable[..., Any] | None]:
    """(load_schemas, check_alignment, drift) from infra.schema, each None when absent."""
    found: list[Callable[..., Any] | None] = []
    for module_name, function in (
        ("infra.schema.load", "load_schemas"),
        ("infra.schema.align", "check_alignment"),
        ("infra.schema.drift", "drift"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            found.append(None)
            continue
        candidate = getattr(module, function, None)
        found.append(candidate if callable(candidate) else None)
    return found[0], found[1], found[2]


def _summarise(problems: list[Any]) -> str:
    shown = "; ".join(
        str(getattr(p, "detail", None) and f"{getattr(p, 'object', '')}: {p.detail}" or p) for p in problems[:3]
    )
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{len(problems)} problem(s): {shown}{more}"


def _only(schemas: Any, keep: Collection[str], reason: str) -> Any:
    """``schemas`` (an infra.schema LoadedSchemas) restricted to the repos in ``keep``; the others are skipped."""
    skipped = {**schemas.skipped, **{r: reason for r in schemas.repos if r not in keep}}
    repos = {r: s for r, s in schemas.repos.items() if r in keep}
    return dataclasses.replace(schemas, repos=repos, skipped=skipped)


def run(loaded: LoadedWorkspace, infra: Infra | None, repos: Sequence[str] | None = None) -> list[SchemaResult]:
    """Alignment and drift of ``repos`` (all when None). A subset deploy validates only its own repos: alignment
    compares the selected repos with the primary, drift reads only their namespaces; the result names the others as
    not checked (their migrations did not run in this deployment, so their tables may not exist yet)."""
    load_schemas, check_alignment, drift = _entry_points()
    results = []
    everything: Any = None  # every repo's schemas, read once for both checks
    selected = list(repos) if repos else None
    unchecked = [r for r in loaded.model.repos if selected is not None and r not in selected]
    note = f" (not checked: {', '.join(unchecked)}: not selected by --repos)" if unchecked else ""
    reason = "not selected by --repos"
    if load_schemas is None or check_alignment is None:
        results.append(SchemaResult("alignment", None, "not available (infra.schema provides no alignment check)"))
    else:
        try:
            everything = load_schemas(loaded)
            schemas = everything if selected is None else _only(everything, {*selected, loaded.model.primary}, reason)
            report = check_alignment(schemas)
            if report.ok:
                results.append(
                    SchemaResult("alignment", True, f"{report.aligned}/{report.total} shared models aligned{note}")
                )
            else:
                differences = list(report.differences())
                results.append(
                    SchemaResult(
                        "alignment", False, f"{report.aligned}/{report.total} aligned; {_summarise(differences)}{note}"
                    )
                )
        except Exception as exc:  # a checker's own failure is reported, not raised into the pipeline
            results.append(SchemaResult("alignment", False, f"alignment check failed: {exc}"))
    if drift is None:
        results.append(SchemaResult("drift", None, "not available (infra.schema provides no drift check)"))
    elif infra is None:
        results.append(SchemaResult("drift", None, "not checked: no database"))
    else:
        try:
            # a subset reads only its repos' namespaces, with every repo's models declared (a join table in one
            # namespace may come from another repo's relation to a shared model)
            if everything is None and load_schemas is not None:
                everything = load_schemas(loaded)
            report = drift(loaded, infra.database_url, everything, only=set(selected) if selected else None)
            items = list(report.items)
            if items:
                results.append(SchemaResult("drift", False, _summarise(items) + note))
            else:
                results.append(SchemaResult("drift", True, f"no drift in {report.tables} tables{note}"))
        except Exception as exc:
            results.append(SchemaResult("drift", False, f"drift check failed: {exc}"))
    return results
