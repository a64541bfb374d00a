"""`ws metrics`: the DORA figures of every environment plus schema alignment and migration completion.

The DORA figures come from each environment's deploy ledger (:mod:`infra.deploy.dora`); the two ratios from
the schema and migrate areas. A ratio that cannot be computed says why; nothing is invented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from infra.deploy.dora import PROMETHEUS, EnvironmentFigures, compute, locate_database, read_ledger, unavailable
from infra.errors import UsageError
from infra.migrate import scope
from infra.migrate.status import status
from infra.schema.align import check_alignment
from infra.schema.load import load_schemas
from infra.workspace.located import LoadedWorkspace


@dataclass
class Availability:
    name: str
    value: float | None
    unit: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "detail": self.detail}


@dataclass
class Report:
    window_days: int
    since: datetime
    until: datetime
    environments: list[EnvironmentFigures]
    extra: list[Availability] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_days": self.window_days,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "environments": [e.as_dict() for e in self.environments],
            **{a.name: a.as_dict() for a in self.extra},
        }


def report(
    loaded: LoadedWorkspace,
    database_url: str | None,
    *,
    environment: str | None = None,
    days: int = 30,
    now: datetime | None = None,
    extras: bool = True,
) -> Report:
    """The figures per environment. With ``database_url`` every environment's rows are read from that one
    ledger; without, each environment's ledger is read from its own database (located like `ws status`)."""
    if days < 1:
        raise UsageError("--days must be at least 1")
    until = now or datetime.now().astimezone()
    since = until - timedelta(days=days)
    names = [environment] if environment else list(loaded.model.environments)
    figures: list[EnvironmentFigures] = []
    located: dict[str, str] = {}
    if database_url is not None:
        rows = read_ledger(database_url, environment)
        names += sorted({r.environment for r in rows} - set(names))
        figures = [compute(name, [r for r in rows if r.environment == name], since, until) for name in names]
    else:
        for name in names:
            url, why = locate_database(loaded, name)
            if url is None:
                figures.append(unavailable(name, why))
                continue
            located[name] = url
            try:
                env_rows = read_ledger(url, name)
            except UsageError as exc:
                figures.append(unavailable(name, str(exc)))
                continue
            figures.append(compute(name, env_rows, since, until))
    extra: list[Availability] = []
    if extras:
        target = environment or ("local" if "local" in loaded.model.environments else names[0])
        migration_url = database_url or located.get(target)
        extra.append(schema_alignment(loaded))
        if migration_url is None:
            reason = f"unavailable: the {target} database is not reachable; pass --database-url"
            extra.append(Availability("migration_completion", None, "ratio", reason))
        else:
            extra.append(migration_completion(loaded, migration_url))
    return Report(days, since, until, figures, extra)


def schema_alignment(loaded: LoadedWorkspace) -> Availability:
    """Share of the secondaries' shared models and enums aligned with the primary (infra.schema's check)."""
    try:
        result = check_alignment(load_schemas(loaded))
    except Exception as exc:  # another area's failure must not hide the DORA figures; it is shown instead
        return Availability("schema_alignment", None, "ratio", f"unavailable: {type(exc).__name__}: {exc}")
    if result.total == 0:
        reason = "; ".join(f"{k}: {v}" for k, v in result.skipped.items()) or "no shared models declared"
        return Availability("schema_alignment", None, "ratio", f"unavailable: {reason}")
    return _ratio("schema_alignment", result.aligned, result.total, "shared models and enums aligned")


def migration_completion(loaded: LoadedWorkspace, database_url: str) -> Availability:
    """Share of agents' SQLite memory files migrated and validated in PostgreSQL (infra.migrate's status)."""
    try:
        found = scope(loaded, None, None, database_url)
        counts = status(found.url, found.sources, found.namespaces).counts()
    except Exception as exc:  # shown, never hidden: see schema_alignment
        return Availability("migration_completion", None, "ratio", f"unavailable: {type(exc).__name__}: {exc}")
    if not counts.get("total"):
        return Availability("migration_completion", None, "ratio", "unavailable: no SQLite files to migrate found")
    return _ratio(
        "migration_completion", counts["validated"], counts["total"], "agents' SQLite files migrated and validated"
    )


def _ratio(name: str, done: int, total: int, what: str) -> Availability:
    return Availability(name, round(done / total, 4) if total else None, "ratio", f"{done} of {total} {what}")


def prometheus(result: Report) -> str:
    """The figures in the Prometheus text exposition format; unavailable figures appear as comments."""
    lines: list[str] = []
    for key, (metric, help_text) in PROMETHEUS.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for env in result.environments:
            figure = env.figures()[key]
            label = env.environment.replace("\\", "\\\\").replace('"', '\\"')
            if figure.value is None:
                lines.append(f'# {metric}{{environment="{label}"}} unavailable: {figure.detail}')
            else:
                lines.append(f'{metric}{{environment="{label}"}} {figure.value:g}')
    lines += ["# HELP ws_deployments_total Deployments in the window.", "# TYPE ws_deployments_total gauge"]
    lines += [f'ws_deployments_total{{environment="{e.environment}"}} {e.deployments}' for e in result.environments]
    for extra in result.extra:
        metric = f"ws_{extra.name}_ratio"
        lines += [
            f"# HELP {metric} {extra.detail if extra.value is not None else extra.name}",
            f"# TYPE {metric} gauge",
        ]
        lines.append(f"{metric} {extra.value:g}" if extra.value is not None else f"# {metric} {extra.detail}")
    return "\n".join(lines) + "\n"
