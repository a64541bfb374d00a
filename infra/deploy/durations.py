"""How long deployments take, per environment and per part, against the mission's 5-minute target.

Read from the deploy ledger (``ws.deployments`` and ``ws.deployment_steps``): real (not dry-run), finished
deployments of the window. For each environment: the whole deployment's duration (median, p90 and the last
one) and the same per part of the pipeline (infra, migrate, validate, each deploy stage, integration, health,
rollback), where a part's duration in one deployment runs from its first step's start to its last step's end
(the repos of one stage deploy side by side).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra.deploy import dora, ledger
from infra.workspace.located import LoadedWorkspace

TARGET_SECONDS = 300.0  # the mission: a coordinated deployment of the three repos in under 5 minutes
PART_ORDER = ("infra", "migrate", "validate", "deploy", "integration", "health", "rollback")


def _percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@dataclass(frozen=True)
class Durations:
    """Seconds of one part over the window: how many, median, p90, the last one, and how many met the target."""

    count: int
    median: float | None
    p90: float | None
    last: float | None
    within_target: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Durations:
        """``values`` in time order (the last one is the latest)."""
        if not values:
            return cls(0, None, None, None, 0)
        within = sum(1 for value in values if value <= TARGET_SECONDS)
        return cls(len(values), _percentile(values, 0.5), _percentile(values, 0.9), values[-1], within)

    @property
    def meets_target(self) -> bool | None:
        """Whether the p90 is within the target (None without data)."""
        return None if self.p90 is None else self.p90 <= TARGET_SECONDS

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "median_seconds": self.median,
            "p90_seconds": self.p90,
            "last_seconds": self.last,
            "within_target": self.within_target,
            "meets_target": self.meets_target,
        }


@dataclass(frozen=True)
class EnvironmentDurations:
    environment: str
    total: Durations
    parts: dict[str, Durations] = field(default_factory=dict)  # part name (e.g. "deploy stage 2") -> durations
    reason: str = ""  # why there is no data, when there is none

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "target_seconds": TARGET_SECONDS,
            "total": self.total.as_dict(),
            "parts": {name: durations.as_dict() for name, durations in self.parts.items()},
            "reason": self.reason,
        }


def _part_name(step: str, stage: int | None) -> str:
    return f"deploy stage {stage}" if step == "deploy" and stage is not None else step


def _part_key(name: str) -> tuple[int, int]:
    step, _, stage = name.partition(" stage ")
    base = step.split(" ")[0]
    index = PART_ORDER.index(base) if base in PART_ORDER else len(PART_ORDER)
    return index, int(stage) if stage.isdigit() else 0


def read_durations(
    conn: psycopg.Connection[Any], environment: str, since: datetime, until: datetime
) -> EnvironmentDurations:
    """The environment's deployment durations in [since, until) from the ledger on ``conn``."""
    ledger.ensure_schema(conn)
    ns = sql.Identifier(ledger.NAMESPACE)
    deployments = sql.SQL(
        "SELECT id, EXTRACT(EPOCH FROM finished_at - started_at)::float8 AS seconds FROM {}.deployments"
        " WHERE environment = %s AND NOT dry_run AND finished_at IS NOT NULL"
        " AND started_at >= %s AND started_at < %s ORDER BY started_at, id"
    ).format(ns)
    parts = sql.SQL(
        "SELECT s.deployment_id, s.step, s.stage,"
        " EXTRACT(EPOCH FROM max(s.finished_at) - min(s.started_at))::float8 AS seconds"
        " FROM {}.deployment_steps s JOIN {}.deployments d ON d.id = s.deployment_id"
        " WHERE d.environment = %s AND NOT d.dry_run AND d.finished_at IS NOT NULL"
        " AND d.started_at >= %s AND d.started_at < %s AND s.finished_at IS NOT NULL AND s.status <> 'skipped'"
        " GROUP BY s.deployment_id, s.step, s.stage ORDER BY s.deployment_id"
    ).format(ns, ns)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(deployments, (environment, since, until))
        totals = [float(row["seconds"]) for row in cur.fetchall()]
        cur.execute(parts, (environment, since, until))
        by_part: dict[str, list[float]] = {}
        for row in cur.fetchall():
            by_part.setdefault(_part_name(row["step"], row["stage"]), []).append(float(row["seconds"]))
    ordered = {name: Durations.of(by_part[name]) for name in sorted(by_part, key=_part_key)}
    reason = "" if totals else "no finished deployments in the window"
    return EnvironmentDurations(environment, Durations.of(totals), ordered, reason)


def unavailable(environment: str, reason: str) -> EnvironmentDurations:
    return EnvironmentDurations(environment, Durations.of([]), {}, reason)


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}:{seconds:02d}"


def report(
    loaded: LoadedWorkspace, database_url: str | None, environments: Sequence[str], since: datetime, until: datetime
) -> list[EnvironmentDurations]:
    """Each environment's durations, read from ``database_url`` or else from its own database (located like
    `ws status`); an environment whose ledger cannot be read says why instead."""
    results = []
    for name in environments:
        url, why = (database_url, "") if database_url is not None else dora.locate_database(loaded, name)
        if url is None:
            results.append(unavailable(name, why))
            continue
        try:
            with psycopg.connect(url, connect_timeout=10) as conn:
                results.append(read_durations(conn, name, since, until))
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            results.append(unavailable(name, f"cannot read the deploy ledger: {first}"))
    return results
