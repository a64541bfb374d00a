"""The migration's own ledger: every statement on the ws_migrate schema of the target database, in one place.

Tables (created on first use, idempotently, under an advisory lock):

* ``files``: one row per (namespace, agent): where the file was, its sha256, size and mtime when it was planned,
  and the agent's status (running, loaded, validated, mismatch, failed, archived, deleted);
* ``units``: one row per (namespace, agent, source table): the status, the last committed rowid (the resume
  point), row counts, the running checksum with the row encoding it was made with, rule counts, batches, timings
  and the last validation's detail;
* ``rejects``: rows no rule could convert, with the whole source row as JSON and the offending raw value;
* ``raw_values``: raw source values a lossy rule changed, byte for byte.

A batch's rows, its rejects, its kept raw values and its :func:`record_batch` commit in one transaction, so the
ledger always says exactly which rows the target holds. Nothing outside this module names a ws_migrate table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from infra.migrate.encode import CHECKSUM_FORMAT

LEDGER_SCHEMA = "ws_migrate"
L = sql.Identifier(LEDGER_SCHEMA)
FINISHED = ("loaded", "validated", "mismatch")  # unit statuses whose rows are all loaded


class UnitKey(NamedTuple):
    """A unit of work: one source table of one agent's file."""

    namespace: str
    agent_id: str
    source_table: str


# ---------------------------------------------------------------------------------------------- the schema


def ledger_ddl() -> list[sql.Composed]:
    """The migration's own tables, in namespace ws_migrate (created on first use, idempotently)."""
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(L),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {}.files (
                namespace text NOT NULL,
                agent_id text NOT NULL,
                repo text NOT NULL,
                source_path text NOT NULL,
                sha256 text,
                size_bytes bigint,
                mtime_ns bigint,
                status text NOT NULL,
                error text,
                updated_at timestamptz NOT NULL DEFAULT now(),
                archived_to text,
                PRIMARY KEY (namespace, agent_id))"""
        ).format(L),
        sql.SQL("ALTER TABLE {}.files ADD COLUMN IF NOT EXISTS mtime_ns bigint").format(L),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {}.units (
                namespace text NOT NULL,
                agent_id text NOT NULL,
                source_table text NOT NULL,
                target_table text NOT NULL,
                sha256 text NOT NULL,
                status text NOT NULL,
                last_rowid bigint,
                source_rows bigint,
                rows_loaded bigint NOT NULL DEFAULT 0,
                rows_rejected bigint NOT NULL DEFAULT 0,
                checksum numeric DEFAULT 0,
                rules jsonb NOT NULL DEFAULT '{{}}',
                batches integer NOT NULL DEFAULT 0,
                started_at timestamptz NOT NULL DEFAULT now(),
                loaded_at timestamptz,
                load_seconds double precision NOT NULL DEFAULT 0,
                validated_at timestamptz,
                validation jsonb,
                error text,
                PRIMARY KEY (namespace, agent_id, source_table))"""
        ).format(L),
        # NULL: loaded without content hashes (`run --no-validate`); validation then re-reads the source
        sql.SQL("ALTER TABLE {}.units ALTER COLUMN checksum DROP NOT NULL").format(L),
        # the row encoding the checksum was computed with (encode.CHECKSUM_FORMAT); NULL: written by a version that
        # did not record it, so validation re-reads the source instead of trusting the sum
        sql.SQL("ALTER TABLE {}.units ADD COLUMN IF NOT EXISTS checksum_format smallint").format(L),
        # rows loaded by batches that were compared with the source inside their own transaction (the native
        # path's in-batch check): the checksum holds no content hash of those rows, nothing is left to compare of
        # them but their count
        sql.SQL("ALTER TABLE {}.units ADD COLUMN IF NOT EXISTS checked_rows bigint NOT NULL DEFAULT 0").format(L),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {}.rejects (
                id bigserial PRIMARY KEY,
                namespace text NOT NULL,
                agent_id text NOT NULL,
                source_table text NOT NULL,
                source_rowid bigint NOT NULL,
                column_name text NOT NULL,
                reason text NOT NULL,
                storage_class text NOT NULL,
                raw bytea,
                row_json jsonb NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (namespace, agent_id, source_table, source_rowid))"""
        ).format(L),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {}.raw_values (
                namespace text NOT NULL,
                agent_id text NOT NULL,
                source_table text NOT NULL,
                source_rowid bigint NOT NULL,
                column_name text NOT NULL,
                rule text NOT NULL,
                raw bytea NOT NULL,
                PRIMARY KEY (namespace, agent_id, source_table, source_rowid, column_name, rule))"""
        ).format(L),
    ]


def ensure_ledger(conn: psycopg.Connection[Any]) -> None:
    """Create ws_migrate and its tables when missing (serialised by an advisory lock across processes)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ws_migrate ledger'))")
        for statement in ledger_ddl():
            conn.execute(statement)


def ledger_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('ws_migrate.units') IS NOT NULL").fetchone()
    return bool(row and row[0])


# ------------------------------------------------------------------------------------------------- locks


def lock_unit(conn: psycopg.Connection[Any], key: UnitKey) -> None:
    """A session lock on one unit: two runs never load the same unit at once (waits while another run holds it)."""
    conn.execute("SELECT pg_advisory_lock(hashtext('ws_migrate'), hashtext(%s))", ("/".join(key),))


def unlock_unit(conn: psycopg.Connection[Any], key: UnitKey) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtext('ws_migrate'), hashtext(%s))", ("/".join(key),))


def lock_table_creation(conn: psycopg.Connection[Any]) -> None:
    """Inside a transaction: one process at a time creates target tables (CREATE ... IF NOT EXISTS races)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('ws_migrate create tables'))")


# ------------------------------------------------------------------------------------------------- files


FILE_SQL = sql.SQL(
    """INSERT INTO {}.files (namespace, agent_id, repo, source_path, sha256, size_bytes, mtime_ns, status,
      error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (namespace, agent_id) DO UPDATE SET repo = EXCLUDED.repo,
      source_path = EXCLUDED.source_path, sha256 = coalesce(EXCLUDED.sha256, files.sha256),
      size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, status = EXCLUDED.status,
      error = EXCLUDED.error, updated_at = now(), archived_to = NULL"""
).format(L)


@dataclass
class FileRecord:
    """An agent's file row: where it is, what it was when planned, and its status now."""

    namespace: str
    agent_id: str
    repo: str
    path: str
    sha256: str | None
    size: int | None
    mtime_ns: int | None
    status: str
    error: str

    def values(self) -> tuple[Any, ...]:
        return (
            self.namespace,
            self.agent_id,
            self.repo,
            self.path,
            self.sha256,
            self.size,
            self.mtime_ns,
            self.status,
            self.error or None,
        )


def record_files(conn: psycopg.Connection[Any], records: Sequence[FileRecord]) -> None:
    """Agents' file rows (one statement each, sent together)."""
    if len(records) == 1:
        conn.execute(FILE_SQL, records[0].values())
    elif records:
        conn.cursor().executemany(FILE_SQL, [r.values() for r in records])


def file_status(conn: psycopg.Connection[Any], namespace: str, agent_id: str) -> str | None:
    row = conn.execute(
        sql.SQL("SELECT status FROM {}.files WHERE namespace = %s AND agent_id = %s").format(L), (namespace, agent_id)
    ).fetchone()
    return None if row is None else str(row[0])


def set_file_status(conn: psycopg.Connection[Any], namespace: str, agent_id: str, status: str, error: str) -> None:
    conn.execute(
        sql.SQL(
            "UPDATE {}.files SET status = %s, error = %s, updated_at = now() WHERE namespace = %s AND agent_id = %s"
        ).format(L),
        (status, error or None, namespace, agent_id),
    )


def mark_retired(
    conn: psycopg.Connection[Any], namespace: str, agent_id: str, status: str, archived_to: str | None
) -> None:
    """cleanup: the file was archived (to ``archived_to``) or deleted. Commits synchronously: the caller's
    connection never turned synchronous_commit off, so every earlier batch is flushed first."""
    conn.execute(
        sql.SQL(
            "UPDATE {}.files SET status = %s, archived_to = %s, updated_at = now() WHERE namespace = %s AND agent_id = %s"
        ).format(L),
        (status, archived_to, namespace, agent_id),
    )


def file_rows(conn: psycopg.Connection[Any], namespaces: list[str]) -> list[tuple[str, str, str, str, Any, Any]]:
    """(namespace, agent, status, error, size, mtime) of every file in these namespaces."""
    rows = conn.execute(
        sql.SQL(
            "SELECT namespace, agent_id, status, coalesce(error, ''), size_bytes, mtime_ns FROM {}.files "
            "WHERE namespace = ANY(%s)"
        ).format(L),
        (namespaces,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], r[5]) for r in rows]


# ------------------------------------------------------------------------------------------------- units


@dataclass
class UnitState:
    """A unit's ledger row as `run` resumes from it."""

    sha256: str
    status: str
    last_rowid: int | None
    rows_loaded: int
    rows_rejected: int
    checksum: int | None  # None: loaded without content hashes, or with another row encoding than this one's
    rules: dict[str, int]
    seconds: float
    batches: int
    checked_rows: int = 0  # rows loaded by batches checked against the source in their own transaction


def unit_state(conn: psycopg.Connection[Any], key: UnitKey) -> UnitState | None:
    row = conn.execute(
        sql.SQL(
            """SELECT sha256, status, last_rowid, rows_loaded, rows_rejected, checksum, rules, load_seconds,
                      batches, checksum_format, checked_rows
               FROM {}.units WHERE namespace = %s AND agent_id = %s AND source_table = %s"""
        ).format(L),
        key,
    ).fetchone()
    if row is None:
        return None
    # a checksum made with another row encoding (an earlier version of ws) cannot be compared with this one's:
    # it counts as none, so validation re-reads the source
    current = row[5] is not None and row[9] == CHECKSUM_FORMAT
    return UnitState(
        sha256=row[0],
        status=row[1],
        last_rowid=row[2],
        rows_loaded=row[3],
        rows_rejected=row[4],
        checksum=int(row[5]) if current else None,
        rules=dict(row[6]),
        seconds=float(row[7]),
        batches=row[8],
        checked_rows=int(row[10]),
    )


def fail_unit(conn: psycopg.Connection[Any], key: UnitKey, target_table: str, sha256: str, error: str) -> None:
    conn.execute(
        sql.SQL(
            """INSERT INTO {}.units (namespace, agent_id, source_table, target_table, sha256, status, error)
            VALUES (%s, %s, %s, %s, %s, 'failed', %s)
            ON CONFLICT (namespace, agent_id, source_table) DO UPDATE SET status = 'failed',
              error = EXCLUDED.error"""
        ).format(L),
        (*key, target_table, sha256, error),
    )


def reset_unit(
    conn: psycopg.Connection[Any], key: UnitKey, target: sql.Composable, target_label: str, sha256: str
) -> None:
    """Start a unit from nothing: remove this agent's rows in ``target``, its rejects and raw values, then a fresh
    ledger row - in one round trip (the three deletes run as data-modifying CTEs of the ledger insert)."""
    conn.execute(
        sql.SQL(
            """WITH target AS (DELETE FROM {target} WHERE agent_id = %s),
              rejects AS (DELETE FROM {L}.rejects WHERE namespace = %s AND agent_id = %s AND source_table = %s),
              raws AS (DELETE FROM {L}.raw_values WHERE namespace = %s AND agent_id = %s AND source_table = %s)
            INSERT INTO {L}.units (namespace, agent_id, source_table, target_table, sha256, status)
            VALUES (%s, %s, %s, %s, %s, 'loading')
            ON CONFLICT (namespace, agent_id, source_table) DO UPDATE SET target_table = EXCLUDED.target_table,
              sha256 = EXCLUDED.sha256, status = 'loading', last_rowid = NULL, source_rows = NULL,
              rows_loaded = 0, rows_rejected = 0, checksum = 0, checked_rows = 0, rules = '{{}}', batches = 0,
              started_at = now(), loaded_at = NULL, load_seconds = 0, validated_at = NULL, validation = NULL,
              error = NULL"""
        ).format(target=target, L=L),
        (key.agent_id, *key, *key, *key, target_label, sha256),
    )


def write_rejects(conn: psycopg.Connection[Any], rejects: Sequence[tuple[Any, ...]]) -> None:
    """Rejected rows: (namespace, agent, table, rowid, column, reason, storage class, raw, row as JSON)."""
    if rejects:
        conn.cursor().executemany(
            sql.SQL(
                """INSERT INTO {}.rejects (namespace, agent_id, source_table, source_rowid, column_name,
                   reason, storage_class, raw, row_json) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""
            ).format(L),
            [(*r[:-1], Jsonb(r[-1])) for r in rejects],
        )


def write_raw_values(conn: psycopg.Connection[Any], raws: Sequence[tuple[Any, ...]]) -> None:
    """Raw values lossy rules changed: (namespace, agent, table, rowid, column, rule, raw bytes)."""
    if raws:
        conn.cursor().executemany(
            sql.SQL(
                """INSERT INTO {}.raw_values (namespace, agent_id, source_table, source_rowid,
                   column_name, rule, raw) VALUES (%s, %s, %s, %s, %s, %s, %s)"""
            ).format(L),
            raws,
        )


@dataclass
class UnitProgress:
    """Where a unit stands after its last committed batch (what :func:`record_batch` writes)."""

    after: int | None  # last rowid committed
    rows_loaded: int
    rows_rejected: int
    checksum: int | None  # None: loading without content hashes
    rules: dict[str, int]
    seconds: float
    checked_rows: int = 0  # rows loaded by batches checked against the source in their own transaction


def record_batch(
    conn: psycopg.Connection[Any],
    key: UnitKey,
    progress: UnitProgress,
    *,
    exhausted: bool,
    validation: tuple[bool, dict[str, Any]] | None = None,
) -> str:
    """The unit's position after one more batch (in the batch's own transaction); ``exhausted``: it was the last;
    ``validation``: the unit's outcome, recorded with its last batch (as :func:`record_load_validation` does, in
    the same statement). Returns the unit's new status."""
    if validation is not None:
        status = "validated" if validation[0] else "mismatch"
    else:
        status = "loaded" if exhausted else "loading"
    conn.execute(
        sql.SQL(
            """UPDATE {}.units SET last_rowid = %s, rows_loaded = %s, rows_rejected = %s,
               checksum = %s, checksum_format = %s, checked_rows = %s, rules = %s, batches = batches + 1,
               load_seconds = %s, status = %s,
               source_rows = CASE WHEN %s THEN %s ELSE source_rows END,
               loaded_at = CASE WHEN %s THEN now() END, error = NULL,
               validated_at = CASE WHEN %s THEN (CASE WHEN %s THEN now() END) ELSE validated_at END,
               validation = CASE WHEN %s THEN %s ELSE validation END
               WHERE namespace = %s AND agent_id = %s AND source_table = %s"""
        ).format(L),
        (
            progress.after,
            progress.rows_loaded,
            progress.rows_rejected,
            progress.checksum,
            None if progress.checksum is None else CHECKSUM_FORMAT,
            progress.checked_rows,
            Jsonb(progress.rules),
            progress.seconds,
            status,
            exhausted,
            progress.rows_loaded + progress.rows_rejected,
            exhausted,
            validation is not None,
            validation is not None and validation[0],
            validation is not None,
            Jsonb(validation[1]) if validation is not None else None,
            *key,
        ),
    )
    return status


def record_load_validation(conn: psycopg.Connection[Any], key: UnitKey, ok: bool, detail: dict[str, Any]) -> str:
    """The outcome of comparing a loaded unit with what was recorded while loading; returns the new status."""
    status = "validated" if ok else "mismatch"
    conn.execute(
        sql.SQL(
            """UPDATE {}.units SET status = %s, validated_at = CASE WHEN %s THEN now() END, validation = %s
               WHERE namespace = %s AND agent_id = %s AND source_table = %s"""
        ).format(L),
        (status, ok, Jsonb(detail), *key),
    )
    return status


def record_rescan_validation(conn: psycopg.Connection[Any], key: UnitKey, ok: bool, detail: dict[str, Any]) -> None:
    """The outcome of re-reading the source: a unit still loading or failed keeps its status."""
    conn.execute(
        sql.SQL(
            """UPDATE {}.units SET status = CASE WHEN %s THEN 'validated'
                 WHEN status IN ('loaded', 'validated', 'mismatch') THEN 'mismatch' ELSE status END,
               validated_at = CASE WHEN %s THEN now() END, validation = %s
               WHERE namespace = %s AND agent_id = %s AND source_table = %s"""
        ).format(L),
        (ok, ok, Jsonb(detail), *key),
    )


def unit_status_and_sha(conn: psycopg.Connection[Any], key: UnitKey) -> tuple[str, str] | None:
    row = conn.execute(
        sql.SQL(
            "SELECT status, sha256 FROM {}.units WHERE namespace = %s AND agent_id = %s AND source_table = %s"
        ).format(L),
        key,
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def rejected_rowids(conn: psycopg.Connection[Any], key: UnitKey) -> set[int]:
    rows = conn.execute(
        sql.SQL(
            "SELECT source_rowid FROM {}.rejects WHERE namespace = %s AND agent_id = %s AND source_table = %s"
        ).format(L),
        key,
    ).fetchall()
    return {int(r[0]) for r in rows}


def all_unit_states(conn: psycopg.Connection[Any]) -> dict[UnitKey, tuple[str, str, int | None]]:
    """(namespace, agent, table) -> (status, sha256, last rowid) of every unit in the ledger."""
    rows = conn.execute(
        sql.SQL("SELECT namespace, agent_id, source_table, status, sha256, last_rowid FROM {}.units").format(L)
    ).fetchall()
    return {UnitKey(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}


def agent_units(conn: psycopg.Connection[Any], namespace: str, agent_id: str) -> dict[str, tuple[Any, ...]]:
    """source table -> (status, sha256, rows loaded, rows rejected, validated at) of one agent's units."""
    rows = conn.execute(
        sql.SQL(
            """SELECT source_table, status, sha256, rows_loaded, rows_rejected, validated_at
               FROM {}.units WHERE namespace = %s AND agent_id = %s"""
        ).format(L),
        (namespace, agent_id),
    ).fetchall()
    return {str(r[0]): tuple(r[1:]) for r in rows}


def unit_totals(conn: psycopg.Connection[Any], namespaces: list[str]) -> Iterable[tuple[str, str, int, int]]:
    """(namespace, agent, rows loaded, rows rejected) summed over each agent's units."""
    rows = conn.execute(
        sql.SQL(
            """SELECT namespace, agent_id, sum(rows_loaded), sum(rows_rejected)
               FROM {}.units WHERE namespace = ANY(%s) GROUP BY 1, 2"""
        ).format(L),
        (namespaces,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]


def reject_counts(conn: psycopg.Connection[Any], namespaces: list[str]) -> dict[str, int]:
    rows = conn.execute(
        sql.SQL("SELECT reason, count(*) FROM {}.rejects WHERE namespace = ANY(%s) GROUP BY 1 ORDER BY 1").format(L),
        (namespaces,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def rule_counts(conn: psycopg.Connection[Any], namespaces: list[str]) -> dict[str, int]:
    rows = conn.execute(
        sql.SQL(
            """SELECT key, sum(value::bigint) FROM {}.units, jsonb_each_text(rules)
               WHERE namespace = ANY(%s) GROUP BY 1 ORDER BY 1"""
        ).format(L),
        (namespaces,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
