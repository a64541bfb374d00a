"""Read-only views of the deploy ledger for monitoring: recent deployments with their steps and durations.

Reads the ledger's tables (``ws.deployments``, ``ws.deployment_steps``) directly with plain SQL so that the
monitor and the dashboard never write to them and do not depend on the pipeline's Python types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

NAMESPACE = "ws"


@dataclass
class Step:
    step: str
    repo: str | None
    stage: int | None
    status: str
    seconds: float | None
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "repo": self.repo,
            "stage": self.stage,
            "status": self.status,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "detail": self.detail,
        }


@dataclass
class DeploymentView:
    id: int
    environment: str
    status: str
    repos: list[str]
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    versions_after: dict[str, Any]
    error: str | None
    steps: list[Step] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "environment": self.environment,
            "status": self.status,
            "repos": self.repos,
            "trigger": self.trigger,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "versions_after": self.versions_after,
            "error": self.error,
            "steps": [s.as_dict() for s in self.steps],
        }


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute("SELECT to_regclass(%s) IS NOT NULL AS found", [f"{NAMESPACE}.{table}"]).fetchone()
    return bool(row and row["found"])


def recent_deployments(conn: psycopg.Connection[Any], environment: str, limit: int = 10) -> list[DeploymentView]:
    """The environment's last ``limit`` deployments (dry runs excluded), newest first, each with its steps."""
    if not _exists(conn, "deployments"):
        return []
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            sql.SQL(
                "SELECT id, environment, status, repos, trigger, started_at, finished_at, versions_after, error "
                "FROM {}.deployments WHERE environment = %s AND NOT dry_run ORDER BY id DESC LIMIT %s"
            ).format(sql.Identifier(NAMESPACE)),
            [environment, limit],
        ).fetchall()
        result = [
            DeploymentView(
                int(r["id"]),
                r["environment"],
                r["status"],
                list(r["repos"] or []),
                r["trigger"],
                r["started_at"],
                r["finished_at"],
                dict(r["versions_after"] or {}),
                r["error"],
            )
            for r in rows
        ]
        if not result:
            return result
        by_id = {d.id: d for d in result}
        steps = cursor.execute(
            sql.SQL(
                "SELECT deployment_id, step, repo, stage, status, detail, "
                "extract(epoch FROM finished_at - started_at) AS seconds "
                "FROM {}.deployment_steps WHERE deployment_id = ANY(%s) ORDER BY id"
            ).format(sql.Identifier(NAMESPACE)),
            [list(by_id)],
        ).fetchall()
    for s in steps:
        seconds = float(s["seconds"]) if s["seconds"] is not None else None
        by_id[int(s["deployment_id"])].steps.append(
            Step(s["step"], s["repo"], s["stage"], s["status"], seconds, s["detail"])
        )
    return result
