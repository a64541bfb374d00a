"""ws migrate against real PostgreSQL with generated SQLite corpora: the example, nasty data, kill -9 and resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from infra.migrate.convert import TargetColumn, converter_for, jsonb_text
from infra.migrate.target import libpq_url
from tests.helpers import ROOT, run_ws
from tests.test_migrate_support import (
    agent_file,
    apply_target_migrations,
    copy_example,
    create_memory_tables,
    generator,
    workspace,
    ws_json,
)


@pytest.fixture
def target_url(fresh_database: str) -> str:
    apply_target_migrations(fresh_database)
    return fresh_database


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- the example


def test_example_check_run_validate_cleanup_status(tmp_path: Path, target_url: str) -> None:
    ws_file = copy_example(tmp_path)
    app_agents = ws_file.parent / "app-agents"
    paths = generator().generate(app_agents, agents=4, memory_rows=60, conversation_rows=90)
    digests = {p.parent.name: sha256(p) for p in paths}
    base = ("-w", str(ws_file), "migrate")
    db = ("--database-url", target_url + "?schema=agents")  # the Prisma form is accepted too

    _, status0 = ws_json(*base, "status", *db)
    assert status0["agents"]["total"] == 4 and status0["agents"]["pending"] == 4

    _, plan = ws_json(*base, "check", *db)
    assert plan["ok"] and plan["rows"] == 4 * 150
    assert plan["rules"]["epoch-seconds-to-timestamptz"]["count"] > 0  # the example mixes epoch and ISO dates
    memories = next(t for t in plan["agents"][0]["tables"] if t["source_table"] == "memories")
    created = next(c for c in memories["columns"] if c["name"] == "created_at")
    assert created["epoch_values"] > 0 and created["iso_values"] > 0
    assert set(created["storage_classes"]) == {"integer", "real", "text"}

    _, dry = ws_json(*base, "run", *db, "--dry-run")
    assert dry["dry_run"] and {u["status"] for a in dry["agents"] for u in a["units"]} == {"load"}
    with psycopg.connect(target_url) as conn:
        assert conn.execute("SELECT count(*) FROM agents.memories").fetchone() == (0,)

    _, first = ws_json(*base, "run", *db, "--jobs", "2")
    assert first["rows_loaded"] == 4 * 150 and first["rows_rejected"] == 0
    assert {a["status"] for a in first["agents"]} == {"validated"}
    _, second = ws_json(*base, "run", *db)  # double run: nothing reloaded, nothing duplicated
    assert {u["status"] for a in second["agents"] for u in a["units"]} == {"skipped"}
    with psycopg.connect(target_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT agent_id) FROM agents.memories").fetchone() == (240, 4)
        assert conn.execute("SELECT count(*) FROM agents.conversations").fetchone() == (360,)
        agent = paths[0].parent.name
        source = sqlite3.connect(paths[0])
        content, metadata = source.execute("SELECT content, metadata FROM memories WHERE id = 3").fetchone()
        row = conn.execute(
            "SELECT content, metadata FROM agents.memories WHERE agent_id = %s AND source_rowid = 3", (agent,)
        ).fetchone()
        assert row == (content, json.loads(metadata))

    _, validated = ws_json(*base, "validate", *db)
    assert validated["ok"] and validated["files"] == 4
    _, dash = ws_json(*base, "status", *db)
    assert dash["agents"]["validated"] == 4 and dash["percent_complete"] == 100.0 and dash["rows_loaded"] == 600

    _, cleaned = ws_json(*base, "cleanup", *db)
    assert cleaned["retired"] == 4 and cleaned["refused"] == 0
    manifest = json.loads(Path(cleaned["manifests"][0]).read_text())
    assert {f["agent_id"]: f["sha256"] for f in manifest["files"]} == digests
    for entry in manifest["files"]:
        archived = Path(cleaned["manifests"][0]).parent / entry["archived_to"]
        assert sha256(archived) == entry["sha256"] and entry["rows"] == {"conversations": 90, "memories": 60}
    assert not any(p.exists() for p in paths)
    _, after = ws_json(*base, "status", *db)
    assert after["agents"]["archived"] == 4 and after["agents"]["total"] == 4


# -------------------------------------------------------------------------------------------- nasty data

BAD_UTF8 = b"caf\xe9 \xff\xfe latin-1 bytes"


def build_nasty(tmp: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    # 1. every anomaly the rules or the reject table must account for
    path = files["nasty"] = agent_file(tmp, "nasty")
    conn = sqlite3.connect(path)
    create_memory_tables(conn, loose=True)
    memories = [
        (1, "fact", "plain", None, '{"a": 1}', "2024-01-02T03:04:05Z"),
        (2, "fact", "with\x00nul", None, None, 1700000000),
        (3, "fact", sqlite3.Binary(b"blob that is utf-8"), b"\x00\x01", None, 1700000000123),
        (4, "fact", 42, None, '{"t": "x\\u0000y", "n": 1.50, "e": 1e2}', 1700000000.25),
        (5, "fact", 3.5, None, '{"k": 1, "k": 2}', "2024-05-06 07:08:09"),
        (6, "fact", "bad json", None, "{not json", "2024-01-01"),
        (7, None, "null kind", None, None, "2024-01-01T00:00:00+02:00"),
        (8, "fact", "bad date", None, None, "next tuesday"),
        (9, "fact", "surrogate", None, '["\\ud800"]', "1700000000"),
    ]
    conn.executemany("INSERT INTO memories VALUES (?, ?, ?, ?, ?, ?)", memories)
    conn.execute("INSERT INTO memories VALUES (10, 'fact', CAST(? AS TEXT), NULL, NULL, 0)", (BAD_UTF8,))
    conn.executemany(
        "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)",
        [
            (1, "s", "user", "hi", 10, 1700000000),
            (2, "s", "user", "too many tokens", 2**40, 1700000001),
            (3, "s", "user", "text tokens", "12", 1700000002),
            (4, "s", "user", "real tokens", 7.0, 1700000003),
            (5, "s", "user", "fractional tokens", 7.5, 1700000004),
        ],
    )
    conn.commit()
    conn.close()
    # 2. unicode and reserved-word names, an empty table, an FTS5 table with its shadow tables
    path = files["unicode"] = agent_file(tmp, "ünïcode-agent")
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE "日記" ("select" TEXT, "naïve" INTEGER, "order" REAL, "when" DATETIME);
        INSERT INTO "日記" VALUES ('選択', 1, 2.5, '2024-01-01T00:00:00Z'), ('🤖', NULL, NULL, 1700000000);
        CREATE TABLE empty_notes (id INTEGER PRIMARY KEY, body TEXT);
        CREATE VIRTUAL TABLE notes_fts USING fts5(body);
        INSERT INTO notes_fts (body) VALUES ('full text one'), ('full text two');
        """
    )
    conn.close()
    # 3. WAL mode with rows still in the write-ahead log (the writer keeps its connection open)
    files["wal"] = agent_file(tmp, "wal-agent")
    # 4. a 50 MB blob
    path = files["blob"] = agent_file(tmp, "blob-agent")
    conn = sqlite3.connect(path)
    create_memory_tables(conn)
    conn.execute("INSERT INTO memories VALUES (1, 'big', 'fifty megabytes', ?, NULL, 1)", (os.urandom(50 * 2**20),))
    conn.commit()
    conn.close()
    # 5. a truncated copy of a good file
    path = files["corrupt"] = agent_file(tmp, "corrupt-agent")
    good = agent_file(tmp, "template")
    conn = sqlite3.connect(good)
    create_memory_tables(conn)
    conn.executemany(
        "INSERT INTO memories VALUES (?, 'fact', ?, NULL, NULL, 1)", [(i, "x" * 500) for i in range(1, 400)]
    )
    conn.commit()
    conn.close()
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    good.unlink()
    good.parent.rmdir()
    # 6. a file a writer holds locked
    path = files["locked"] = agent_file(tmp, "locked-agent")
    conn = sqlite3.connect(path)
    create_memory_tables(conn)
    conn.execute("INSERT INTO memories VALUES (1, 'fact', 'locked', NULL, NULL, 1)")
    conn.commit()
    conn.close()
    return files


def test_nasty_corpus_loses_nothing(tmp_path: Path, target_url: str) -> None:
    files = build_nasty(tmp_path)
    ws_file = workspace(tmp_path)
    wal_writer = sqlite3.connect(files["wal"], isolation_level=None)
    wal_writer.execute("PRAGMA journal_mode = WAL")
    wal_writer.execute("PRAGMA wal_autocheckpoint = 0")
    create_memory_tables(wal_writer)
    wal_writer.executemany(
        "INSERT INTO conversations VALUES (?, 's', 'user', ?, 1, 1700000000)", [(i, f"m{i}") for i in range(1, 51)]
    )
    assert Path(str(files["wal"]) + "-wal").stat().st_size > 0
    locker = sqlite3.connect(files["locked"], isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    base = ("-w", str(ws_file), "migrate")
    db = ("--database-url", target_url, "--busy-timeout", "0.2")
    try:
        _, plan = ws_json(*base, "check", *db, "--create-tables", expect=1)
        problems = "\n".join(plan["problems"])
        assert "corrupt-agent" in problems and "corrupt or truncated" in problems
        assert "locked-agent" in problems and "locked by another process" in problems
        for reason in ("invalid-json", "null-in-not-null", "unparseable-timestamp", "integer-out-of-range"):
            assert reason in problems
        nasty = next(a for a in plan["agents"] if a["agent_id"] == "nasty")
        content = next(
            c
            for t in nasty["tables"]
            if t["source_table"] == "memories"
            for c in t["columns"]
            if c["name"] == "content"
        )
        assert content["storage_classes"] == {"text": 7, "blob": 1, "integer": 1, "real": 1}
        blob_plan = next(a for a in plan["agents"] if a["agent_id"] == "blob-agent")
        embedding = next(c for t in blob_plan["tables"] for c in t["columns"] if c["name"] == "embedding")
        assert embedding["huge_blobs"] == 1 and embedding["largest_blob"] == 50 * 2**20
        unicode_plan = next(a for a in plan["agents"] if a["agent_id"] == "ünïcode-agent")
        assert unicode_plan["skipped_tables"] == {
            "notes_fts_config": "virtual-shadow-skipped",
            "notes_fts_content": "virtual-shadow-skipped",
            "notes_fts_data": "virtual-shadow-skipped",
            "notes_fts_docsize": "virtual-shadow-skipped",
            "notes_fts_idx": "virtual-shadow-skipped",
        }
        proc = run_ws(*base, "check", *db)  # without --create-tables the unicode tables have no target
        assert proc.returncode == 1 and "pass --create-tables" in proc.stdout

        code, report = ws_json(*base, "run", *db, "--create-tables", expect=1)
        by_agent = {a["agent_id"]: a for a in report["agents"]}
        assert (
            by_agent["corrupt-agent"]["status"] == "failed"
            and "corrupt or truncated" in by_agent["corrupt-agent"]["error"]
        )
        assert by_agent["locked-agent"]["status"] == "failed" and "locked" in by_agent["locked-agent"]["error"]
        for agent in ("nasty", "ünïcode-agent", "wal-agent", "blob-agent"):
            assert by_agent[agent]["status"] == "validated", by_agent[agent]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    rules = report["rules"]
    for rule in (
        "nul-removed",
        "invalid-utf8-replaced",
        "integer-as-text",
        "real-as-text",
        "blob-as-text",
        "epoch-seconds-to-timestamptz",
        "epoch-milliseconds-to-timestamptz",
        "naive-time-as-utc",
        "json-nul-removed",
        "json-duplicate-keys",
        "json-surrogate-replaced",
        "text-to-integer",
        "real-to-integer",
        "virtual-shadow-skipped",
    ):
        assert rules.get(rule, 0) >= 1, rule
    nasty = by_agent["nasty"]
    units = {u["source_table"]: u for u in nasty["units"]}
    assert (units["memories"]["rows_loaded"], units["memories"]["rows_rejected"]) == (7, 3)
    assert (units["conversations"]["rows_loaded"], units["conversations"]["rows_rejected"]) == (3, 2)

    with psycopg.connect(target_url) as conn:
        rows: dict[int, str] = dict(
            conn.execute("SELECT source_rowid, content FROM agents.memories WHERE agent_id = 'nasty'").fetchall()
        )
        assert rows[2] == "withnul" and rows[3] == "blob that is utf-8" and rows[4] == "42" and rows[5] == "3.5"
        assert rows[10] == BAD_UTF8.decode("utf-8", "replace")
        meta: dict[int, str] = dict(
            conn.execute("SELECT source_rowid, metadata::text FROM agents.memories WHERE agent_id = 'nasty'").fetchall()
        )
        assert meta[4] == '{"e": 100, "n": 1.50, "t": "xy"}' and meta[5] == '{"k": 2}'
        times: dict[int, Decimal] = dict(
            conn.execute(
                "SELECT source_rowid, extract(epoch FROM created_at) FROM agents.memories WHERE agent_id = 'nasty'"
            ).fetchall()
        )
        assert times[2] == 1700000000 and times[3] == Decimal("1700000000.123") and times[4] == Decimal("1700000000.25")
        raw: dict[int, bytes] = dict(
            conn.execute(
                "SELECT source_rowid, raw FROM ws_migrate.raw_values WHERE agent_id = 'nasty' AND rule = 'invalid-utf8-replaced'"
            ).fetchall()
        )
        assert raw == {10: BAD_UTF8}
        nul_raw = conn.execute(
            "SELECT raw FROM ws_migrate.raw_values WHERE agent_id = 'nasty' AND source_rowid = 2 AND rule = 'nul-removed'"
        ).fetchone()
        assert nul_raw == (b"with\x00nul",)
        rejects = {
            (r[0], r[1]): (r[2], r[3], r[4])
            for r in conn.execute(
                "SELECT source_table, source_rowid, reason, raw, row_json FROM ws_migrate.rejects WHERE agent_id = 'nasty'"
            ).fetchall()
        }
        assert rejects[("memories", 6)][:2] == ("invalid-json", b"{not json")
        assert rejects[("memories", 7)][0] == "null-in-not-null"
        assert rejects[("memories", 8)][:2] == ("unparseable-timestamp", b"next tuesday")
        assert rejects[("conversations", 2)][:2] == ("integer-out-of-range", str(2**40).encode())
        assert rejects[("conversations", 5)][0] == "not-an-integer"
        assert rejects[("memories", 6)][2]["content"] == {"class": "text", "value": "bad json"}
        blob = conn.execute(
            "SELECT length(embedding), md5(embedding) FROM agents.memories WHERE agent_id = 'blob-agent'"
        ).fetchone()
        source_blob = sqlite3.connect(files["blob"]).execute("SELECT embedding FROM memories").fetchone()[0]
        assert blob == (50 * 2**20, hashlib.md5(source_blob).hexdigest())
        assert conn.execute("SELECT count(*) FROM agents.conversations WHERE agent_id = 'wal-agent'").fetchone() == (
            50,
        )
        uni = conn.execute('SELECT "select", "naïve", "order" FROM agents."日記" ORDER BY source_rowid').fetchall()
        assert uni == [("選択", 1, 2.5), ("🤖", None, None)]
        assert conn.execute("SELECT count(*) FROM agents.empty_notes").fetchone() == (0,)
        assert conn.execute("SELECT body FROM agents.notes_fts ORDER BY source_rowid").fetchall() == [
            ("full text one",),
            ("full text two",),
        ]
    wal_writer.close()

    # the writer is gone: the locked agent migrates now; the corrupt one still fails and validate says so
    code, again = ws_json(*base, "run", *db, "--create-tables", expect=1)
    statuses = {a["agent_id"]: a["status"] for a in again["agents"]}
    assert statuses["locked-agent"] == "validated" and statuses["corrupt-agent"] == "failed"
    assert statuses["nasty"] == "validated"
    code, validated = ws_json(*base, "validate", "--database-url", target_url, expect=1)
    assert {f["agent_id"] for f in validated["agents"] if not f["ok"]} == {"corrupt-agent"}
    _, dash = ws_json(*base, "status", "--database-url", target_url)
    assert dash["agents"]["failed"] == 1 and dash["rejects_by_reason"]["invalid-json"] >= 1


# ------------------------------------------------------------------------------------- kill -9 and resume


def make_agents(tmp: Path, agents: int, rows: int) -> list[Path]:
    paths = []
    for index in range(agents):
        path = agent_file(tmp, f"agent-{index:02d}")
        conn = sqlite3.connect(path)
        create_memory_tables(conn)
        conn.executemany(
            "INSERT INTO memories VALUES (?, 'fact', ?, ?, ?, ?)",
            [
                (i, f"memory {i} of {index} " * 5, os.urandom(64), json.dumps({"i": i}), 1700000000 + i)
                for i in range(1, rows + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO conversations VALUES (?, 's', 'user', ?, ?, ?)",
            [(i, f"message {i}", i, f"2024-01-01T00:00:{i % 60:02d}Z") for i in range(1, rows + 1)],
        )
        conn.commit()
        conn.close()
        paths.append(path)
    return paths


def kill_after_batches(argv: list[str], target_url: str, threshold: int) -> bool:
    """Run a migration in a subprocess and kill -9 it once the ledger holds ``threshold`` batches.

    Returns whether it was killed (False: it finished first). Afterwards the ledger and the data must agree
    exactly, since every batch commits together with its ledger row.
    """
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while ledger_batches(target_url) < threshold and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), stderr.decode()
    with psycopg.connect(target_url) as conn:
        loaded = conn.execute("SELECT coalesce(sum(rows_loaded), 0) FROM ws_migrate.units").fetchone()
        in_target = conn.execute(
            "SELECT (SELECT count(*) FROM agents.memories) + (SELECT count(*) FROM agents.conversations)"
        ).fetchone()
        assert loaded == in_target
    return killed


def ledger_batches(url: str) -> int:
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute("SELECT coalesce(sum(batches), 0) FROM ws_migrate.units").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0


def assert_each_row_once(url: str, rows: int) -> None:
    """Each agent table holds ``rows`` rows and no (agent, rowid) twice: nothing lost, nothing duplicated."""
    with psycopg.connect(url) as conn:
        for table in ("memories", "conversations"):
            total, distinct = conn.execute(
                sql.SQL("SELECT count(*), count(DISTINCT (agent_id, source_rowid)) FROM {}").format(
                    sql.Identifier("agents", table)
                )
            ).fetchone() or (0, 0)
            assert (table, total, distinct) == (table, rows, rows)


def test_kill_9_at_several_points_then_resume_and_validate(tmp_path: Path, target_url: str) -> None:
    make_agents(tmp_path, agents=4, rows=3000)
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
        "150",
        "--jobs",
        "2",
        "--quiet",
    ]
    total_batches = 4 * 2 * (3000 // 150)
    kills = 0
    for threshold in (3, 30, 90):
        # the ledger and the data were committed together: they agree exactly after every kill
        kills += kill_after_batches(command, target_url, threshold)
    assert kills >= 2, "the migration finished before it could be killed; the test needs more rows"
    assert ledger_batches(target_url) < total_batches

    _, plan = ws_json("-w", str(ws_file), "migrate", "run", "--database-url", target_url, "--dry-run")
    actions = [u["status"] for a in plan["agents"] for u in a["units"]]
    assert any(a.startswith("resume after rowid") for a in actions), actions

    _, resumed = ws_json("-w", str(ws_file), "migrate", "run", "--database-url", target_url)
    assert {a["status"] for a in resumed["agents"]} == {"validated"}
    assert any(u["resumed_from"] for a in resumed["agents"] for u in a["units"])
    assert_each_row_once(target_url, 4 * 3000)
    _, validated = ws_json("-w", str(ws_file), "migrate", "validate", "--database-url", target_url)
    assert validated["ok"]


# ----------------------------------------------------------------------------- validation and cleanup refusals


def test_validate_names_differing_rowids_and_cleanup_refuses(tmp_path: Path, target_url: str) -> None:
    paths = make_agents(tmp_path, agents=3, rows=50)
    ws_file = workspace(tmp_path)
    base = ("-w", str(ws_file), "migrate")
    db = ("--database-url", target_url)
    ws_json(*base, "run", *db)
    with psycopg.connect(target_url) as conn:
        conn.execute("UPDATE agents.memories SET content = 'tampered' WHERE agent_id = 'agent-00' AND source_rowid = 7")
        conn.execute("DELETE FROM agents.conversations WHERE agent_id = 'agent-00' AND source_rowid = 9")
    _, report = ws_json(*base, "validate", *db, expect=1)
    bad = {f["agent_id"]: f for f in report["agents"] if not f["ok"]}
    assert set(bad) == {"agent-00"}
    tables = {t["source_table"]: t for t in bad["agent-00"]["tables"]}
    assert tables["memories"]["different"] == [7] and tables["conversations"]["missing_in_target"] == [9]

    # agent-01 changes after validation; a new agent was never migrated; agent-00 mismatches: all refused
    edit = sqlite3.connect(paths[1])
    edit.execute("UPDATE memories SET content = 'edited later' WHERE id = 1")
    edit.commit()
    edit.close()
    make_agents(tmp_path / "late", agents=1, rows=5)
    late = agent_file(tmp_path, "agent-late")
    (tmp_path / "late" / "bot" / "agents" / "agent-00" / "memory.db").rename(late)
    _, dash = ws_json(*base, "status", *db)
    states = {a["agent_id"]: a["status"] for a in dash["per_agent"]}
    assert states == {"agent-00": "mismatch", "agent-01": "changed", "agent-02": "validated", "agent-late": "pending"}
    assert dash["agents"]["failed"] == 1 and dash["agents"]["pending"] == 2 and dash["percent_complete"] == 25.0
    _, cleaned = ws_json(*base, "cleanup", *db, expect=1)
    reasons = {i["agent_id"]: (i["action"], i["reason"]) for i in cleaned["files"]}
    assert reasons["agent-02"][0] == "archive"
    assert reasons["agent-00"][0] == "refused" and "mismatch" in reasons["agent-00"][1]
    assert reasons["agent-01"][0] == "refused" and "sha256 changed" in reasons["agent-01"][1]
    assert reasons["agent-late"][0] == "refused" and "never migrated" in reasons["agent-late"][1]
    assert paths[0].exists() and paths[1].exists() and not paths[2].exists() and late.exists()

    # --reload repairs what validate found; the file that changed is reloaded by a plain run
    ws_json(*base, "run", *db, "--reload")
    _, revalidated = ws_json(*base, "validate", *db)
    assert revalidated["ok"] and revalidated["files"] == 3


# ------------------------------------------------------------------------------------------------ units


JSON_CASES = [
    '{"b": 1, "a": 2, "aa": [1, 2.50, -0, -0.0, 1e2, 1E-3, 12345678901234567890.5]}',
    '{"é": "ü", "z": "\\n\\t\\"\\\\ \\u0001 \\u001f \\u007f", "": null, "k": [true, false, {}, []]}',
    '[{"deep": {"x": "😀", "y": 1.0e1}}, "\\u00e9"]',
    '"just a string"',
    "123.4560",
]


def test_jsonb_text_matches_postgresql(fresh_database: str) -> None:
    from infra.migrate.convert import _parse_json

    with psycopg.connect(fresh_database) as conn:
        for case in JSON_CASES:
            expected = conn.execute("SELECT %s::jsonb::text", (case,)).fetchone()
            assert expected == (jsonb_text(_parse_json(case)),), case


@pytest.mark.parametrize("copy_format", ["text", "binary"])
def test_row_hashes_agree_with_postgresql_for_every_type(fresh_database: str, copy_format: str) -> None:
    """The content hash of each converted row (md5 of its binary COPY tuple) equals the one PostgreSQL computes
    from the stored row with the types' send functions, for every supported type, sent as text or binary."""
    from infra.migrate.encode import BINARY_SIGNATURE, BINARY_TRAILER, RowEncoder, row_hash_sql

    columns = [
        TargetColumn("t", "text"),
        TargetColumn("v", "varchar", max_length=10),
        TargetColumn("c", "bpchar", max_length=6),
        TargetColumn("ci", "citext"),
        TargetColumn("nm", "name"),
        TargetColumn("b", "bytea"),
        TargetColumn("i2", "int2"),
        TargetColumn("i4", "int4"),
        TargetColumn("i8", "int8"),
        TargetColumn("f4", "float4"),
        TargetColumn("f8", "float8"),
        TargetColumn("n", "numeric"),
        TargetColumn("o", "bool"),
        TargetColumn("j", "jsonb"),
        TargetColumn("js", "json"),
        TargetColumn("ts", "timestamptz"),
        TargetColumn("tn", "timestamp"),
        TargetColumn("d", "date"),
        TargetColumn("u", "uuid"),
    ]
    pg_types = (
        "text, varchar(10), char(6), citext, name, bytea, int2, int4, int8, float4, float8, numeric, bool, jsonb, "
        "json, timestamptz, timestamp, date, uuid"
    )
    source_rows = [
        (
            "é\nx",
            "short",
            "ab",
            "MiXeD",
            "a name",
            b"\x00\xff",
            7,
            -(2**31),
            2**40,
            0.1,
            1e300,
            "12.50",
            1,
            '{"b": 1, "a": [1.0], "aa": {"z": null}}',
            '{"b":1 }',
            "2024-02-29T12:00:00.123456+05:30",
            1700000000.5,
            "2024-02-29",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        ),
        (None,) * len(columns),
        (
            "",
            "",
            "",
            "",
            "",
            b"",
            -1,
            0,
            -(2**63),
            -0.0,
            2.5,
            3,
            "false",
            "[]",
            "[]",
            1700000000123,
            "2024-01-01 00:00:00",
            "1999-12-31",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
        ),
    ]
    converters = [converter_for(c) for c in columns]
    definitions = [
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(t.strip()))
        for c, t in zip(columns, pg_types.split(","), strict=True)
    ]
    encoder = RowEncoder(columns, binary=copy_format == "binary")
    assert encoder.binary is False  # citext has no binary format psycopg knows: the table goes as text
    binary_columns = [c for c in columns if c.type_name != "citext"]
    binary_encoder = RowEncoder(binary_columns, binary=copy_format == "binary")
    assert binary_encoder.binary is (copy_format == "binary")
    with psycopg.connect(fresh_database) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        for table, table_columns, table_encoder in (("t", columns, encoder), ("tb", binary_columns, binary_encoder)):
            keep = [i for i, c in enumerate(columns) if c in table_columns]
            conn.execute(
                sql.SQL("CREATE TABLE {} (agent_id text, source_rowid bigint, {})").format(
                    sql.Identifier(table),
                    sql.SQL(", ").join(definitions[i] for i in keep),
                )
            )
            statement = sql.SQL("COPY {} (agent_id, source_rowid, {}) FROM STDIN{}").format(
                sql.Identifier(table),
                sql.SQL(", ").join(sql.Identifier(c.name) for c in table_columns),
                sql.SQL(" (FORMAT BINARY)" if table_encoder.binary else ""),
            )
            expected = {}
            with conn.cursor().copy(statement) as copy:
                data = bytearray(BINARY_SIGNATURE)
                write = table_encoder.writer(data) if table_encoder.binary else None
                for rowid, row in enumerate(source_rows, start=1):
                    values = ["agent-1", rowid] + [converters[i](row[i], []) for i in keep]
                    expected[rowid] = table_encoder.row_hash(values)
                    if write is not None:
                        assert write(values) == expected[rowid]
                    else:
                        copy.write_row(values)
                if write is not None:
                    copy.write(bytes(data + BINARY_TRAILER))
            query = sql.SQL("SELECT source_rowid, {} FROM {}").format(
                row_hash_sql(table_columns), sql.Identifier(table)
            )
            got: dict[int, int] = dict(conn.execute(query).fetchall())
            assert got == expected, table
            assert len(set(expected.values())) == len(source_rows)


def test_env_resolves_the_database_url(tmp_path: Path, target_url: str) -> None:
    make_agents(tmp_path, agents=2, rows=5)
    ws_file = workspace(tmp_path)
    info = psycopg.conninfo.conninfo_to_dict(target_url)
    prisma_url = (
        f"postgresql://{info.get('user', 'postgres')}@{info['host']}:{info['port']}/{info['dbname']}?schema=agents"
    )
    proc = run_ws("-w", str(ws_file), "migrate", "run", "--env", "local", "--json", env={"DATABASE_URL": prisma_url})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows_loaded"] == 20
    proc = run_ws("-w", str(ws_file), "migrate", "status", "--env", "nowhere")
    assert proc.returncode == 2 and "unknown environment 'nowhere'" in proc.stderr


def test_database_url_and_bad_usage(tmp_path: Path) -> None:
    assert (
        libpq_url("postgresql://u@h:5432/db?schema=agents&sslmode=require")
        == "postgresql://u@h:5432/db?sslmode=require"
    )
    ws_file = workspace(tmp_path)
    proc = run_ws(
        "-w", str(ws_file), "migrate", "status", "--repos", "nope", "--database-url", "postgresql://x@127.0.0.1:1/x"
    )
    assert proc.returncode == 2 and "declares no sqlite_migration" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_ws("-w", str(ws_file), "migrate", "check", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert proc.returncode == 2 and "cannot connect to the database" in proc.stderr and "Traceback" not in proc.stderr


def test_progress_lines_and_bars() -> None:
    import io

    from rich.console import Console

    from infra.migrate.progress import Bars, Lines

    stream = io.StringIO()
    lines = Lines(stream, interval=0.0)
    lines.start(2, 100)
    lines.agent_started("a", 60)
    lines.advance("a", 60)
    lines.agent_finished("a", "validated", "")
    lines.agent_finished("b", "failed", "b.db: corrupt")
    lines.finish()
    text = stream.getvalue()
    assert "60/100 rows (60.0%)" in text and "migrate: failed b: b.db: corrupt" in text and "agents 2/2" in text

    out = io.StringIO()
    bars = Bars(Console(file=out, force_terminal=True, width=120))
    bars.start(1, 10)
    bars.agent_started("agent-1", 10)
    bars.advance("agent-1", 10)
    bars.agent_finished("agent-1", "failed", "locked")
    bars.finish()
    assert "all agents 1/1" in out.getvalue() and "locked" in out.getvalue()


def test_ws_check_reports_sqlite_migration(tmp_path: Path) -> None:
    from infra.migrate.offline import check_sqlite_migration
    from infra.workspace.loader import load_workspace

    make_agents(tmp_path, agents=2, rows=1)
    ws_file = workspace(tmp_path)
    [result] = list(check_sqlite_migration(load_workspace(ws_file)))
    assert result.status == "ok" and result.detail.startswith("2 file(s) match agents/*/memory.db -> schema agents")
    ws_file.write_text(
        ws_file.read_text().replace("source: agents/*/memory.db", "source: agents/*/memory.db\n      agent_id: stem")
    )
    [result] = list(check_sqlite_migration(load_workspace(ws_file)))
    assert (
        result.status == "fail"
        and "same agent id 'memory'" in result.detail
        and "set agent_id to parent" in result.detail
    )


def test_reading_decodes_in_c_and_falls_back_for_invalid_utf8(tmp_path: Path) -> None:
    """iterate_rows reads text with sqlite3's own decoding and re-reads a chunk holding invalid UTF-8 with the
    text factory: the rows (InvalidUtf8 included) are exactly those of a plain read with the text factory,
    wherever the bad rows fall (first row, chunk boundaries, consecutive, last row), resumed or not."""
    from infra.migrate.convert import InvalidUtf8, text_factory
    from infra.migrate.plan import FETCH_ROWS, build_mapping, iterate_rows
    from infra.migrate.source import SourceFile, open_readonly, read_schema

    path = tmp_path / "memory.db"
    total = 3 * FETCH_ROWS + 17
    bad = {1, FETCH_ROWS - 1, FETCH_ROWS, FETCH_ROWS + 1, 2 * FETCH_ROWS + 5, total}
    with sqlite3.connect(path) as writer:
        writer.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, extra)")
        for rowid in range(1, total + 1):
            body = f"row {rowid} \u00e9"
            writer.execute(
                "INSERT INTO notes VALUES (?, CAST(? AS TEXT), ?)",
                (rowid, b"\xff\xfe bad " + str(rowid).encode() if rowid in bad else body.encode(), rowid % 3 or None),
            )
    source = SourceFile("app-agents", "a1", path, str(path), "agents", {})
    conn = open_readonly(path)
    try:
        table = read_schema(conn, path).tables[0]
        mapping = build_mapping(source, table, None, create_tables=True)
        for after in (None, FETCH_ROWS - 2, total - 1):
            expected = conn.execute(mapping.select_sql(), (after if after is not None else -(2**63),)).fetchall()
            got = list(iterate_rows(conn, mapping, path, after))
            assert got == expected and conn.text_factory is text_factory
            assert [tuple(map(type, r)) for r in got] == [tuple(map(type, r)) for r in expected]
            invalid = {r[0] for r in got if any(isinstance(v, InvalidUtf8) for v in r)}
            assert invalid == {b for b in bad if after is None or b > after}
        # a caller that reads part of the rows, queries the connection meanwhile and stops early sees its own factory
        rows = iterate_rows(conn, mapping, path, None)
        assert next(rows)[0] == 1
        assert conn.text_factory is text_factory
        assert isinstance(conn.execute("SELECT body FROM notes WHERE rowid = 1").fetchone()[0], InvalidUtf8)
        rows.close()
        assert conn.text_factory is text_factory
    finally:
        conn.close()


def test_parallel_target_checksum_is_the_serial_one(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large tables' validation lets PostgreSQL hash in parallel workers: same count and sum as the serial plan,
    and the planner settings stay inside that one transaction."""
    import infra.migrate.plan as plan_module
    from infra.migrate.load import RunOptions, run_migration
    from infra.migrate.plan import build_mapping
    from infra.migrate.source import SourceFile, open_readonly, read_schema
    from infra.migrate.target import introspect

    path = generator().generate(tmp_path / "app", agents=1, memory_rows=3000, conversation_rows=10)[0]
    source = SourceFile("app-agents", path.parent.name, path, str(path), "agents", {})
    report = run_migration(target_url, [source], RunOptions(jobs=1))
    assert {a.status for a in report.agents} == {"validated"}
    sqlite_conn = open_readonly(path)
    with psycopg.connect(target_url, autocommit=True) as conn:
        table = next(t for t in read_schema(sqlite_conn, path).tables if t.name == "memories")
        mapping = build_mapping(source, table, introspect(conn, "agents", "memories"), create_tables=False)
        serial = conn.execute(mapping.checksum_sql(), (source.agent_id,)).fetchone()
        assert serial is not None and int(serial[0]) == 3000
        monkeypatch.setattr(plan_module, "PARALLEL_CHECKSUM_ROWS", 0)
        assert mapping.target_checksum(conn, source.agent_id, 3000) == (int(serial[0]), int(serial[1]))
        after = conn.execute("SELECT current_setting('parallel_setup_cost')").fetchone()
        assert after is not None and after[0] != "0"
        conn.execute("DELETE FROM agents.memories WHERE agent_id = %s AND source_rowid = 7", (source.agent_id,))
        count, total = mapping.target_checksum(conn, source.agent_id, 3000)
        assert count == 2999 and total != int(serial[1])
    sqlite_conn.close()


def loaded_state(url: str, agent: str) -> list[Any]:
    """One agent's target rows (memories, conversations), rejects and kept raw values, in a comparable order."""
    with psycopg.connect(url) as pg:
        return [
            pg.execute(
                "SELECT source_rowid, m::text FROM agents.memories m WHERE agent_id = %s ORDER BY 1", (agent,)
            ).fetchall(),
            pg.execute(
                "SELECT source_rowid, c::text FROM agents.conversations c WHERE agent_id = %s ORDER BY 1", (agent,)
            ).fetchall(),
            pg.execute(
                """SELECT source_table, source_rowid, column_name, reason, storage_class, raw, row_json::text
                   FROM ws_migrate.rejects WHERE agent_id = %s ORDER BY 1, 2, 3""",
                (agent,),
            ).fetchall(),
            pg.execute(
                """SELECT source_table, source_rowid, column_name, rule, raw FROM ws_migrate.raw_values
                   WHERE agent_id = %s ORDER BY 1, 2, 3, 4""",
                (agent,),
            ).fetchall(),
        ]


def test_helper_process_batches_are_the_serial_ones(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large table converted with the helper process (every other batch converted in a second process) gives
    byte-identical target rows, rejects, kept raw values, ledger checksums, rule counts and batch boundaries to
    the serial path; anomalies in batches on both sides of the hand-over included."""
    import infra.migrate.load as load_module
    from infra.migrate.load import RunOptions, run_migration
    from infra.migrate.source import SourceFile

    path = agent_file(tmp_path, "big")
    conn = sqlite3.connect(path)
    create_memory_tables(conn, loose=True)
    rows = []
    for i in range(1, 4001):
        content: Any = f"memory {i} " * 3
        if i % 97 == 0:
            content = f"nul\x00{i}"
        elif i % 89 == 0:
            content = b"\xff\xfebad " + str(i).encode()
        elif i % 83 == 0:
            content = i * 1.5
        created: Any = 1700000000 + i if i % 2 else f"2024-01-01T00:{i % 60:02d}:00Z"
        metadata = json.dumps({"i": i, "t": "\u00e9" * (i % 3)}) if i % 101 else "{not json"
        rows.append((i * 3, content, os.urandom(16), metadata, created))
    conn.executemany("INSERT INTO memories VALUES (?, 'fact', ?, ?, ?, ?)", rows)
    conn.execute("UPDATE memories SET content = CAST(content AS TEXT) WHERE typeof(content) = 'blob'")
    conn.executemany(
        "INSERT INTO conversations VALUES (?, 's', 'user', ?, ?, ?)",
        [(i, f"message {i}", i if i % 50 else "many", "2024-01-01T00:00:00Z") for i in range(1, 2001)],
    )
    conn.commit()
    conn.close()
    source = SourceFile("bot", "big", path, str(path), "agents", {})

    def snapshot() -> list[Any]:
        with psycopg.connect(target_url) as pg:
            return [
                *loaded_state(target_url, "big"),
                pg.execute(
                    """SELECT source_table, status, last_rowid, source_rows, rows_loaded, rows_rejected, checksum,
                              rules::text, batches, validation::text FROM ws_migrate.units
                       WHERE agent_id = 'big' ORDER BY 1"""
                ).fetchall(),
            ]

    started: list[str] = []
    real_start = load_module._start_helper

    def counting_start(*args: Any) -> Any:
        started.append(args[1].source.name)
        return real_start(*args)

    monkeypatch.setattr(load_module, "_start_helper", counting_start)
    # the helper process converts batches of the Python path: every row takes it here (native=False)
    serial = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=300, helper_min_rows=0, native=False))
    assert started == [] and {a.status for a in serial.agents} == {"validated"}
    before = snapshot()
    assert before[2] and before[3], "the corpus must produce rejects and kept raw values"

    monkeypatch.setattr(load_module, "CORES", 2)
    helped = run_migration(
        target_url, [source], RunOptions(jobs=1, batch_rows=300, helper_min_rows=1000, reload=True, native=False)
    )
    assert "memories" in started and {a.status for a in helped.agents} == {"validated"}
    assert helped.rules() == serial.rules() and helped.rows_rejected == serial.rows_rejected > 0
    after = snapshot()
    for index, name in enumerate(("memories", "conversations", "rejects", "raw values", "ledger")):
        assert after[index] == before[index], name


def test_kill_9_while_the_helper_process_converts_then_resume(tmp_path: Path, target_url: str) -> None:
    """kill -9 of a run whose large tables go through the helper process: the ledger and the data agree after every
    kill, and the resumed run loads every row exactly once and validates."""
    paths = make_agents(tmp_path, agents=1, rows=8000)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import infra.migrate.load as load\n"
        "from infra.migrate.source import SourceFile\n"
        "load.CORES = 2\n"
        "path = Path(sys.argv[2])\n"
        "source = SourceFile('bot', path.parent.name, path, str(path), 'agents', {})\n"
        "options = load.RunOptions(jobs=1, batch_rows=100, helper_min_rows=1, native=False)\n"
        "load.run_migration(sys.argv[1], [source], options)\n"
    )
    kills = 0
    for threshold in (5, 60):
        kills += kill_after_batches([sys.executable, "-c", script, target_url, str(paths[0])], target_url, threshold)
    assert kills >= 1, "the migration finished before it could be killed; the test needs more rows"
    ws_file = workspace(tmp_path)
    _, resumed = ws_json("-w", str(ws_file), "migrate", "run", "--database-url", target_url)
    assert {a["status"] for a in resumed["agents"]} == {"validated"}
    assert_each_row_once(target_url, 8000)
    _, validated = ws_json("-w", str(ws_file), "migrate", "validate", "--database-url", target_url)
    assert validated["ok"]


def test_load_without_hashes_keeps_the_rows_and_validates_by_rescan(tmp_path: Path, target_url: str) -> None:
    """`run --no-validate` computes no content hashes and sends JSON in its source text: the stored rows, rejects,
    kept raw values and rule counts are the hashed run's; the ledger says no checksum, and a later validating run
    (resumed or not) re-reads the source and catches a changed row."""
    from infra.migrate.load import RunOptions, run_migration
    from infra.migrate.source import SourceFile

    path = agent_file(tmp_path, "plain")
    conn = sqlite3.connect(path)
    create_memory_tables(conn, loose=True)
    metadata = ['{"b": 1.50, "a": [1e2, -0.0]}', '{"a": 1, "a": 2}', '{"x": "\\u0000y"}', "{not json", None]
    conn.executemany(
        "INSERT INTO memories VALUES (?, 'fact', ?, ?, ?, ?)",
        [
            (i, f"nul\x00{i}" if i % 7 == 0 else f"memory {i}", os.urandom(8), metadata[i % 5], 1700000000 + i)
            for i in range(1, 601)
        ],
    )
    conn.executemany(
        "INSERT INTO conversations VALUES (?, 's', 'user', ?, ?, ?)",
        [(i, f"message {i}", i, "2024-01-01T00:00:00Z") for i in range(1, 201)],
    )
    conn.commit()
    conn.close()
    source = SourceFile("bot", "plain", path, str(path), "agents", {})

    def snapshot() -> list[Any]:
        return loaded_state(target_url, "plain")

    def ledger() -> dict[str, tuple[Any, ...]]:
        with psycopg.connect(target_url) as pg:
            rows = pg.execute(
                """SELECT source_table, status, checksum, validation->>'method' FROM ws_migrate.units
                   WHERE agent_id = 'plain'"""
            ).fetchall()
        return {r[0]: tuple(r[1:]) for r in rows}

    hashed = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=100))
    assert {a.status for a in hashed.agents} == {"validated"}
    before = snapshot()
    assert before[2] and before[3], "the corpus must produce rejects and kept raw values"
    assert all(state[1] is not None for state in ledger().values())

    plain = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=100, validate=False, reload=True))
    assert {a.status for a in plain.agents} == {"loaded"}
    assert plain.rules() == hashed.rules() and plain.rows_rejected == hashed.rows_rejected > 0
    assert snapshot() == before
    assert {table: state[:2] for table, state in ledger().items()} == {
        "memories": ("loaded", None),
        "conversations": ("loaded", None),
    }

    # a crash in the middle of the unhashed load: ledger and data agree at rowid 300; the validating run resumes
    # it without hashes and validates it by re-reading the source
    with psycopg.connect(target_url) as pg:
        pg.execute("DELETE FROM agents.memories WHERE agent_id = 'plain' AND source_rowid > 300")
        pg.execute("DELETE FROM ws_migrate.rejects WHERE agent_id = 'plain' AND source_rowid > 300")
        pg.execute("DELETE FROM ws_migrate.raw_values WHERE agent_id = 'plain' AND source_rowid > 300")
        pg.execute(
            """UPDATE ws_migrate.units SET status = 'loading', last_rowid = 300,
                 rows_loaded = (SELECT count(*) FROM agents.memories WHERE agent_id = 'plain'),
                 rows_rejected = (SELECT count(*) FROM ws_migrate.rejects WHERE agent_id = 'plain'
                                  AND source_table = 'memories')
               WHERE agent_id = 'plain' AND source_table = 'memories'"""
        )
        pg.execute("UPDATE agents.conversations SET message = 'changed' WHERE agent_id = 'plain' AND source_rowid = 9")
    resumed = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=100))
    units = {u.source_table: u for a in resumed.agents for u in a.units}
    assert units["memories"].resumed_from == 300 and units["memories"].status == "validated"
    assert units["conversations"].status == "mismatch"
    assert ledger()["memories"] == ("validated", None, "rescan")
    assert ledger()["conversations"][:2] == ("mismatch", None)
    with psycopg.connect(target_url) as pg:
        validation = pg.execute(
            """SELECT validation FROM ws_migrate.units WHERE agent_id = 'plain' AND source_table = 'conversations'"""
        ).fetchone()
    assert validation is not None and validation[0]["different"] == [9]
    assert snapshot()[0] == before[0] and snapshot()[2:] == before[2:]


def test_a_checksum_from_another_row_encoding_is_never_compared(tmp_path: Path, target_url: str) -> None:
    """A ledger written by an earlier version holds checksums of another row encoding (its checksum_format is
    NULL after the upgrade): `run` validates such a unit by re-reading the source instead of reporting a false
    mismatch, both when it is already loaded and when it resumes in the middle."""
    from infra.migrate.encode import CHECKSUM_FORMAT
    from infra.migrate.load import RunOptions, run_migration
    from infra.migrate.source import SourceFile

    path = agent_file(tmp_path, "old")
    conn = sqlite3.connect(path)
    create_memory_tables(conn, loose=True)
    conn.executemany(
        "INSERT INTO memories VALUES (?, 'fact', ?, NULL, ?, ?)",
        [(i, f"memory {i}", json.dumps({"n": i}), 1700000000 + i) for i in range(1, 401)],
    )
    conn.executemany(
        "INSERT INTO conversations VALUES (?, 's', 'user', ?, ?, '2024-01-01T00:00:00Z')",
        [(i, f"message {i}", i) for i in range(1, 51)],
    )
    conn.commit()
    conn.close()
    source = SourceFile("bot", "old", path, str(path), "agents", {})

    def ledger() -> dict[str, tuple[Any, ...]]:
        with psycopg.connect(target_url) as pg:
            rows = pg.execute(
                """SELECT source_table, status, checksum, checksum_format, validation->>'method'
                   FROM ws_migrate.units WHERE agent_id = 'old'"""
            ).fetchall()
        return {r[0]: tuple(r[1:]) for r in rows}

    first = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=100))
    assert {a.status for a in first.agents} == {"validated"}
    assert {state[2] for state in ledger().values()} == {CHECKSUM_FORMAT}
    before = loaded_state(target_url, "old")

    # what an upgrade leaves: sums of the old encoding (they differ from this one's), no format recorded;
    # conversations loaded and waiting for validation, memories stopped after rowid 200
    with psycopg.connect(target_url) as pg:
        pg.execute("UPDATE ws_migrate.units SET checksum = checksum + 12345, checksum_format = NULL, status = 'loaded'")
        pg.execute("DELETE FROM agents.memories WHERE agent_id = 'old' AND source_rowid > 200")
        pg.execute(
            """UPDATE ws_migrate.units SET status = 'loading', last_rowid = 200, rows_loaded = 200
               WHERE agent_id = 'old' AND source_table = 'memories'"""
        )
    again = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=100))
    units = {u.source_table: u for a in again.agents for u in a.units}
    assert units["memories"].resumed_from == 200 and units["memories"].rows_loaded == 400
    assert {u.status for u in units.values()} == {"validated"}
    assert {table: (state[0], state[3]) for table, state in ledger().items()} == {
        "memories": ("validated", "rescan"),
        "conversations": ("validated", "rescan"),
    }
    assert ledger()["memories"][1:3] == (None, None)  # the resumed part was loaded without hashes
    assert loaded_state(target_url, "old") == before


def test_values_are_rounded_to_the_column_precision_as_postgresql_rounds_them(tmp_path: Path, target_url: str) -> None:
    """timestamp(p) (Prisma's DateTime is timestamp(3)), numeric(p, s) (also through a domain), real and an integer
    beyond 2^53 in a double: values more precise than the column are rounded exactly as PostgreSQL's own input
    rounds them (ties away from zero, counted from 2000-01-01 for times), each under a counted rule with its raw
    value kept, so validation agrees; numbers with too many integer digits are rejected, not a failed batch."""
    from infra.migrate.load import RunOptions, run_migration
    from infra.migrate.source import SourceFile

    with psycopg.connect(target_url) as pg:
        pg.execute("CREATE DOMAIN agents.cents AS numeric(8, 2)")
        pg.execute(
            """CREATE TABLE agents.readings (agent_id text NOT NULL, source_rowid bigint NOT NULL,
                 at_ms timestamp(3), at_s timestamptz(0), amount numeric(6, 2), hundreds numeric(5, -2),
                 price agents.cents, ratio real, big double precision, PRIMARY KEY (agent_id, source_rowid))"""
        )
    path = agent_file(tmp_path, "meter")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, at_ms, at_s, amount, hundreds, price, ratio, big)")
    # id: (at_ms, at_s, amount, hundreds, price, ratio, big)
    source: dict[int, tuple[Any, ...]] = {
        1: ("2024-01-01 00:00:00.123456", "2024-06-01T12:00:00.5Z", 1.005, 12350, "0.125", 0.1, 2**53 + 1),
        2: ("2024-01-01 00:00:00.0005", "2024-06-01T12:00:00Z", "2.5", 100, 3, 0.5, 42),
        3: ("1999-12-31 23:59:59.9995", 1700000000.4, 9999.994, -12350, None, None, None),
        4: (1700000000123, None, 9999.995, None, None, None, None),
        5: (None, None, 123456, None, None, None, None),
        6: ("2024-01-01 00:00:00.999999", None, "-0.004", None, "-0.005", None, None),
    }
    conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(i, *v) for i, v in source.items()])
    conn.commit()
    conn.close()
    rounded = {  # (rowid, column) that are rounded
        (1, "at_ms"), (1, "at_s"), (1, "amount"), (1, "hundreds"), (1, "price"), (1, "ratio"), (1, "big"),
        (2, "at_ms"), (3, "at_ms"), (3, "at_s"), (3, "amount"), (3, "hundreds"), (6, "at_ms"), (6, "amount"),
        (6, "price"),
    }  # fmt: skip
    ws_file = workspace(tmp_path)
    db = ("--database-url", target_url)
    _, plan = ws_json("-w", str(ws_file), "migrate", "check", *db, expect=1)
    table = plan["agents"][0]["tables"][0]
    assert table["rules"]["rounded-to-column-precision"] == len(rounded)
    assert table["rejects"] == {"number-out-of-range": 2}

    report = run_migration(target_url, [SourceFile("bot", "meter", path, str(path), "agents", {})], RunOptions(jobs=1))
    assert [a.status for a in report.agents] == ["validated"], report.agents[0].error
    assert report.rules()["rounded-to-column-precision"] == len(rounded)
    with psycopg.connect(target_url) as pg:
        rejects = pg.execute(
            "SELECT source_rowid, column_name, reason FROM ws_migrate.rejects ORDER BY source_rowid"
        ).fetchall()
        assert rejects == [(4, "amount", "number-out-of-range"), (5, "amount", "number-out-of-range")]
        raws = {
            (int(r[0]), str(r[1])): bytes(r[2])
            for r in pg.execute(
                "SELECT source_rowid, column_name, raw FROM ws_migrate.raw_values "
                "WHERE rule = 'rounded-to-column-precision'"
            )
        }
        assert set(raws) == rounded
        assert raws[(1, "at_ms")] == b"2024-01-01 00:00:00.123456" and raws[(3, "amount")] == b"9999.994"
        # every stored value is what PostgreSQL's own input of the source value gives
        for rowid in (1, 2, 3, 6):
            at_ms, at_s, amount, hundreds, price, ratio, big = source[rowid]
            row = pg.execute(
                """SELECT at_ms IS NOT DISTINCT FROM %s::timestamp(3), at_s IS NOT DISTINCT FROM %s::timestamptz(0),
                          amount::text IS NOT DISTINCT FROM (%s::numeric(6, 2))::text,
                          hundreds::text IS NOT DISTINCT FROM (%s::numeric(5, -2))::text,
                          price::text IS NOT DISTINCT FROM (%s::agents.cents)::text,
                          ratio IS NOT DISTINCT FROM %s::real, big IS NOT DISTINCT FROM %s::float8
                   FROM agents.readings WHERE source_rowid = %s""",
                (
                    at_ms,
                    f"{dt_from_epoch(at_s)}" if isinstance(at_s, float) else at_s,
                    None if amount is None else str(amount),
                    None if hundreds is None else str(hundreds),
                    None if price is None else str(price),
                    None if ratio is None else repr(ratio),
                    None if big is None else str(big),
                    rowid,
                ),
            ).fetchone()
            assert row == (True,) * 7, (rowid, row)
        stored = pg.execute("SELECT at_ms::text FROM agents.readings WHERE source_rowid IN (3, 6) ORDER BY 1")
        assert [r[0] for r in stored] == ["1999-12-31 23:59:59.999", "2024-01-01 00:00:01"]


def dt_from_epoch(seconds: float) -> str:
    import datetime as dt

    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=round(seconds * 1e6))).isoformat()
