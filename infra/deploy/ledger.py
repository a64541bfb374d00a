"""The deploy ledger: deployments and their steps, in PostgreSQL, in its own namespace (`ws`).

One row per deployment (environment, repos, versions before/after, status, timings, holder) and one per
step (infra, migrate, validate, deploy of one repo, integration tests, health, rollback of one repo).
Every other part (status, metrics, GitHub deployment records) reads these tables; only the pipeline writes.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

NAMESPACE = "ws"

# Deployment statuses: running -> succeeded | failed | rolled_back ; a running row whose holder died -> interrupted
DEPLOYMENT_STATUSES = ("running", "succeeded", "failed", "rolled_back", "interrupted")
STEP_STATUSES = ("running", "succeeded", "failed", "skipped", "interrupted")

DDL = """
CREATE SCHEMA IF NOT EXISTS {ns};
CREATE TABLE IF NOT EXISTS {ns}.deployments (
    id              bigserial PRIMARY KEY,
    environment     text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('running','succeeded','failed','rolled_back','interrupted')),
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
    status         text        NOT NULL CHECK (status IN ('running','succeeded','failed','skipped','interrupted')),
    version_before text,
    version_after  text,
    detail         text,
    log_excerpt    text,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at    timestamptz
);
CREATE INDEX IF NOT EXISTS deployment_steps_deployment ON {ns}.deployment_steps (deployment_id, id);
"""


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create the ledger tables when missing (idempotent; safe under concurrent callers)."""
    with conn.transaction():
        # Serialise concurrent first-time creation: CREATE ... IF NOT EXISTS can race on the catalog.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ws.ledger.ddl'))")
        conn.execute(sql.SQL(DDL).format(ns=sql.Identifier(NAMESPACE)))
