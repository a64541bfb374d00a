"""The built-in Prisma-compatible migration applier on real PostgreSQL, and the deploy ledger's lock."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from infra.deploy import ledger, migrations
from infra.errors import CheckFailed
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.helpers import EXAMPLES, run_ws

PRIMARY = "saas-ecosystem-architecture"
REPOS = (PRIMARY, "app-agents", "saas-spec-driven-development")

# Prisma's own DDL of the history table (schema engine, PostgreSQL flavour)
PRISMA_COLUMNS = [
    ("id", "character varying", 36, "NO"),
    ("checksum", "character varying", 64, "NO"),
    ("finished_at", "timestamp with time zone", None, "YES"),
    ("migration_name", "character varying", 255, "NO"),
    ("logs", "text", None, "YES"),
    ("rolled_back_at", "timestamp with time zone", None, "YES"),
    ("started_at", "timestamp with time zone", None, "NO"),
    ("applied_steps_count", "integer", None, "NO"),
]


@pytest.fixture
def workspace(tmp_path: Path) -> LoadedWorkspace:
    """A copy of the example repos (their migrations may be edited) with its workspace.yaml."""
    for repo in REPOS:
        shutil.copytree(EXAMPLES / repo, tmp_path / repo, ignore=shutil.ignore_patterns("node_modules", ".ws"))
    shutil.copy(EXAMPLES / "workspace.yaml", tmp_path / "workspace.yaml")
    return load_workspace(tmp_path / "workspace.yaml")


def rows(url: str, namespace: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        query = sql.SQL("SELECT * FROM {}._prisma_migrations ORDER BY started_at").format(sql.Identifier(namespace))
        return conn.execute(query).fetchall()


def test_applies_in_stage_order_and_records_rows_exactly_as_prisma(
    workspace: LoadedWorkspace, fresh_database: str
) -> None:
    dry = migrations.apply(fresh_database, workspace, PRIMARY, dry_run=True)
    assert dry == ["20260105090000_init", "20260112090000_agent_tools"]
    with psycopg.connect(fresh_database) as conn:  # a dry run creates nothing
        assert conn.execute("SELECT to_regnamespace('ecosystem')").fetchone() == (None,)
    for repo in REPOS:
        assert migrations.apply(fresh_database, workspace, repo) == [
            m.name for m in migrations.migration_files(workspace, repo)
        ]
    with psycopg.connect(fresh_database) as conn:
        columns = conn.execute(
            "SELECT column_name, data_type, character_maximum_length, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'agents' AND table_name = '_prisma_migrations' ORDER BY ordinal_position"
        ).fetchall()
        assert columns == PRISMA_COLUMNS
        status = migrations.status(conn, workspace, PRIMARY)
        assert status.ok and status.applied == ["20260105090000_init", "20260112090000_agent_tools"]
    recorded = rows(fresh_database, "ecosystem")
    folder = workspace.repo_dir(PRIMARY) / "admin-app/prisma/migrations"
    for row, name in zip(recorded, ["20260105090000_init", "20260112090000_agent_tools"], strict=True):
        assert row["migration_name"] == name
        assert row["checksum"] == hashlib.sha256((folder / name / "migration.sql").read_bytes()).hexdigest()
        assert uuid.UUID(row["id"]).version == 4
        assert row["applied_steps_count"] == 1 and row["logs"] is None and row["rolled_back_at"] is None
        assert row["finished_at"] >= row["started_at"]
    assert migrations.apply(fresh_database, workspace, PRIMARY) == []  # nothing pending: nothing recorded twice
    assert len(rows(fresh_database, "ecosystem")) == 2


def test_a_secondary_before_the_primary_fails_like_prisma_and_blocks_until_resolved(
    workspace: LoadedWorkspace, fresh_database: str
) -> None:
    with pytest.raises(CheckFailed, match="P3018: A migration failed to apply") as failed:
        migrations.apply(fresh_database, workspace, "app-agents")  # its tables reference ecosystem.agents
    assert "Migration name: 20260106090000_agent_runtime" in str(failed.value)
    [row] = rows(fresh_database, "agents")
    assert row["finished_at"] is None and row["applied_steps_count"] == 0
    assert "Database error code:" in row["logs"]
    with psycopg.connect(fresh_database) as conn:  # the failed script left no half-applied tables
        assert conn.execute("SELECT to_regclass('agents.agent_runs')").fetchone() == (None,)
    migrations.apply(fresh_database, workspace, PRIMARY)
    with pytest.raises(CheckFailed, match="P3009: migrate found failed migrations") as blocked:
        migrations.apply(fresh_database, workspace, "app-agents")
    assert "The `20260106090000_agent_runtime` migration started at" in str(blocked.value)
    with psycopg.connect(fresh_database, autocommit=True) as conn:  # `prisma migrate resolve --rolled-back`
        conn.execute("UPDATE agents._prisma_migrations SET rolled_back_at = now()")
    assert migrations.apply(fresh_database, workspace, "app-agents") == ["20260106090000_agent_runtime"]


def test_an_applied_migration_edited_afterwards_is_refused(workspace: LoadedWorkspace, fresh_database: str) -> None:
    migrations.apply(fresh_database, workspace, PRIMARY)
    script = workspace.repo_dir(PRIMARY) / "admin-app/prisma/migrations/20260112090000_agent_tools/migration.sql"
    script.write_text(script.read_text() + "\n-- edited after it ran\n")
    with pytest.raises(
        CheckFailed, match="The migration `20260112090000_agent_tools` was modified after it was applied"
    ):
        migrations.apply(fresh_database, workspace, PRIMARY)
    with psycopg.connect(fresh_database) as conn:
        assert migrations.status(conn, workspace, PRIMARY).modified == ["20260112090000_agent_tools"]


def test_a_non_empty_schema_without_history_needs_a_baseline(workspace: LoadedWorkspace, fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ecosystem; CREATE TABLE ecosystem.legacy (id int)")
    with pytest.raises(CheckFailed, match="P3005: The database schema is not empty"):
        migrations.apply(fresh_database, workspace, PRIMARY)


def test_ws_db_migrate_command(workspace: LoadedWorkspace, fresh_database: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(fresh_database)
    workspace.path.write_text(workspace.path.read_text().replace("name: example_ecosystem", f"name: {info['dbname']}"))
    user, host, port = info.get("user") or "postgres", info.get("host") or "127.0.0.1", info.get("port") or 5432
    env = {"DATABASE_URL": f"postgresql://{user}@{host}:{port}/postgres"}
    dry = run_ws("-w", str(workspace.path), "db", "migrate", "--env", "local", "--repo", PRIMARY, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would apply 2 migration(s)" in dry.stdout
    done = run_ws("-w", str(workspace.path), "db", "migrate", "--env", "local", "--repo", PRIMARY, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert '"20260112090000_agent_tools"' in done.stdout
    bad = run_ws("-w", str(workspace.path), "db", "migrate", "--env", "local", "--repo", "nope", env=env)
    assert bad.returncode == 2 and "unknown repo 'nope'" in bad.stderr


def test_environment_lock_refuses_a_second_holder_and_names_the_first(fresh_database: str) -> None:
    with ledger.environment_lock(fresh_database, "staging", holder="host-a:111") as conn:
        deployment = ledger.create_deployment(
            conn,
            environment="staging",
            repos=["a"],
            versions_before={"a": None},
            versions_after={"a": "1"},
            holder="host-a:111",
            trigger="cli",
            run_url=None,
            dry_run=False,
        )
        ledger.note_lock_deployment(conn, "staging", deployment)
        with pytest.raises(CheckFailed, match=f"being deployed by host-a:111 \\(deployment {deployment},"):
            with ledger.environment_lock(fresh_database, "staging", holder="host-b:222"):
                pass
        with ledger.environment_lock(fresh_database, "prod", holder="host-b:222"):
            pass  # another environment is free
    with ledger.environment_lock(fresh_database, "staging", holder="host-c:333") as conn:
        assert ledger.recover_interrupted(conn, "staging") == [deployment]  # its holder's lock is gone
        found = ledger.deployment(conn, deployment)
        assert found is not None and found.status == "interrupted"


def test_pipeline_jobs_share_the_lock_and_only_dead_steps_are_interrupted(fresh_database: str) -> None:
    with ledger.environment_lock(fresh_database, "dev", holder="job-a:1", shared=True) as job_a:
        deployment = ledger.create_deployment(
            job_a,
            environment="dev",
            repos=["a", "b"],
            versions_before={},
            versions_after={"a": "1", "b": "1"},
            holder="job-a:1",
            trigger="workflow",
            run_url=None,
            dry_run=False,
        )
        step_a = ledger.start_step(job_a, deployment, "deploy", repo="a", stage=2)
        with ledger.environment_lock(fresh_database, "dev", holder="job-b:2", shared=True) as job_b:
            step_b = ledger.start_step(job_b, deployment, "deploy", repo="b", stage=2)
            with pytest.raises(CheckFailed, match="being deployed by"):  # `ws deploy` needs the lock alone
                with ledger.environment_lock(fresh_database, "dev", holder="cli:3"):
                    pass
            # job a's step is alive (its connection holds the step lock): another job leaves it alone
            assert ledger.interrupt_running_steps(job_b, [deployment]) == 0
            ledger.finish_step(job_b, step_b, ledger.StepStatus.SUCCEEDED)
        with ledger.connect(fresh_database) as other:
            assert ledger.interrupt_running_steps(other, [deployment]) == 0
    with ledger.connect(fresh_database) as other:  # job a's connection is gone: its step is dead
        assert ledger.interrupt_running_steps(other, [deployment]) == 1
        statuses = {s.repo: s.status for s in ledger.steps(other, deployment)}
        assert statuses == {"a": "interrupted", "b": "succeeded"}
        assert step_a != step_b
