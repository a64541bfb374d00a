"""ws migrate and PostgreSQL's 63-byte identifiers: names that collide after truncation are refused, not merged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from infra.migrate.target import pg_identifier
from tests.test_migrate_support import agent_file, workspace, ws_json

# same first 63 bytes (ASCII)
LONG_ONE = "t" * 63 + "_one"
LONG_TWO = "t" * 63 + "_two"
# 33 characters each (a character count sees no problem), but both are 31 x "é" (62 bytes) once cut to 63 bytes
WIDE_A = "é" * 32 + "a"
WIDE_B = "é" * 31 + "ü" + "b"
COLUMN_X = "c" * 63 + "_x"
COLUMN_Y = "c" * 63 + "_y"


def test_pg_identifier_cuts_bytes_at_a_character_boundary() -> None:
    assert pg_identifier("short") == "short"
    assert pg_identifier(LONG_ONE) == "t" * 63 == pg_identifier(LONG_TWO)
    assert pg_identifier(WIDE_A) == "é" * 31 == pg_identifier(WIDE_B)
    assert len(pg_identifier("é" * 40).encode()) == 62
    assert pg_identifier("x" + "日" * 30) == "x" + "日" * 20  # 1 + 20 x 3 bytes = 61; one more would be 64


@pytest.fixture
def colliding(tmp_path: Path) -> Path:
    path = agent_file(tmp_path, "long-names")
    conn = sqlite3.connect(path)
    for name in (LONG_ONE, LONG_TWO, WIDE_A, WIDE_B):
        conn.execute(f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY, body TEXT)')
        rows = [(i, f"{name[-3:]} {i}") for i in range(1, 6)]
        conn.executemany(f'INSERT INTO "{name}" VALUES (?, ?)', rows)  # noqa: S608 (test names)
    conn.execute(f'CREATE TABLE wide_columns (id INTEGER PRIMARY KEY, "{COLUMN_X}" TEXT, "{COLUMN_Y}" TEXT)')
    conn.execute("INSERT INTO wide_columns VALUES (1, 'x', 'y')")
    conn.commit()
    conn.close()
    return workspace(tmp_path)


def test_names_that_collide_after_truncation_are_refused(colliding: Path, fresh_database: str) -> None:
    base = ("-w", str(colliding), "migrate")
    db = ("--database-url", fresh_database)
    _, plan = ws_json(*base, "check", *db, "--create-tables", expect=1)
    problems = "\n".join(plan["problems"])
    for first, second in ((LONG_ONE, LONG_TWO), (WIDE_A, WIDE_B)):
        assert f"{first!r} and {second!r}" in problems
    assert "63 bytes" in problems and "sqlite_migration.tables" in problems
    assert f"{COLUMN_X!r} and {COLUMN_Y!r}" in problems
    tables = {t["source_table"]: t for t in plan["agents"][0]["tables"]}
    assert {name for name, t in tables.items() if t["action"] == "none"} == {
        LONG_ONE,
        LONG_TWO,
        WIDE_A,
        WIDE_B,
        "wide_columns",
    }

    _, report = ws_json(*base, "run", *db, "--create-tables", expect=1)
    units = {u["source_table"]: u for u in report["agents"][0]["units"]}
    assert {name: u["status"] for name, u in units.items()} == dict.fromkeys(units, "failed")
    with psycopg.connect(fresh_database) as conn:
        validated = conn.execute("SELECT count(*) FROM ws_migrate.units WHERE status = 'validated'").fetchone()
        assert validated == (0,)
        created = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'agents'").fetchone()
        assert created == (0,)
    _, dash = ws_json(*base, "status", *db)
    assert dash["percent_complete"] == 0.0 and dash["agents"]["failed"] == 1


def test_a_long_name_without_a_collision_loads_into_its_truncated_table(tmp_path: Path, fresh_database: str) -> None:
    path = agent_file(tmp_path, "one-long")
    conn = sqlite3.connect(path)
    conn.execute(f'CREATE TABLE "{WIDE_A}" (id INTEGER PRIMARY KEY, "{COLUMN_X}" TEXT)')
    conn.executemany(f'INSERT INTO "{WIDE_A}" VALUES (?, ?)', [(i, f"v{i}") for i in range(1, 4)])  # noqa: S608
    conn.commit()
    conn.close()
    ws_file = workspace(tmp_path)
    db = ("--database-url", fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as pg:  # the target exists, as PostgreSQL names it
        pg.execute("CREATE SCHEMA agents")
        pg.execute(
            psycopg.sql.SQL(
                "CREATE TABLE agents.{} (agent_id text, source_rowid bigint, {} text, PRIMARY KEY (agent_id, "
                "source_rowid))"
            ).format(psycopg.sql.Identifier(pg_identifier(WIDE_A)), psycopg.sql.Identifier(pg_identifier(COLUMN_X)))
        )
    _, plan = ws_json("-w", str(ws_file), "migrate", "check", *db)
    assert plan["ok"], plan["problems"]
    _, report = ws_json("-w", str(ws_file), "migrate", "run", *db)
    assert report["agents"][0]["status"] == "validated" and report["rows_loaded"] == 3
    with psycopg.connect(fresh_database) as pg:
        rows = pg.execute(
            psycopg.sql.SQL("SELECT {} FROM agents.{} ORDER BY source_rowid").format(
                psycopg.sql.Identifier(pg_identifier(COLUMN_X)), psycopg.sql.Identifier(pg_identifier(WIDE_A))
            )
        ).fetchall()
    assert rows == [("v1",), ("v2",), ("v3",)]
