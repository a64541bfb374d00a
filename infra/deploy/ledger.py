"""The deploy ledger: deployments and their steps, in PostgreSQL, in its own namespace (`ws`).

One row per deployment (environment, repos, versions before/after, status, timings, holder) and one per
step (infra, migrate, validate, deploy of one repo, integration tests, health, rollback of one repo).
Every other part (status, metrics, GitHub deployment records) reads these tables; only the pipeline writes.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra.errors import CheckFailed

NAMESPACE = "ws"


class DeploymentStatus(StrEnum):
    """running -> succeeded | failed | rolled_back; a running deployment whose deployer died -> interrupted."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    INTERRUPTED = "interrupted"


class StepStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"


# steps that did not pass: failed, or stopped before finishing
UNFINISHED_OR_FAILED = (StepStatus.FAILED, StepStatus.INTERRUPTED, StepStatus.RUNNING)


class Trigger(StrEnum):
    """Who began a deployment."""

    CLI = "cli"  # `ws deploy`
    UP = "up"  # `ws up`
    PIPELINE = "pipeline"  # `ws pipeline begin` outside GitHub Actions
    WORKFLOW = "workflow"  # `ws pipeline begin` in the coordinated-deployment workflow


@dataclass(frozen=True)
class Deployment:
    """One row of ``ws.deployments``."""

    id: int
    environment: str
    status: DeploymentStatus
    repos: list[str]
    versions_before: dict[str, str | None]
    versions_after: dict[str, str]
    commits: dict[str, dict[str, str]]  # repo -> {"sha", "committed_at"} when known
    holder: str
    trigger: str
    run_url: str | None
    dry_run: bool
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Deployment:
        return cls(
            id=int(row["id"]),
            environment=row["environment"],
            status=DeploymentStatus(row["status"]),
            repos=list(row["repos"]),
            versions_before=dict(row["versions_before"] or {}),
            versions_after=dict(row["versions_after"] or {}),
            commits=dict(row["commits"] or {}),
            holder=row["holder"],
            trigger=row["trigger"],
            run_url=row["run_url"],
            dry_run=bool(row["dry_run"]),
            error=row["error"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    @property
    def attached(self) -> bool:
        """Whether its deployer holds the environment lock for the whole run (see ATTACHED_TRIGGERS)."""
        return self.trigger in ATTACHED_TRIGGERS

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "environment": self.environment,
            "status": self.status.value,
            "repos": list(self.repos),
            "versions_before": dict(self.versions_before),
            "versions_after": dict(self.versions_after),
            "commits": dict(self.commits),
            "holder": self.holder,
            "trigger": self.trigger,
            "run_url": self.run_url,
            "dry_run": self.dry_run,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class StepRecord:
    """One row of ``ws.deployment_steps``."""

    id: int
    deployment_id: int
    step: str
    repo: str | None
    stage: int | None
    status: StepStatus
    version_before: str | None
    version_after: str | None
    detail: str | None
    log_excerpt: str | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StepRecord:
        return cls(**{**row, "status": StepStatus(row["status"])})

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "repo": self.repo,
            "stage": self.stage,
            "status": self.status.value,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "detail": self.detail,
        }


DDL = """
CREATE SCHEMA IF NOT EXISTS {ns};
CREATE TABLE IF NOT EXISTS {ns}.deployments (
    id              bigserial PRIMARY KEY,
    environment     text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ({deployment_statuses})),
    repos           text[]      NOT NULL,
    versions_before jsonb       NOT NULL DEFAULT '{{}}'::jsonb,  -- repo -> version running before this deployment
    versions_after  jsonb       NOT NULL DEFAULT '{{}}'::jsonb,  -- repo -> version this deployment installs
    commits         jsonb       NOT NULL DEFAULT '{{}}'::jsonb,  -- repo -> {{"sha": ..., "committed_at": ...}} when known
    holder          text        NOT NULL,                       -- host:pid of the deployer
    trigger         text        NOT NULL DEFAULT 'cli',         -- cli | workflow | up
    run_url         text,                                       -- link to the workflow run, when run by one
    dry_run         boolean     NOT NULL DEFAULT false,
    error           text,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS deployments_env_started ON {ns}.deployments (environment, started_at DESC);
CREATE TABLE IF NOT EXISTS {ns}.deployment_steps (
    id             bigserial PRIMARY KEY,
    deployment_id  bigint      NOT NULL REFERENCES {ns}.deployments(id) ON DELETE CASCADE,
    step           text        NOT NULL,  -- infra | migrate | validate | deploy | integration | health | rollback
    repo           text,                  -- the repo a per-repo step acts on
    stage          integer,
    status         text        NOT NULL CHECK (status IN ({step_statuses})),
    version_before text,
    version_after  text,
    detail         text,
    log_excerpt    text,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at    timestamptz
);
CREATE INDEX IF NOT EXISTS deployment_steps_deployment ON {ns}.deployment_steps (deployment_id, id);
CREATE TABLE IF NOT EXISTS {ns}.deploy_locks (
    environment   text        PRIMARY KEY,
    holder        text        NOT NULL,              -- host:pid of the process holding the advisory lock
    deployment_id bigint,
    acquired_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create the ledger tables when missing (idempotent; safe under concurrent callers)."""
    with conn.transaction():
        # Serialise concurrent first-time creation: CREATE ... IF NOT EXISTS can race on the catalog.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ws.ledger.ddl'))")
        conn.execute(
            sql.SQL(DDL).format(
                ns=sql.Identifier(NAMESPACE),
                deployment_statuses=sql.SQL(",").join(sql.Literal(s.value) for s in DeploymentStatus),
                step_statuses=sql.SQL(",").join(sql.Literal(s.value) for s in StepStatus),
            )
        )


# Triggers whose deployer holds the environment lock for the whole run (`ws deploy`, `ws up`): a `running` row of
# theirs whose lock is free was left by a dead deployer. `ws pipeline begin` rows (trigger pipeline/workflow) run
# as one job per step, so between jobs nobody holds the lock; they end with `ws pipeline finish` or `ws rollback`.
ATTACHED_TRIGGERS = (Trigger.CLI.value, Trigger.UP.value)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise CheckFailed(f"deploy ledger: cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}") from exc
    ensure_schema(conn)
    return conn


def _table(name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(NAMESPACE), sql.Identifier(name))


@contextmanager
def environment_lock(
    url: str, environment: str, holder: str | None = None, *, shared: bool = False
) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """Hold the per-environment advisory lock on a dedicated connection, or fail at once naming its holder.

    The lock is a session lock: it goes away with the connection, so a deployer killed with -9 frees it.
    ``shared``: the jobs of one open pipeline deployment (`ws pipeline <step>`) hold it shared, so the repos of a
    stage can deploy in parallel jobs, while `ws deploy`, `begin` and `rollback` need it alone.
    """
    holder = holder or holder_name()
    conn = connect(url)
    try:
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        got = conn.execute(
            sql.SQL("SELECT {}(hashtext('ws.deploy'), hashtext(%s)) AS got").format(sql.Identifier(function)),
            [environment],
        ).fetchone()
        if not got or not got["got"]:
            row = conn.execute(
                sql.SQL("SELECT holder, deployment_id, acquired_at FROM {} WHERE environment = %s").format(
                    _table("deploy_locks")
                ),
                [environment],
            ).fetchone()
            who = (
                f"{row['holder']} (deployment {row['deployment_id']}, since {row['acquired_at']:%Y-%m-%d %H:%M:%S%z})"
                if row
                else "another process"
            )
            raise CheckFailed(
                f"environment {environment} is being deployed by {who}; wait for it to finish (ws status --env "
                f"{environment}) and run again"
            )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (environment, holder, deployment_id, acquired_at) VALUES (%s, %s, NULL, "
                "clock_timestamp()) ON CONFLICT (environment) DO UPDATE SET holder = EXCLUDED.holder, "
                "deployment_id = NULL, acquired_at = EXCLUDED.acquired_at"
            ).format(_table("deploy_locks")),
            [environment, holder],
        )
        yield conn
    finally:
        conn.close()


def note_lock_deployment(conn: psycopg.Connection[Any], environment: str, deployment_id: int) -> None:
    conn.execute(
        sql.SQL("UPDATE {} SET deployment_id = %s WHERE environment = %s").format(_table("deploy_locks")),
        [deployment_id, environment],
    )


def recover_interrupted(conn: psycopg.Connection[Any], environment: str) -> list[int]:
    """Mark `running` deployments of dead deployers (and their running steps) interrupted; their ids.

    Call only while holding the environment lock: then no live attached deployer exists for the environment.
    """
    rows = conn.execute(
        sql.SQL(
            "UPDATE {} SET status = %s, finished_at = clock_timestamp(), "
            "error = coalesce(error, 'the deployer stopped before finishing (killed or crashed); '"
            " || 'run `ws rollback --deployment ' || id || '` to restore the previous versions') "
            "WHERE environment = %s AND status = %s AND trigger = ANY(%s) AND NOT dry_run RETURNING id"
        ).format(_table("deployments")),
        [DeploymentStatus.INTERRUPTED.value, environment, DeploymentStatus.RUNNING.value, list(ATTACHED_TRIGGERS)],
    ).fetchall()
    ids = [int(r["id"]) for r in rows]
    if ids:
        interrupt_running_steps(conn, ids)
    return ids


STEP_LOCK = "SELECT pg_advisory_lock(hashtext('ws.step'), %s::integer)"
STEP_UNLOCK = "SELECT pg_advisory_unlock(hashtext('ws.step'), %s::integer)"
_held_steps: dict[int, set[int]] = {}  # backend pid -> steps its session runs (it could re-take its own locks)


def interrupt_running_steps(conn: psycopg.Connection[Any], deployment_ids: Sequence[int]) -> int:
    """Mark `running` steps whose process is gone interrupted; how many.

    A running step's process holds the step's advisory lock (taken by :func:`start_step`), so a step whose lock
    can be taken has no live process: a step of a parallel job that is still working is left alone.
    """
    running = conn.execute(
        sql.SQL("SELECT id FROM {} WHERE deployment_id = ANY(%s) AND status = %s").format(_table("deployment_steps")),
        [list(deployment_ids), StepStatus.RUNNING.value],
    ).fetchall()
    dead = []
    for row in running:
        if row["id"] in _held_steps.get(conn.info.backend_pid, ()):
            continue
        got = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext('ws.step'), %s::integer) AS got", [row["id"]]
        ).fetchone()
        if got and got["got"]:
            conn.execute(STEP_UNLOCK, [row["id"]])
            dead.append(row["id"])
    if not dead:
        return 0
    cursor = conn.execute(
        sql.SQL(
            "UPDATE {} SET status = %s, finished_at = clock_timestamp(), "
            "detail = coalesce(detail || '; ', '') || 'interrupted: its process stopped before finishing' "
            "WHERE id = ANY(%s) AND status = %s"
        ).format(_table("deployment_steps")),
        [StepStatus.INTERRUPTED.value, dead, StepStatus.RUNNING.value],
    )
    return cursor.rowcount


def open_pipeline_deployments(conn: psycopg.Connection[Any], environment: str) -> list[Deployment]:
    rows = conn.execute(
        sql.SQL(
            "SELECT * FROM {} WHERE environment = %s AND status = %s "
            "AND NOT dry_run AND NOT (trigger = ANY(%s)) ORDER BY id"
        ).format(_table("deployments")),
        [environment, DeploymentStatus.RUNNING.value, list(ATTACHED_TRIGGERS)],
    ).fetchall()
    return [Deployment.from_row(r) for r in rows]


def create_deployment(
    conn: psycopg.Connection[Any],
    *,
    environment: str,
    repos: Sequence[str],
    versions_before: Mapping[str, str | None],
    versions_after: Mapping[str, str],
    holder: str,
    trigger: str,
    run_url: str | None,
    dry_run: bool,
    commits: Mapping[str, Any] | None = None,
) -> int:
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (environment, status, repos, versions_before, versions_after, commits, holder, trigger, "
            "run_url, dry_run) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
        ).format(_table("deployments")),
        [
            environment,
            DeploymentStatus.RUNNING.value,
            list(repos),
            json.dumps(dict(versions_before)),
            json.dumps(dict(versions_after)),
            json.dumps(dict(commits or {})),
            holder,
            trigger,
            run_url,
            dry_run,
        ],
    ).fetchone()
    assert row is not None
    return int(row["id"])


def start_step(
    conn: psycopg.Connection[Any],
    deployment_id: int,
    step: str,
    *,
    repo: str | None = None,
    stage: int | None = None,
    version_before: str | None = None,
    version_after: str | None = None,
    detail: str | None = None,
) -> int:
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (deployment_id, step, repo, stage, status, version_before, version_after, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
        ).format(_table("deployment_steps")),
        [deployment_id, step, repo, stage, StepStatus.RUNNING.value, version_before, version_after, detail],
    ).fetchone()
    assert row is not None
    conn.execute(STEP_LOCK, [row["id"]])  # held while the step runs: proof of life for other processes
    _held_steps.setdefault(conn.info.backend_pid, set()).add(int(row["id"]))
    return int(row["id"])


def finish_step(
    conn: psycopg.Connection[Any],
    step_id: int,
    status: StepStatus,
    detail: str | None = None,
    log_excerpt: str | None = None,
) -> None:
    conn.execute(
        sql.SQL(
            "UPDATE {} SET status = %s, detail = coalesce(%s, detail), log_excerpt = coalesce(%s, log_excerpt), "
            "finished_at = clock_timestamp() WHERE id = %s"
        ).format(_table("deployment_steps")),
        [StepStatus(status).value, detail, log_excerpt, step_id],
    )
    held = _held_steps.get(conn.info.backend_pid, set())
    if step_id in held:
        held.discard(step_id)
        conn.execute(STEP_UNLOCK, [step_id])


def set_log_excerpt(conn: psycopg.Connection[Any], step_id: int, excerpt: str) -> None:
    conn.execute(
        sql.SQL("UPDATE {} SET log_excerpt = %s WHERE id = %s").format(_table("deployment_steps")), [excerpt, step_id]
    )


def finish_deployment(
    conn: psycopg.Connection[Any], deployment_id: int, status: DeploymentStatus, error: str | None = None
) -> None:
    conn.execute(
        sql.SQL("UPDATE {} SET status = %s, error = %s, finished_at = clock_timestamp() WHERE id = %s").format(
            _table("deployments")
        ),
        [DeploymentStatus(status).value, error, deployment_id],
    )


def set_versions_after(conn: psycopg.Connection[Any], deployment_id: int, versions: Mapping[str, str]) -> None:
    conn.execute(
        sql.SQL("UPDATE {} SET versions_after = %s WHERE id = %s").format(_table("deployments")),
        [json.dumps(dict(versions)), deployment_id],
    )


def deployment(conn: psycopg.Connection[Any], deployment_id: int) -> Deployment | None:
    row = conn.execute(
        sql.SQL("SELECT * FROM {} WHERE id = %s").format(_table("deployments")), [deployment_id]
    ).fetchone()
    return Deployment.from_row(row) if row is not None else None


def steps(conn: psycopg.Connection[Any], deployment_id: int) -> list[StepRecord]:
    rows = conn.execute(
        sql.SQL("SELECT * FROM {} WHERE deployment_id = %s ORDER BY id").format(_table("deployment_steps")),
        [deployment_id],
    ).fetchall()
    return [StepRecord.from_row(r) for r in rows]


def recent(conn: psycopg.Connection[Any], environment: str | None = None, limit: int = 5) -> list[Deployment]:
    """The last deployments, per environment when ``environment`` is None."""
    rows = conn.execute(
        sql.SQL(
            "SELECT * FROM (SELECT d.*, row_number() OVER (PARTITION BY environment ORDER BY id DESC) AS n "
            "FROM {} d WHERE %s::text IS NULL OR environment = %s) ranked WHERE n <= %s "
            "ORDER BY environment, id DESC"
        ).format(_table("deployments")),
        [environment, environment, limit],
    ).fetchall()
    return [Deployment.from_row(r) for r in rows]
