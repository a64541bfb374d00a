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
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra.deploy import dora, ledger
from infra.workspace.located import LoadedWorkspace

TARGET_SECONDS = 300.0  # the mission: a coordinated deployment of the three repos in under 5 minutes
STATUS_WINDOW_DAYS = 30  # `ws status` puts the last deployment beside the median and p90 of this window
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


# The deployments the figures count: real (not dry runs) and finished, in one environment.
_FINISHED = sql.SQL("environment = %s AND NOT dry_run AND finished_at IS NOT NULL")
_IN_WINDOW = sql.SQL(" AND started_at >= %s AND started_at < %s")


def _finished_deployments(condition: sql.Composable, order: sql.Composable) -> sql.Composed:
    """Finished deployments meeting ``condition`` (after the environment's), each with its seconds."""
    return sql.SQL(
        "SELECT id, status, finished_at, EXTRACT(EPOCH FROM finished_at - started_at)::float8 AS seconds"
        " FROM {deployments} WHERE {finished}{condition} ORDER BY {order}"
    ).format(
        deployments=sql.Identifier(ledger.NAMESPACE, "deployments"),
        finished=_FINISHED,
        condition=condition,
        order=order,
    )


def _parts(deployments: sql.Composable) -> sql.Composed:
    """The parts of the deployments ``deployments`` selects (a subquery or a placeholder for one id): each step of
    each stage from its first start to its last finish, skipped steps left out."""
    return sql.SQL(
        "SELECT deployment_id, step, stage, EXTRACT(EPOCH FROM max(finished_at) - min(started_at))::float8 AS seconds"
        " FROM {steps} WHERE deployment_id IN ({deployments})"
        " AND finished_at IS NOT NULL AND status <> 'skipped' GROUP BY deployment_id, step, stage ORDER BY deployment_id"
    ).format(steps=sql.Identifier(ledger.NAMESPACE, "deployment_steps"), deployments=deployments)


def read_durations(
    conn: psycopg.Connection[Any], environment: str, since: datetime, until: datetime
) -> EnvironmentDurations:
    """The environment's deployment durations in [since, until) from the ledger on ``conn``."""
    ledger.ensure_schema(conn)
    deployments = _finished_deployments(_IN_WINDOW, sql.SQL("started_at, id"))
    parts = _parts(
        sql.SQL("SELECT id FROM {} WHERE {}{}").format(
            sql.Identifier(ledger.NAMESPACE, "deployments"), _FINISHED, _IN_WINDOW
        )
    )
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


@dataclass(frozen=True)
class LastDeployment:
    """The latest finished (not dry-run) deployment of an environment: how long it took, part by part."""

    deployment_id: int
    status: str
    seconds: float
    finished_at: datetime
    parts: dict[str, float] = field(default_factory=dict)  # part name -> seconds, in pipeline order

    @property
    def within_target(self) -> bool:
        return self.seconds <= TARGET_SECONDS

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "status": self.status,
            "seconds": self.seconds,
            "within_target": self.within_target,
            "finished_at": self.finished_at.isoformat(),
            "parts": self.parts,
        }


@dataclass(frozen=True)
class DeployTime:
    """`ws status`: the last deployment's duration against the target, and the window's figures beside it."""

    environment: str
    last: LastDeployment | None
    window: EnvironmentDurations
    window_days: int = STATUS_WINDOW_DAYS

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_seconds": TARGET_SECONDS,
            "last": self.last.as_dict() if self.last else None,
            "window_days": self.window_days,
            **self.window.total.as_dict(),
        }

    def describe(self) -> str:
        """One line: ``last 4:10 (deployment 7, succeeded): within the 5:00 target; median ..., p90 ...``."""
        target = format_seconds(TARGET_SECONDS)
        if self.last is None:
            return f"no finished deployment yet (target {target})"
        last = self.last
        verdict = f"within the {target} target" if last.within_target else f"OVER the {target} target"
        text = f"last {format_seconds(last.seconds)} (deployment {last.deployment_id}, {last.status}): {verdict}"
        total = self.window.total
        if total.count:
            text += (
                f"; median {format_seconds(total.median)}, p90 {format_seconds(total.p90)} over {total.count} "
                f"deployment(s) in {self.window_days} days"
            )
        if last.parts:
            text += " | " + ", ".join(f"{name} {format_seconds(value)}" for name, value in last.parts.items())
        return text


def deploy_time(
    conn: psycopg.Connection[Any], environment: str, now: datetime | None = None, days: int = STATUS_WINDOW_DAYS
) -> DeployTime:
    """The environment's last deployment duration (and its parts) and the last ``days`` days' figures, from the
    ledger on ``conn``."""
    until = now or datetime.now().astimezone()
    window = read_durations(conn, environment, until - timedelta(days=days), until + timedelta(seconds=1))
    latest = _finished_deployments(sql.SQL(""), sql.SQL("started_at DESC, id DESC LIMIT 1"))
    parts = _parts(sql.Placeholder())
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(latest, (environment,)).fetchone()
        if row is None:
            return DeployTime(environment, None, window, days)
        by_part = {_part_name(p["step"], p["stage"]): float(p["seconds"]) for p in cur.execute(parts, (row["id"],))}
    ordered = {name: by_part[name] for name in sorted(by_part, key=_part_key)}
    last = LastDeployment(int(row["id"]), str(row["status"]), float(row["seconds"]), row["finished_at"], ordered)
    return DeployTime(environment, last, window, days)


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
