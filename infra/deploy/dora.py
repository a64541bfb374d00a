"""The DORA figures of each environment, read from its deploy ledger (never from GitHub).

The five figures (https://dora.dev/guides/dora-metrics/), over a window of ``days`` ending now, dry runs excluded:

* deployment frequency: succeeded deployments per day;
* change lead time: from a deployed commit's ``committed_at`` (ledger ``commits[repo]``) to the deployment's
  ``finished_at``, for succeeded deployments (median and 90th percentile, hours);
* change fail rate: deployments that failed or were rolled back, over finished deployments;
* failed deployment recovery time: from a failed/rolled-back deployment's end to the end of the next succeeded
  deployment of the same environment (median and 90th percentile, hours);
* deployment rework rate: deployments made right after a failed/rolled-back one in the same environment
  (unplanned, remediating deployments), over finished deployments.

A figure with no data is ``None`` and says why; nothing is invented.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra.deploy import ledger
from infra.deploy.runtimes import runtime_for
from infra.errors import UsageError
from infra.workspace.located import LoadedWorkspace

FAILED = ("failed", "rolled_back")
FINISHED = ("succeeded", "failed", "rolled_back")


@dataclass
class Deployment:
    id: int
    environment: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    commits: dict[str, Any]


@dataclass
class Figure:
    value: float | None
    unit: str
    detail: str = ""
    samples: int = 0
    p90: float | None = None

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"value": self.value, "unit": self.unit, "samples": self.samples}
        if self.p90 is not None:
            result["p90"] = self.p90
        if self.detail:
            result["detail"] = self.detail
        return result


@dataclass
class EnvironmentFigures:
    environment: str
    deployments: int
    deployment_frequency: Figure
    change_lead_time: Figure
    change_fail_rate: Figure
    recovery_time: Figure
    rework_rate: Figure

    def figures(self) -> dict[str, Figure]:
        return {
            "deployment_frequency": self.deployment_frequency,
            "change_lead_time": self.change_lead_time,
            "change_fail_rate": self.change_fail_rate,
            "failed_deployment_recovery_time": self.recovery_time,
            "deployment_rework_rate": self.rework_rate,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "deployments": self.deployments,
            **{name: figure.as_dict() for name, figure in self.figures().items()},
        }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600.0


def _duration_figure(values: list[float], empty: str) -> Figure:
    if not values:
        return Figure(None, "hours", empty)
    return Figure(round(percentile(values, 0.5), 3), "hours", "median", len(values), round(percentile(values, 0.9), 3))


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def compute(environment: str, rows: Sequence[Deployment], since: datetime, until: datetime) -> EnvironmentFigures:
    """The five figures for one environment from its deployments (any order; dry runs already excluded)."""
    days = max((until - since).total_seconds() / 86400.0, 1e-9)
    ordered = sorted(rows, key=lambda d: (d.started_at, d.id))
    in_window = [d for d in ordered if since <= d.started_at <= until]
    finished = [d for d in in_window if d.status in FINISHED]
    succeeded = [d for d in finished if d.status == "succeeded"]
    failures = [d for d in finished if d.status in FAILED]

    frequency = Figure(
        round(len(succeeded) / days, 4), "per day", f"{len(succeeded)} succeeded in {days:g} days", len(succeeded)
    )

    lead_times: list[float] = []
    for deployment in succeeded:
        if deployment.finished_at is None:
            continue
        for commit in deployment.commits.values():
            committed = _parse_time(commit.get("committed_at")) if isinstance(commit, dict) else None
            if committed is not None:
                lead_times.append(max(0.0, _hours(deployment.finished_at - committed)))
    lead = _duration_figure(lead_times, "no succeeded deployment recorded commit times")

    if finished:
        fail_rate = Figure(
            round(len(failures) / len(finished), 4),
            "ratio",
            f"{len(failures)} of {len(finished)} failed or rolled back",
            len(finished),
        )
    else:
        fail_rate = Figure(None, "ratio", "no finished deployments in the window")

    recoveries: list[float] = []
    unrecovered = 0
    for failure in failures:
        end = failure.finished_at or failure.started_at
        after = next(
            (
                d
                for d in ordered
                if d.status == "succeeded"
                and d.started_at >= failure.started_at
                and d.id != failure.id
                and d.finished_at is not None
            ),
            None,
        )
        if after is None or after.finished_at is None:
            unrecovered += 1
            continue
        recoveries.append(max(0.0, _hours(after.finished_at - end)))
    recovery = _duration_figure(recoveries, "no failed deployment" if not failures else "no recovery yet")
    if unrecovered and recovery.value is not None:
        recovery.detail += f"; {unrecovered} failure(s) not yet recovered"
    elif unrecovered:
        recovery.detail = f"{unrecovered} failure(s) not yet recovered"

    rework = 0
    finished_ids = {d.id for d in finished}
    previous: Deployment | None = None
    for deployment in ordered:
        if deployment.status not in FINISHED:
            continue
        if previous is not None and previous.status in FAILED and deployment.id in finished_ids:
            rework += 1
        previous = deployment
    if finished:
        rework_rate = Figure(
            round(rework / len(finished), 4),
            "ratio",
            f"{rework} of {len(finished)} followed a failed deployment",
            len(finished),
        )
    else:
        rework_rate = Figure(None, "ratio", "no finished deployments in the window")
    return EnvironmentFigures(environment, len(in_window), frequency, lead, fail_rate, recovery, rework_rate)


def read_deployments(conn: psycopg.Connection[Any], environment: str | None) -> list[Deployment]:
    ledger.ensure_schema(conn)
    query = sql.SQL(
        "SELECT id, environment, status, started_at, finished_at, commits FROM {}.deployments"
        " WHERE NOT dry_run AND ({} OR environment = %s) ORDER BY started_at, id"
    ).format(sql.Identifier(ledger.NAMESPACE), sql.Literal(environment is None))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, (environment,))
        return [
            Deployment(
                int(r["id"]), r["environment"], r["status"], r["started_at"], r["finished_at"], r["commits"] or {}
            )
            for r in cur.fetchall()
        ]


def unavailable(environment: str, reason: str) -> EnvironmentFigures:
    """Figures of an environment whose ledger cannot be read: every figure says why."""

    def figure(unit: str) -> Figure:
        return Figure(None, unit, reason)

    return EnvironmentFigures(
        environment, 0, figure("per day"), figure("hours"), figure("ratio"), figure("hours"), figure("ratio")
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def locate_database(loaded: LoadedWorkspace, environment: str) -> tuple[str | None, str]:
    """The environment's database (where its deploy ledger lives), found the way `ws status` finds it."""
    try:
        infra = runtime_for(loaded, environment).locate()
    except Exception as exc:  # a missing Pulumi CLI, an unreachable stack: shown as the figures' reason
        return None, f"cannot locate the {environment} database: {_first_line(exc)}"
    if infra is None:
        return None, f"{environment} is not running (no database found); `ws up` or pass --database-url"
    return infra.database_url, ""


def read_ledger(url: str, environment: str | None) -> list[Deployment]:
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            return read_deployments(conn, environment)
    except psycopg.Error as exc:
        raise UsageError(f"cannot read the deploy ledger: {_first_line(exc)}; check --database-url") from None


PROMETHEUS = {
    "deployment_frequency": ("ws_dora_deployment_frequency_per_day", "Succeeded deployments per day."),
    "change_lead_time": ("ws_dora_change_lead_time_hours", "Median hours from commit to deployed."),
    "change_fail_rate": ("ws_dora_change_fail_rate", "Share of deployments that failed or were rolled back."),
    "failed_deployment_recovery_time": (
        "ws_dora_failed_deployment_recovery_time_hours",
        "Median hours from a failed deployment to the next succeeded one.",
    ),
    "deployment_rework_rate": (
        "ws_dora_deployment_rework_rate",
        "Share of deployments made right after a failed one (unplanned).",
    ),
}


FIGURE_NAMES = {
    "deployment_frequency": "deployment frequency",
    "change_lead_time": "change lead time",
    "change_fail_rate": "change fail rate",
    "failed_deployment_recovery_time": "failed deployment recovery time",
    "deployment_rework_rate": "deployment rework rate",
}


def common_reason(env: EnvironmentFigures) -> str | None:
    """The one reason shared by every figure of an environment whose ledger could not be read."""
    figures = list(env.figures().values())
    reasons = {f.detail for f in figures}
    if env.deployments == 0 and all(f.value is None for f in figures) and len(reasons) == 1:
        return reasons.pop()
    return None


def format_value(figure: Figure) -> str:
    if figure.value is None:
        return "n/a"
    if figure.unit == "ratio":
        return f"{figure.value * 100:.1f}%"
    if figure.unit == "hours":
        return f"{figure.value:g} h (p90 {figure.p90:g} h)"
    return f"{figure.value:g} {figure.unit}"


def format_detail(figure: Figure) -> str:
    if figure.unit == "hours" and figure.value is not None:
        return f"median of {figure.samples}" + (f"; {figure.detail.split('; ', 1)[1]}" if "; " in figure.detail else "")
    return figure.detail
