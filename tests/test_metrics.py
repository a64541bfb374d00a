"""`ws metrics`: the five DORA figures from deploy-ledger rows in a real PostgreSQL database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from infra import metrics
from infra.deploy import dora, ledger
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.helpers import ROOT, run_ws

NOW = datetime(2026, 3, 31, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def insert(
    conn: psycopg.Connection[Any],
    environment: str,
    status: str,
    started: datetime,
    finished: datetime | None,
    commits: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> None:
    conn.execute(
        "INSERT INTO ws.deployments (environment, status, repos, holder, dry_run, started_at, finished_at, commits)"
        " VALUES (%s, %s, %s, 'test:1', %s, %s, %s, %s)",
        (environment, status, ["saas-ecosystem-architecture"], dry_run, started, finished, Jsonb(commits or {})),
    )


@pytest.fixture
def loaded() -> LoadedWorkspace:
    return load_workspace(ROOT / "workspace.yaml")


@pytest.fixture
def ledger_url(fresh_database: str) -> str:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        ledger.ensure_schema(conn)
        prod = "prod"
        insert(conn, prod, "succeeded", datetime(2026, 2, 20, tzinfo=UTC), datetime(2026, 2, 20, 1, tzinfo=UTC))
        insert(
            conn, prod, "succeeded", at(2, 10), at(2, 10, 30),
            {"saas-ecosystem-architecture": {"sha": "a" * 40, "committed_at": "2026-03-01T10:30:00Z"},
             "app-agents": {"sha": "b" * 40, "committed_at": "2026-03-02T08:30:00+00:00"}},
        )  # fmt: skip
        insert(conn, prod, "failed", at(5, 12), at(5, 12, 10))
        insert(
            conn, prod, "succeeded", at(5, 14), at(5, 14, 10),
            {"saas-ecosystem-architecture": {"sha": "c" * 40, "committed_at": "2026-03-05T13:10:00Z"}},
        )  # fmt: skip
        insert(conn, prod, "rolled_back", at(10, 9), at(10, 9, 30))
        insert(conn, prod, "rolled_back", at(10, 10), at(10, 10, 30))
        insert(conn, prod, "succeeded", at(10, 16), at(10, 18, 30), {"app-agents": {"sha": "d" * 40}})
        insert(conn, prod, "running", at(20, 9), None)
        insert(conn, prod, "succeeded", at(21, 9), at(21, 9, 5), dry_run=True)
        insert(conn, "dev", "failed", at(15, 9), at(15, 9, 1))
    return fresh_database


def test_the_five_figures_per_environment(loaded: LoadedWorkspace, ledger_url: str) -> None:
    report = metrics.report(loaded, ledger_url, days=30, now=NOW, extras=False)
    by_env = {e.environment: e for e in report.environments}
    assert list(by_env) == ["local", "dev", "staging", "prod"]
    prod = by_env["prod"]
    assert prod.deployments == 7  # six finished + one running in the window; dry run and February left out
    assert prod.deployment_frequency.value == 0.1  # 3 succeeded in 30 days
    # lead times 24 h (primary), 2 h (agents), 1 h; the commit without committed_at is not counted
    assert (prod.change_lead_time.value, prod.change_lead_time.p90, prod.change_lead_time.samples) == (2.0, 24.0, 3)
    assert prod.change_fail_rate.value == 0.5  # 3 of 6 finished failed or were rolled back
    assert prod.change_fail_rate.detail == "3 of 6 failed or rolled back"
    # recoveries: 12:10 -> 14:10 = 2 h; 09:30 -> 18:30 = 9 h; 10:30 -> 18:30 = 8 h
    assert (prod.recovery_time.value, prod.recovery_time.p90, prod.recovery_time.samples) == (8.0, 9.0, 3)
    assert prod.rework_rate.value == 0.5  # deployments 3, 5 and 6 each followed a failed one
    dev = by_env["dev"]
    assert dev.change_fail_rate.value == 1.0
    assert dev.recovery_time.value is None and dev.recovery_time.detail == "1 failure(s) not yet recovered"
    assert dev.deployment_frequency.value == 0.0
    assert dev.change_lead_time.value is None
    staging = by_env["staging"]
    assert staging.change_fail_rate.value is None
    assert staging.change_fail_rate.detail == "no finished deployments in the window"


def test_a_shorter_window_and_one_environment(loaded: LoadedWorkspace, ledger_url: str) -> None:
    report = metrics.report(loaded, ledger_url, environment="prod", days=25, now=NOW, extras=False)
    assert [e.environment for e in report.environments] == ["prod"]
    prod = report.environments[0]
    assert prod.deployment_frequency.value == round(1 / 25, 4)  # only the 10 March success is after 6 March
    assert prod.change_fail_rate.value == round(2 / 3, 4)


def test_prometheus_exposition(loaded: LoadedWorkspace, ledger_url: str) -> None:
    text = metrics.prometheus(metrics.report(loaded, ledger_url, days=30, now=NOW, extras=False))
    assert "# TYPE ws_dora_change_fail_rate gauge\n" in text
    assert 'ws_dora_change_fail_rate{environment="prod"} 0.5\n' in text
    assert 'ws_dora_deployment_frequency_per_day{environment="prod"} 0.1\n' in text
    assert 'ws_dora_change_lead_time_hours{environment="prod"} 2\n' in text
    assert 'ws_dora_failed_deployment_recovery_time_hours{environment="prod"} 8\n' in text
    assert '# ws_dora_change_lead_time_hours{environment="staging"} unavailable: no succeeded deployment' in text
    for line in text.splitlines():
        assert line.startswith("#") or line.split(" ")[-1].replace(".", "", 1).isdigit(), line


def test_percentile_is_nearest_rank() -> None:
    assert dora.percentile([5.0], 0.5) == 5.0
    assert dora.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert dora.percentile([1.0, 2.0, 3.0, 4.0], 0.9) == 4.0


def test_cli_json_table_and_prometheus(fresh_database: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        ledger.ensure_schema(conn)
        insert(conn, "prod", "failed", now - timedelta(days=2, hours=3), now - timedelta(days=2, hours=2))
        insert(conn, "prod", "succeeded", now - timedelta(days=2), now - timedelta(days=1, hours=23))
    ws = ("-w", str(ROOT / "workspace.yaml"))
    ledger_db = ("--database-url", fresh_database)
    result = run_ws(*ws, "metrics", *ledger_db, "--env", "prod", "--days", "7", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    prod = data["environments"][0]
    assert prod["environment"] == "prod" and prod["change_fail_rate"]["value"] == 0.5
    assert prod["failed_deployment_recovery_time"]["value"] == 3.0
    assert prod["deployment_rework_rate"]["value"] == 0.5
    for extra in ("schema_alignment", "migration_completion"):
        assert data[extra]["value"] is not None or data[extra]["detail"].startswith("unavailable: "), data[extra]
    table = run_ws(*ws, "metrics", *ledger_db, "--env", "prod", in_process=True)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "change fail rate" in line)
    assert "50.0%" in row and "1 of 2 failed or rolled back" in row
    assert "migration completion:" in table.stdout
    prom = run_ws(*ws, "metrics", *ledger_db, "--format", "prometheus", in_process=True)
    assert 'ws_dora_change_fail_rate{environment="prod"} 0.5' in prom.stdout
    bad = run_ws(*ws, "metrics", *ledger_db, "--env", "nope", in_process=True)
    assert bad.returncode == 2 and "unknown environment 'nope'" in bad.stderr
    unreachable = run_ws(
        *ws, "metrics", "--database-url", "postgresql://127.0.0.1:1/x?connect_timeout=2", in_process=True
    )
    assert unreachable.returncode == 2 and "cannot read the deploy ledger" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_schema_alignment_and_migration_completion_come_from_their_areas(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from tests.fake_github import FakeGitHub
    from tests.workspace_builder import GIT_IDENTITY, build_workspace

    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    with FakeGitHub() as fake:
        path = build_workspace(tmp_path, fake)
    text = path.read_text()
    anchor = "  app-agents:\n    github: acme/app-agents\n"
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + "    sqlite_migration:\n      source: agents/*/memory.db\n"))
    for agent in ("alpha", "beta"):
        folder = tmp_path / "app-agents" / "agents" / agent
        folder.mkdir(parents=True)
        with sqlite3.connect(folder / "memory.db") as db:
            db.execute("CREATE TABLE memories (id INTEGER PRIMARY KEY, content TEXT)")
            db.execute("INSERT INTO memories (content) VALUES ('remember')")
        db.close()
    report = metrics.report(load_workspace(path), fresh_database, days=7)
    extras = {a.name: a for a in report.extra}
    assert extras["schema_alignment"].value == 1.0, extras["schema_alignment"].detail  # copies of the examples
    assert extras["schema_alignment"].detail.endswith("shared models and enums aligned")
    assert extras["migration_completion"].value == 0.0, extras["migration_completion"].detail
    assert extras["migration_completion"].detail == "0 of 2 agents' SQLite files migrated and validated"
    # a secondary whose copy differs lowers the alignment figure
    specs = tmp_path / "saas-spec-driven-development" / "prisma" / "schema.prisma"
    specs.write_text(specs.read_text().replace("  RETIRED\n", "", 1))
    lowered = {a.name: a for a in metrics.report(load_workspace(path), fresh_database, days=7).extra}
    assert lowered["schema_alignment"].value is not None and lowered["schema_alignment"].value < 1.0


def test_an_unreadable_environment_shows_one_reason() -> None:
    down = dora.unavailable("prod", "prod is not running (no database found)")
    assert dora.common_reason(down) == "prod is not running (no database found)"
    assert all(f.value is None for f in down.figures().values())
    empty = dora.compute("dev", [], NOW - timedelta(days=30), NOW)
    assert dora.common_reason(empty) is None  # readable but empty: each figure says why on its own
    assert empty.deployment_frequency.value == 0.0
