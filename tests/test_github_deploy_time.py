"""Deploy time against the mission's 5-minute target: `ws metrics` reads each environment's durations (median, p90,
last; whole deployment and per part, each deploy stage on its own) from the deploy ledger on real PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import psycopg
import pytest

from infra.deploy import durations, ledger
from tests.helpers import EXAMPLES, run_ws

NOW = datetime.now().astimezone()


def deployment(
    conn: psycopg.Connection, environment: str, start: datetime, seconds: float | None, *, dry_run: bool = False
) -> int:
    finished = start + timedelta(seconds=seconds) if seconds is not None else None
    row = conn.execute(
        "INSERT INTO ws.deployments (environment, status, repos, holder, dry_run, started_at, finished_at)"
        " VALUES (%s, %s, %s, 'test:1', %s, %s, %s) RETURNING id",
        [environment, "succeeded" if finished else "running", ["a", "b", "c"], dry_run, start, finished],
    ).fetchone()
    assert row is not None
    return int(row[0])


def step(
    conn: psycopg.Connection, deployment_id: int, name: str, start: datetime, seconds: float, stage: int | None = None
) -> None:
    conn.execute(
        "INSERT INTO ws.deployment_steps (deployment_id, step, stage, status, started_at, finished_at)"
        " VALUES (%s, %s, %s, 'succeeded', %s, %s)",
        [deployment_id, name, stage, start, start + timedelta(seconds=seconds)],
    )


@pytest.fixture
def ledger_with_history(fresh_database: str) -> str:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        ledger.ensure_schema(conn)
        for hours_ago, seconds in ((30, 120.0), (20, 240.0), (10, 400.0)):
            start = NOW - timedelta(hours=hours_ago)
            number = deployment(conn, "prod", start, seconds)
            step(conn, number, "infra", start, 30)
            step(conn, number, "deploy", start + timedelta(seconds=30), 50, stage=1)
            # two repos of stage 2 side by side: the stage lasts from the first start to the last end
            step(conn, number, "deploy", start + timedelta(seconds=80), 60, stage=2)
            step(conn, number, "deploy", start + timedelta(seconds=80), seconds / 4, stage=2)
        deployment(conn, "prod", NOW - timedelta(hours=5), 5, dry_run=True)  # a dry run changes nothing: ignored
        deployment(conn, "prod", NOW - timedelta(hours=1), None)  # still running: no duration yet
        deployment(conn, "prod", NOW - timedelta(days=40), 9000)  # outside the window
    return fresh_database


def test_durations_per_environment_and_part(ledger_with_history: str) -> None:
    with psycopg.connect(ledger_with_history) as conn:
        prod = durations.read_durations(conn, "prod", NOW - timedelta(days=30), NOW)
        empty = durations.read_durations(conn, "staging", NOW - timedelta(days=30), NOW)
    assert prod.total == durations.Durations(count=3, median=240.0, p90=400.0, last=400.0, within_target=2)
    assert prod.total.meets_target is False  # the p90 (6:40) is over 5:00
    assert list(prod.parts) == ["infra", "deploy stage 1", "deploy stage 2"]
    assert prod.parts["infra"].median == 30.0 and prod.parts["infra"].meets_target is True
    assert prod.parts["deploy stage 2"].last == 100.0  # the slower of the two repos of the last deployment
    assert prod.parts["deploy stage 2"].median == 60.0  # 60 vs 30, 60 vs 60, 60 vs 100
    assert empty.total.count == 0 and empty.reason == "no finished deployments in the window"
    assert durations.format_seconds(400.0) == "6:40" and durations.format_seconds(None) == "-"


def test_ws_metrics_reports_deploy_time_against_the_target(ledger_with_history: str) -> None:
    ws = ("-w", str(EXAMPLES / "workspace.yaml"), "metrics", "--database-url", ledger_with_history, "--env", "prod")
    as_json = run_ws(*ws, "--json", in_process=True)
    assert as_json.returncode == 0, as_json.stderr
    [prod] = json.loads(as_json.stdout)["deploy_time"]
    assert prod["environment"] == "prod" and prod["target_seconds"] == 300.0
    assert prod["total"] == {
        "count": 3,
        "median_seconds": 240.0,
        "p90_seconds": 400.0,
        "last_seconds": 400.0,
        "within_target": 2,
        "meets_target": False,
    }
    assert prod["parts"]["deploy stage 2"]["last_seconds"] == 100.0
    shown = run_ws(*ws, in_process=True)
    assert shown.returncode == 0, shown.stderr
    assert "deploy time against the 5:00 target" in shown.stdout
    row = next(line for line in shown.stdout.splitlines() if "whole deployment" in line)
    assert "4:00" in row and "6:40" in row and "2/3; p90 over" in row


def as_url(conninfo: str) -> str:
    """The postgresql:// URL of a libpq key=value string (what a service's DATABASE_URL must be)."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{info['user']}{password}@{info['host']}:{info.get('port', 5432)}/{info['dbname']}"


def test_ws_status_shows_the_last_deployments_duration_against_the_target(fresh_database: str, redis_url: str) -> None:
    """`ws status` reads the environment's own ledger (here `local`, on the real PostgreSQL DATABASE_URL names):
    the last finished deployment's duration and parts against 5:00, beside the window's median and p90."""
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        ledger.ensure_schema(conn)
        for hours_ago, seconds in ((30, 120.0), (20, 240.0)):
            start = NOW - timedelta(hours=hours_ago)
            number = deployment(conn, "local", start, seconds)
            step(conn, number, "infra", start, 30)
            step(conn, number, "deploy", start + timedelta(seconds=30), seconds - 40, stage=1)
        deployment(conn, "local", NOW - timedelta(hours=2), 5, dry_run=True)  # a dry run is no deployment
        last = deployment(conn, "local", NOW - timedelta(hours=10), 400.0)
        step(conn, last, "migrate", NOW - timedelta(hours=10), 100)
        step(conn, last, "deploy", NOW - timedelta(hours=10, seconds=-100), 290, stage=2)
        deployment(conn, "prod", NOW - timedelta(hours=1), 50.0)  # another environment's: not local's
    env = {"DATABASE_URL": as_url(fresh_database), "REDIS_URL": redis_url}
    ws = ("-w", str(EXAMPLES / "workspace.yaml"), "status", "--env", "local")
    as_json = run_ws(*ws, "--json", env=env, in_process=True)
    assert as_json.returncode == 0, as_json.stderr
    [local] = json.loads(as_json.stdout)
    timed = local["deploy_time"]
    assert timed["target_seconds"] == 300.0 and timed["window_days"] == 30
    assert timed["last"]["deployment_id"] == last and timed["last"]["status"] == "succeeded"
    assert timed["last"]["seconds"] == 400.0 and timed["last"]["within_target"] is False
    assert timed["last"]["parts"] == {"migrate": 100.0, "deploy stage 2": 290.0}
    assert (timed["count"], timed["median_seconds"], timed["p90_seconds"]) == (3, 240.0, 400.0)
    assert timed["within_target"] == 2 and timed["meets_target"] is False
    shown = run_ws(*ws, env=env, in_process=True)
    line = next(line for line in shown.stdout.splitlines() if "deploy time:" in line)
    assert f"last 6:40 (deployment {last}, succeeded): OVER the 5:00 target" in line
    assert "median 4:00, p90 6:40 over 3 deployment(s) in 30 days" in line
    assert "migrate 1:40, deploy stage 2 4:50" in line


def test_ws_status_says_when_no_deployment_was_timed_yet(fresh_database: str, redis_url: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        ledger.ensure_schema(conn)
        deployment(conn, "local", NOW - timedelta(minutes=3), None)  # still running: no duration yet
    env = {"DATABASE_URL": as_url(fresh_database), "REDIS_URL": redis_url}
    ws = ("-w", str(EXAMPLES / "workspace.yaml"), "status", "--env", "local")
    [local] = json.loads(run_ws(*ws, "--json", env=env, in_process=True).stdout)
    assert local["deploy_time"]["last"] is None and local["deploy_time"]["count"] == 0
    assert "deploy time: no finished deployment yet (target 5:00)" in run_ws(*ws, env=env, in_process=True).stdout
