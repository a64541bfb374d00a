"""The native columnar path of `ws migrate run` stores exactly what the Python path stores: rows, rejects, kept raw
values, rule counts and ledger checksums, on the nasty corpus and on generated data."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any
from unittest.mock import patch

import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from infra.migrate import columnar
from infra.migrate.load import RunOptions, RunReport, run_migration
from infra.migrate.source import SourceFile
from infra.migrate.validate import validate
from tests.test_migrate import build_nasty, loaded_state
from tests.test_migrate_support import agent_file, apply_target_migrations, create_memory_tables, generator


@pytest.fixture
def target_url(fresh_database: str) -> str:
    apply_target_migrations(fresh_database)
    return fresh_database


def ledger_units(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as pg:
        return pg.execute(
            """SELECT agent_id, source_table, status, source_rows, rows_loaded, rows_rejected, checksum,
                      checksum_format, rules::text, batches, validation->>'method', checked_rows
               FROM ws_migrate.units ORDER BY 1, 2"""
        ).fetchall()


def edge_cases(tmp: Path) -> Path:
    """Values at the borders of what the native path takes: ISO shapes, epochs, JSON, NULLs, bad UTF-8."""
    path = agent_file(tmp, "edges")
    conn = sqlite3.connect(path)
    create_memory_tables(conn, loose=True)
    times: list[Any] = [
        "2024-02-29T12:00:00Z", "2024-02-29 12:00:00.123", "2024-02-29T12:00:00.123456+05:30",
        "2023-02-29 00:00:00", "2024-01-01T24:00:00", "2024-01-01T23:59:60", "0001-01-01 00:00:00",
        "2024-01-01T00:00:00.1234", "2024-01-01T00:00:00-23:59", "2024-01-01T00:00:00+24:00", " 2024-01-01 00:00:00",
        "2024-01-01", 1700000000, 1700000000.5, 1700000000123, 1700000000123.4, -1.0, 0, 2.5e-7, 1e11, 1e11 + 1,
        -62135596800, 253402300799999, 253402300800000, "1700000000", 1e300, -9223372036854775808,
    ]  # fmt: skip
    metadata: list[Any] = [
        '{"a": 1, "b": [1, 2.50, -0]}', '{"a": 1, "a": 2}', '{"x": {"k": 1, "k": 2}}', '[{"k": 1}, {"k": 1, "k": 3}]',
        '{"e": 1e2}', '{"e": 1e400000}', '{"s": "\\u0000"}', '{"s": "tab\\tquote\\""}', "{not json", None, "42",
        '"text"', "[" * 3000 + "]" * 3000, '{"a": null}', b'{"blob": 1}', 3.5,
        '{"t": [1, 2], "d": {"k": 1, "k": 2}}', '{"a": {"b": null}, "c": [1]}', '{"k": [{"x": 1, "x": 2}]}',
        '{"a": {"b": [1]}, "c": {"d": 1, "d": 1}}', '"{not an object}"', '{"s": "[{", "a": 1, "a": 2}',
    ]  # fmt: skip
    rows = []
    for i in range(1, 301):
        content: Any = f"content {i} é" if i % 17 else ("with\x00nul" if i % 2 else 12345)
        embedding: Any = None if i % 5 == 0 else (bytes([i % 256]) * (i % 7) if i % 11 else "text in a blob column")
        rows.append((i, content, embedding, metadata[i % len(metadata)], times[i % len(times)]))
    conn.executemany("INSERT INTO memories VALUES (?, 'fact', ?, ?, ?, ?)", rows)
    conn.execute("UPDATE memories SET content = CAST(? AS TEXT) WHERE id = 7", (b"bad \xff utf-8",))
    conn.executemany(
        "INSERT INTO conversations VALUES (?, 's', 'user', ?, ?, ?)",
        [(i, "", [None, 2**31, 7, "8", 9.0][i % 5], times[(i * 7) % len(times)]) for i in range(1, 201)],
    )
    conn.commit()
    conn.close()
    return path


def run_both(url: str, sources: list[SourceFile], batch_rows: int) -> tuple[RunReport, RunReport, list[Any], list[Any]]:
    python = run_migration(url, sources, RunOptions(jobs=1, batch_rows=batch_rows, create_tables=True, native=False))
    before = [loaded_state(url, s.agent_id) for s in sources], ledger_units(url)
    native = run_migration(url, sources, RunOptions(jobs=1, batch_rows=batch_rows, create_tables=True, reload=True))
    after = [loaded_state(url, s.agent_id) for s in sources], ledger_units(url)
    assert python.native_rows == 0
    return python, native, list(before), list(after)


def test_native_and_python_paths_store_the_same(tmp_path: Path, target_url: str) -> None:
    files = build_nasty(tmp_path)
    paths = [p for p in files.values() if p.exists()] + [edge_cases(tmp_path)]
    paths += generator().generate(tmp_path / "gen", agents=2, memory_rows=700, conversation_rows=500)
    sources = [SourceFile("bot", p.parent.name, p, str(p), "agents", {}) for p in paths]
    python, native, before, after = run_both(target_url, sources, batch_rows=128)
    assert native.native_rows > 0.8 * 2 * 1200, "generated data must mostly take the native path"
    assert native.native_rows < native.rows_loaded, "the nasty rows must take the Python path"
    assert {a.agent_id: a.status for a in native.agents} == {a.agent_id: a.status for a in python.agents}
    assert native.rules() == python.rules() and native.rows_rejected == python.rows_rejected > 0
    for index, source in enumerate(sources):
        for part, name in enumerate(("memories", "conversations", "rejects", "raw values")):
            assert after[0][index][part] == before[0][index][part], (source.agent_id, name)
    # the ledgers: the same rows, rejects, rules and batches. The Python path hashed every row it sent; on the
    # native path every batch was compared with the source in its own transaction, so the ledger counts those rows
    # as checked and holds content hashes only of the rows that went through Python (a table that cannot take the
    # native path keeps the Python path's checksum)
    without_checksum = [(*u[:6], *u[7:10]) for u in after[1]]
    assert without_checksum == [(*u[:6], *u[7:10]) for u in before[1]]
    assert {u[-1] for u in before[1]} == {0}
    for unit, python_unit in zip(after[1], before[1], strict=True):
        if unit[2] == "validated":
            assert unit[-1] in (0, unit[4]), unit
        if unit[-1] == 0:
            assert unit[6] == python_unit[6], unit
    assert sum(u[-1] for u in after[1]) >= native.native_rows
    assert {u[2] for u in after[1] if u[0] not in ("corrupt-agent",)} == {"validated"}
    # and re-reading every source (what `ws migrate validate` does: the Python path's content hash of each source
    # row against PostgreSQL's of each stored row) finds the native path's rows equal to the source's
    report = validate(target_url, sources, jobs=2)
    assert {f.agent_id for f in report.files if not f.ok} <= {"corrupt-agent"}
    assert sum(t.source_rows for f in report.files if f.ok for t in f.tables) >= native.native_rows


def test_a_json_number_postgresql_refuses_sends_the_batch_through_python(tmp_path: Path, target_url: str) -> None:
    path = agent_file(tmp_path, "huge-number")
    conn = sqlite3.connect(path)
    create_memory_tables(conn)
    conn.executemany(
        "INSERT INTO memories VALUES (?, 'fact', 'c', NULL, ?, 1700000000)",
        [(i, json.dumps({"n": i}) if i != 5 else '{"n": 1e400000}') for i in range(1, 11)],
    )
    conn.commit()
    conn.close()
    source = SourceFile("bot", "huge-number", path, str(path), "agents", {})
    report = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=4))
    unit = next(u for u in report.agents[0].units if u.source_table == "memories")
    assert unit.status == "validated" and (unit.rows_loaded, unit.rows_rejected) == (9, 1)
    assert unit.native_rows == 6  # the batch holding rowid 5 went through Python whole


def test_values_over_a_mebibyte_take_the_streaming_python_path(tmp_path: Path, target_url: str) -> None:
    """A native batch never holds large values: a blob of 2 MiB goes through Python (which streams it), its
    neighbours natively, and the stored bytes are the source's."""
    path = agent_file(tmp_path, "big-values")
    conn = sqlite3.connect(path)
    create_memory_tables(conn)
    big = bytes(range(256)) * (8 * 1024)  # 2 MiB
    conn.executemany(
        "INSERT INTO memories VALUES (?, 'fact', 'c', ?, NULL, 1700000000)",
        [(i, big if i == 3 else b"small") for i in range(1, 6)],
    )
    conn.commit()
    conn.close()
    source = SourceFile("bot", "big-values", path, str(path), "agents", {})
    report = run_migration(target_url, [source], RunOptions(jobs=1))
    unit = next(u for u in report.agents[0].units if u.source_table == "memories")
    assert unit.status == "validated" and unit.native_rows == 4
    with psycopg.connect(target_url) as pg:
        stored = pg.execute("SELECT embedding FROM agents.memories WHERE source_rowid = 3").fetchone()
    assert stored == (big,)


def change_on_insert(target_url: str, rowid: int, assignment: str) -> None:
    """A trigger that stores the memory of ``rowid`` other than it was sent (``assignment``, e.g. NEW.content := 'x'):
    what the batch check must catch."""
    with psycopg.connect(target_url, autocommit=True) as pg:
        pg.execute(
            f"""CREATE FUNCTION agents.change_one() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.source_rowid = {rowid} THEN {assignment}; END IF; RETURN NEW; END $$"""
        )
        pg.execute(
            "CREATE TRIGGER change_one BEFORE INSERT ON agents.memories FOR EACH ROW EXECUTE FUNCTION agents.change_one()"
        )


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("content", "content || ' (changed)'"),
        ("metadata", """metadata || '{"changed": true}'"""),
        ("created_at", "created_at + interval '1 microsecond'"),
        ("embedding", "content::bytea"),
    ],
)
def test_a_native_batch_stored_other_than_read_is_rolled_back(
    tmp_path: Path, target_url: str, column: str, change: str
) -> None:
    """Native rows are compared with the source inside their batch's transaction: a trigger in the target that
    changes one value of one row (text, or jsonb, which keeps no text) fails the batch, which rolls back with
    nothing kept of it; without the trigger the next run loads and validates the table."""
    path = agent_file(tmp_path, "changed")
    conn = sqlite3.connect(path)
    create_memory_tables(conn)
    conn.executemany(
        "INSERT INTO memories VALUES (?, 'fact', ?, NULL, ?, 1700000000)",
        [(i, f"memory {i}", json.dumps({"n": i, "tags": ["a", "b"]})) for i in range(1, 51)],
    )
    conn.commit()
    conn.close()
    change_on_insert(target_url, 7, f"NEW.{column} := NEW.{change}")
    source = SourceFile("bot", "changed", path, str(path), "agents", {})
    report = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=20))
    unit = next(u for u in report.agents[0].units if u.source_table == "memories")
    assert unit.status == "failed" and "differ from the rows read from the source" in unit.error
    assert "up to rowid 20" in unit.error  # the first batch, rowids 1-20
    with psycopg.connect(target_url, autocommit=True) as pg:
        assert pg.execute("SELECT count(*) FROM agents.memories").fetchone() == (0,)
        pg.execute("DROP TRIGGER change_one ON agents.memories")
    again = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=20))
    unit = next(u for u in again.agents[0].units if u.source_table == "memories")
    assert unit.status == "validated" and unit.native_rows == unit.rows_loaded == 50
    with psycopg.connect(target_url) as pg:
        method = pg.execute(
            "SELECT validation->>'method', batches FROM ws_migrate.units WHERE source_table = 'memories'"
        ).fetchone()
    assert method == ("batch-check", 3)


def fifty_memories(tmp: Path, agent: str) -> SourceFile:
    """An agent file of 50 memories (rowids 1-50, JSON metadata) as a source."""
    path = agent_file(tmp, agent)
    conn = sqlite3.connect(path)
    create_memory_tables(conn)
    conn.executemany(
        "INSERT INTO memories VALUES (?, 'fact', ?, NULL, ?, 1700000000)",
        [(i, f"memory {i}", json.dumps({"n": i})) for i in range(1, 51)],
    )
    conn.commit()
    conn.close()
    return SourceFile("bot", agent, path, str(path), "agents", {})


def test_a_later_batch_stored_other_than_read_keeps_the_batches_before(tmp_path: Path, target_url: str) -> None:
    """A batch is checked while the next one loads on a second connection: when the second batch fails its check,
    the first stays committed with its ledger row, the second and the third (loaded meanwhile) roll back, and the
    next run resumes after the first."""
    source = fifty_memories(tmp_path, "changed-later")
    change_on_insert(target_url, 27, "NEW.content := 'changed'")
    report = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=20))
    unit = next(u for u in report.agents[0].units if u.source_table == "memories")
    assert unit.status == "failed" and "after rowid 20 up to rowid 40" in unit.error
    with psycopg.connect(target_url, autocommit=True) as pg:
        stored = pg.execute("SELECT min(source_rowid), max(source_rowid), count(*) FROM agents.memories").fetchone()
        assert stored == (1, 20, 20)
        ledger = pg.execute(
            "SELECT last_rowid, rows_loaded, batches FROM ws_migrate.units WHERE source_table = 'memories'"
        ).fetchone()
        assert ledger == (20, 20, 1)
        pg.execute("DROP TRIGGER change_one ON agents.memories")
    again = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=20))
    unit = next(u for u in again.agents[0].units if u.source_table == "memories")
    assert unit.status == "validated" and unit.resumed_from == 20 and unit.rows_loaded == 50
    with psycopg.connect(target_url) as pg:
        assert pg.execute("SELECT count(*) FROM agents.memories").fetchone() == (50,)
        # every batch of both runs was checked in its transaction; the first run's rows may have changed since,
        # and their content hashes are not kept: the resumed unit is validated by re-reading the source
        found = pg.execute(
            "SELECT checked_rows, validation->>'method' FROM ws_migrate.units WHERE source_table = 'memories'"
        ).fetchone()
    assert found == (50, "rescan")


def test_a_unit_resumed_across_paths_is_validated_by_re_reading_the_source(tmp_path: Path, target_url: str) -> None:
    """A unit whose first batches went through the Python path (content hashes in the ledger) and whose rest was
    checked batch by batch on the native path holds neither a whole checksum nor only checked rows: it is validated
    by re-reading the source, and a stored row changed behind ws's back is found."""
    source = fifty_memories(tmp_path, "across")
    change_on_insert(target_url, 27, "RAISE EXCEPTION 'refused'")  # the second batch fails: the first stays
    first = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=20, native=False))
    assert next(u for u in first.agents[0].units if u.source_table == "memories").status == "failed"
    with psycopg.connect(target_url, autocommit=True) as pg:
        pg.execute("DROP TRIGGER change_one ON agents.memories")
        assert pg.execute("SELECT count(*) FROM agents.memories").fetchone() == (20,)
        pg.execute("UPDATE agents.memories SET content = 'edited' WHERE source_rowid = 3")
    again = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=20))
    unit = next(u for u in again.agents[0].units if u.source_table == "memories")
    assert unit.resumed_from == 20 and unit.rows_loaded == 50 and unit.native_rows == 30
    assert unit.status == "mismatch"
    with psycopg.connect(target_url, autocommit=True) as pg:
        found = pg.execute(
            "SELECT checked_rows, validation->>'method' FROM ws_migrate.units WHERE source_table = 'memories'"
        ).fetchone()
        assert found == (30, "rescan")
        pg.execute("UPDATE agents.memories SET content = 'memory 3' WHERE source_rowid = 3")
    assert validate(target_url, [source]).ok


def iso_corpus(seed: int, count: int) -> list[bytes | None]:
    """ISO 8601-like texts with every field drawn from a little beyond its range: the shapes the native path
    takes, their borders (years 0, 1, 2, 9998, 9999; hour 24, second 60, February 29th, offsets 24:00 and :60),
    other shapes, NULL and bytes that are not UTF-8."""
    rng = random.Random(seed)
    found: list[bytes | None] = []
    for _ in range(count):
        year = rng.choice([0, 1, 2, 3, 1969, 1970, 2000, 2023, 2024, 2100, 9998, 9999, rng.randrange(10000)])
        month, day = rng.choice([0, 1, 2, 12, 13, rng.randrange(1, 13)]), rng.choice([0, 1, 28, 29, 30, 31, 32])
        hour, minute, second = rng.choice([0, 23, 24, 12]), rng.choice([0, 59, 60]), rng.choice([0, 59, 60, 7])
        text = f"{year:04d}-{month:02d}-{day:02d}{rng.choice('T ')}{hour:02d}:{minute:02d}:{second:02d}"
        text += rng.choice(["", "", ".123", ".123456", ".1234", ".5"])
        zone = rng.choice(
            ["", "", "Z", "z", "+05:30", "-23:59", "+24:00", "-00:60", "+0530", f"+{rng.randrange(30):02d}:00"]
        )
        value: bytes | None = (text + zone).encode()
        if rng.random() < 0.03:
            value = None
        elif rng.random() < 0.03:
            value = b"\xff" + text.encode()
        elif rng.random() < 0.03:
            value = text[: rng.randrange(len(text))].encode()
        found.append(value)
    return found


def test_arrow_iso_parsing_agrees_with_the_exact_arithmetic() -> None:
    """ISO timestamps are converted by Arrow's ISO 8601 parser in a dozen calls (falling back to the exact integer
    arithmetic when it refuses a value): both give the same microseconds and naive flags on thousands of texts
    around every border, and a batch of valid texts takes the fast way (the exact one is never called)."""
    for seed in range(40):
        corpus = pa.array(iso_corpus(seed, 300), pa.large_binary())
        fast, exact = columnar.iso_micros(corpus), columnar.iso_micros_exact(corpus)
        assert fast[0].to_pylist() == exact[0].to_pylist(), seed
        assert fast[1].to_pylist() == exact[1].to_pylist(), seed
    valid = [v for v in iso_corpus(99, 20000) if v is not None]
    micros, _ = columnar.iso_micros_exact(pa.array(valid, pa.large_binary()))
    clean = pa.array([v for v, m in zip(valid, micros.to_pylist(), strict=True) if m is not None], pa.large_binary())
    assert len(clean) > 300
    with patch.object(columnar, "iso_micros_exact", side_effect=AssertionError("the exact way was taken")):
        fast_micros, fast_naive = columnar.iso_micros(clean)
    exact_micros, exact_naive = columnar.iso_micros_exact(clean)
    assert fast_micros.to_pylist() == exact_micros.to_pylist() and fast_naive.to_pylist() == exact_naive.to_pylist()
    assert 0 < sum(fast_naive.to_pylist()) < len(clean)


def test_a_row_changed_between_a_failed_run_and_its_resume_is_found(tmp_path: Path, target_url: str) -> None:
    """Batches checked by an earlier run hold no content hash in the ledger: a stored row changed after that run
    (here the text and the jsonb of rowid 3, committed in the first batch) is found when the next run resumes and
    validates the unit, which re-reads the source, and the unit is not left validated for cleanup to archive."""
    source = fifty_memories(tmp_path, "changed-between")
    change_on_insert(target_url, 27, "RAISE EXCEPTION 'refused'")  # the second batch fails: the first stays
    first = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=20))
    assert next(u for u in first.agents[0].units if u.source_table == "memories").status == "failed"
    with psycopg.connect(target_url, autocommit=True) as pg:
        pg.execute("DROP TRIGGER change_one ON agents.memories")
        pg.execute("""UPDATE agents.memories SET content = 'edited', metadata = '{"x": 1}' WHERE source_rowid = 3""")
    again = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=20))
    unit = next(u for u in again.agents[0].units if u.source_table == "memories")
    assert unit.resumed_from == 20 and unit.rows_loaded == 50 and unit.status == "mismatch"
    with psycopg.connect(target_url) as pg:
        found = pg.execute(
            "SELECT checked_rows, validation->>'method' FROM ws_migrate.units WHERE source_table = 'memories'"
        ).fetchone()
    assert found == (50, "rescan")


@pytest.mark.parametrize("batch_rows", [100, 20])
def test_a_row_of_the_agent_beyond_the_loaded_ones_fails_validation(
    tmp_path: Path, target_url: str, batch_rows: int
) -> None:
    """The last batch of a fresh unit counts the agent's rows in the target (a table of one batch: the rows it
    checked plus those outside its rowids; of several: the whole table): a row of the agent written meanwhile
    behind ws's back, beyond the source's rowids, makes the unit a mismatch in either case."""
    source = fifty_memories(tmp_path, "one-more")
    with psycopg.connect(target_url, autocommit=True) as pg:
        pg.execute(
            """CREATE FUNCTION agents.one_more() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF pg_trigger_depth() = 1 THEN
                    INSERT INTO agents.memories (agent_id, source_rowid, kind, content, created_at)
                    VALUES ('one-more', 1000000, 'fact', 'not from the source', now()) ON CONFLICT DO NOTHING;
                  END IF;
                  RETURN NULL;
                END $$"""
        )
        pg.execute(
            "CREATE TRIGGER one_more AFTER INSERT ON agents.memories FOR EACH STATEMENT EXECUTE FUNCTION agents.one_more()"
        )
    report = run_migration(target_url, [source], RunOptions(jobs=1, batch_rows=batch_rows))
    unit = next(u for u in report.agents[0].units if u.source_table == "memories")
    assert unit.rows_loaded == 50 and unit.status == "mismatch"
    with psycopg.connect(target_url) as pg:
        found = pg.execute(
            """SELECT validation->>'target_rows', validation->>'source_rows' FROM ws_migrate.units
               WHERE source_table = 'memories'"""
        ).fetchone()
    assert found == ("51", "50")
