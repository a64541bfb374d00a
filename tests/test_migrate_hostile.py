"""Gaps a hostile corpus found in ws migrate: WITHOUT ROWID tables, generated columns, WAL files read without
touching their folder, and two runs at once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.helpers import ROOT
from tests.test_migrate import assert_each_row_once, make_agents
from tests.test_migrate_support import agent_file, apply_target_migrations, create_memory_tables, workspace, ws_json


@pytest.fixture
def target_url(fresh_database: str) -> str:
    apply_target_migrations(fresh_database)
    return fresh_database


def test_without_rowid_tables_migrate_keyed_by_their_primary_key(tmp_path: Path, fresh_database: str) -> None:
    """A WITHOUT ROWID table migrates: source_rowid is the row's position in primary-key order (a counted rule),
    its key columns are ordinary columns; it resumes after a crash and validates like any other table."""
    path = agent_file(tmp_path, "keyed")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE facts (topic TEXT, seq INTEGER, body TEXT, PRIMARY KEY (topic, seq)) WITHOUT ROWID")
    rows = [(f"topic-{i % 7}", i, f"fact {i}" if i % 13 else "with\x00nul") for i in range(1, 501)]
    conn.executemany("INSERT INTO facts VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    ws_file = workspace(tmp_path)
    base = ("-w", str(ws_file), "migrate")
    db = ("--database-url", fresh_database)

    _, plan = ws_json(*base, "check", *db, "--create-tables")
    assert plan["ok"], plan["problems"]
    assert plan["rules"]["without-rowid-ordinal"]["count"] == 1 and plan["rows"] == 500
    _, report = ws_json(*base, "run", *db, "--create-tables", "--batch-rows", "64")
    assert report["agents"][0]["status"] == "validated" and report["rows_loaded"] == 500
    assert report["rules"]["without-rowid-ordinal"] == 1 and report["rules"]["nul-removed"] == len(
        [r for r in rows if "\x00" in r[2]]
    )
    expected = sorted(rows)  # primary-key order
    with psycopg.connect(fresh_database) as pg:
        stored = pg.execute("SELECT source_rowid, topic, seq, body FROM agents.facts ORDER BY source_rowid").fetchall()
        assert [r[0] for r in stored] == list(range(1, 501))
        assert [r[1:] for r in stored] == [(t, s, b.replace("\x00", "")) for t, s, b in expected]
        # a crash after rowid 200: the next run resumes there and loads each row once
        pg.execute("DELETE FROM agents.facts WHERE source_rowid > 200")
        pg.execute("DELETE FROM ws_migrate.raw_values WHERE source_rowid > 200")
        pg.execute(
            """UPDATE ws_migrate.units SET status = 'loading', last_rowid = 200, rows_loaded = 200,
                 checksum = NULL WHERE source_table = 'facts'"""
        )
    _, resumed = ws_json(*base, "run", *db, "--batch-rows", "64")
    unit = resumed["agents"][0]["units"][0]
    assert unit["resumed_from"] == 200 and unit["status"] == "validated" and unit["rows_loaded"] == 500
    with psycopg.connect(fresh_database) as pg:
        assert pg.execute("SELECT count(*), count(DISTINCT source_rowid) FROM agents.facts").fetchone() == (500, 500)
    _, validated = ws_json(*base, "validate", *db)
    assert validated["ok"]


def test_generated_columns_migrate_their_values_under_a_rule(tmp_path: Path, fresh_database: str) -> None:
    """Generated columns (STORED and VIRTUAL) used to vanish: their values migrate under a named rule; a target
    column PostgreSQL generates itself is left to PostgreSQL under another rule."""
    path = agent_file(tmp_path, "gen")
    conn = sqlite3.connect(path)
    conn.execute(
        """CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT,
             body_length INTEGER GENERATED ALWAYS AS (length(body)) STORED,
             shout TEXT GENERATED ALWAYS AS (upper(body)) VIRTUAL)"""
    )
    conn.executemany("INSERT INTO notes (id, body) VALUES (?, ?)", [(i, "note " * i) for i in range(1, 21)])
    conn.execute("CREATE TABLE sums (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, total GENERATED ALWAYS AS (a + b))")
    conn.executemany("INSERT INTO sums (id, a, b) VALUES (?, ?, ?)", [(i, i, 2 * i) for i in range(1, 11)])
    conn.commit()
    conn.close()
    with psycopg.connect(fresh_database, autocommit=True) as pg:
        pg.execute("CREATE SCHEMA agents")
        pg.execute(
            """CREATE TABLE agents.sums (agent_id text, source_rowid bigint, a bigint, b bigint,
                 total bigint GENERATED ALWAYS AS (a + b) STORED, PRIMARY KEY (agent_id, source_rowid))"""
        )
    ws_file = workspace(tmp_path)
    base = ("-w", str(ws_file), "migrate")
    db = ("--database-url", fresh_database)
    _, plan = ws_json(*base, "check", *db, "--create-tables")
    assert plan["ok"], plan["problems"]
    tables = {t["source_table"]: t for t in plan["agents"][0]["tables"]}
    assert [c["name"] for c in tables["notes"]["columns"]] == ["body", "body_length", "shout"]
    assert tables["notes"]["rules"]["generated-column-values"] == 2
    assert tables["sums"]["rules"]["generated-in-target"] == 1
    _, report = ws_json(*base, "run", *db, "--create-tables")
    assert report["agents"][0]["status"] == "validated"
    with psycopg.connect(fresh_database) as pg:
        notes = pg.execute("SELECT source_rowid, body_length, shout FROM agents.notes ORDER BY 1").fetchall()
        assert notes == [(i, len("note " * i), ("note " * i).upper()) for i in range(1, 21)]
        sums = pg.execute("SELECT source_rowid, total FROM agents.sums ORDER BY 1").fetchall()
        assert sums == [(i, 3 * i) for i in range(1, 11)]
    _, validated = ws_json(*base, "validate", *db)
    assert validated["ok"]


def test_a_wal_mode_file_is_read_without_creating_files_next_to_it(tmp_path: Path, target_url: str) -> None:
    """Sources are never written: check, run and validate of a WAL-mode file (no writer attached) leave its folder
    exactly as it was - no -wal, no -shm."""
    path = agent_file(tmp_path, "wal-at-rest")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE conversations (id INTEGER PRIMARY KEY, session_id TEXT, role TEXT, message TEXT)")
    conn.executemany("INSERT INTO conversations VALUES (?, 's', 'user', ?)", [(i, f"m{i}") for i in range(1, 51)])
    conn.commit()
    conn.close()
    before = sorted(p.name for p in path.parent.iterdir())
    assert before == ["memory.db"] and path.read_bytes()[18:20] == b"\x02\x02"  # WAL mode, at rest
    with psycopg.connect(target_url, autocommit=True) as pg:
        pg.execute("ALTER TABLE agents.conversations ALTER COLUMN tokens DROP NOT NULL")
        pg.execute("ALTER TABLE agents.conversations ALTER COLUMN created_at DROP NOT NULL")
    ws_file = workspace(tmp_path)
    base = ("-w", str(ws_file), "migrate")
    db = ("--database-url", target_url)
    ws_json(*base, "check", *db)
    assert sorted(p.name for p in path.parent.iterdir()) == before
    _, report = ws_json(*base, "run", *db)
    assert report["agents"][0]["status"] == "validated" and report["rows_loaded"] == 50
    ws_json(*base, "validate", *db)
    assert sorted(p.name for p in path.parent.iterdir()) == before


def test_two_runs_at_once_leave_a_true_status(tmp_path: Path, target_url: str) -> None:
    """Two `run`s started together: whichever finishes last, status then says what the ledger's units say (every
    agent validated, 100%), and validate repairs an agent's status a run left behind."""
    make_agents(tmp_path, agents=6, rows=1500)
    ws_file = workspace(tmp_path)
    command = [
        sys.executable,
        "-m",
        "infra.cli",
        "-w",
        str(ws_file),
        "migrate",
        "run",
        "--database-url",
        target_url,
        "--batch-rows",
        "200",
        "--jobs",
        "2",
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_out, err) in zip(runs, outputs, strict=True):
        assert run.returncode in (0, 1) and b"Traceback" not in err, err.decode()
    assert_each_row_once(target_url, 6 * 1500)
    with psycopg.connect(target_url) as pg:
        units = pg.execute("SELECT status, count(*) FROM ws_migrate.units GROUP BY 1").fetchall()
    assert units == [("validated", 12)]
    _, dash = ws_json("-w", str(ws_file), "migrate", "status", "--database-url", target_url)
    assert dash["percent_complete"] == 100.0 and dash["agents"]["failed"] == 0, [
        (a["agent_id"], a["status"], a["error"]) for a in dash["per_agent"]
    ]

    with psycopg.connect(target_url) as pg:  # what a run that lost the race used to leave behind
        pg.execute("UPDATE ws_migrate.files SET status = 'failed', error = 'busy' WHERE agent_id = 'agent-01'")
    _, validated = ws_json("-w", str(ws_file), "migrate", "validate", "--database-url", target_url)
    assert validated["ok"]
    _, dash = ws_json("-w", str(ws_file), "migrate", "status", "--database-url", target_url)
    assert dash["percent_complete"] == 100.0 and dash["agents"]["validated"] == 6


def test_a_row_at_the_lowest_rowid_fails_its_table_instead_of_vanishing(tmp_path: Path, fresh_database: str) -> None:
    """Reading starts after rowid -2^63, so a row stored at exactly that rowid was skipped by `run` on both paths,
    and the unit still validated (2 of 3 rows). Such a table is now refused by `check` and fails its unit in `run`
    with what to do; the agent's other tables load."""
    apply_target_migrations(fresh_database)
    path = agent_file(tmp_path, "lowest")
    conn = sqlite3.connect(path)
    create_memory_tables(conn)
    conn.executemany("INSERT INTO memories VALUES (?, 'fact', 'c', NULL, NULL, 1700000000)", [(-(2**63),), (1,), (2,)])
    conn.execute("INSERT INTO conversations VALUES (1, 's', 'user', 'hello', NULL, 1700000000)")
    conn.commit()
    conn.close()
    ws_file = workspace(tmp_path)
    base = ("-w", str(ws_file), "migrate")
    db = ("--database-url", fresh_database)
    _, plan = ws_json(*base, "check", *db, expect=1)
    assert not plan["ok"] and any("-9223372036854775808" in p for p in plan["problems"]), plan["problems"]
    _, report = ws_json(*base, "run", *db, expect=1)
    [agent] = report["agents"]
    units = {u["source_table"]: u for u in agent["units"]}
    assert agent["status"] == "failed" and units["memories"]["status"] == "failed"
    assert "-9223372036854775808" in units["memories"]["error"] and units["conversations"]["status"] == "validated"
    with psycopg.connect(fresh_database) as pg:
        assert pg.execute("SELECT count(*) FROM agents.memories").fetchone() == (0,)
