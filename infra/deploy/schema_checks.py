"""Schema alignment and live-database drift, taken from ``infra.schema`` when it provides them.

``infra.schema`` is developed separately; this module imports it lazily (``load.load_schemas``,
``align.check_alignment``, ``drift.drift``). When they are absent the result says "not available" (ok = None): shown in the validate step,
`ws health` and `ws status`, never silently skipped and never counted as a failure.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.deploy.runtime import Infra
from infra.workspace.loader import LoadedWorkspace


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


def run(loaded: LoadedWorkspace, infra: Infra | None) -> list[SchemaResult]:
    load_schemas, check_alignment, drift = _entry_points()
    results = []
    schemas: Any = None
    if load_schemas is None or check_alignment is None:
        results.append(SchemaResult("alignment", None, "not available (infra.schema provides no alignment check)"))
    else:
        try:
            schemas = load_schemas(loaded)
            report = check_alignment(schemas)
            if report.ok:
                results.append(
                    SchemaResult("alignment", True, f"{report.aligned}/{report.total} shared models aligned")
                )
            else:
                differences = list(report.differences())
                results.append(
                    SchemaResult(
                        "alignment", False, f"{report.aligned}/{report.total} aligned; {_summarise(differences)}"
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
            report = (
                drift(loaded, infra.database_url, schemas) if schemas is not None else drift(loaded, infra.database_url)
            )
            items = list(report.items)
            if items:
                results.append(SchemaResult("drift", False, _summarise(items)))
            else:
                results.append(SchemaResult("drift", True, f"no drift in {report.tables} tables"))
        except Exception as exc:
            results.append(SchemaResult("drift", False, f"drift check failed: {exc}"))
    return results
