"""`ws migrate run`: bulk-load every agent's SQLite tables into PostgreSQL with COPY, resumably.

Unit of work: one (agent, source table). Rows are read in rowid order and sent in batches; each batch is one
PostgreSQL transaction holding the COPY of its rows, its rejects, the raw values its rules kept and the ledger
row's new position (last rowid, row counts, running checksum, rule counts). So whatever kills the process
(kill -9 included), the database holds whole batches and a ledger that says exactly where to go on: a re-run
resumes after the last committed rowid, and every target row's primary key (agent_id, source_rowid) makes a
duplicate impossible. A file whose content changed since its unit started (sha256) is reloaded from scratch.

Units run in parallel in ``jobs`` worker processes, each with one database connection (threads would be
serialised by the GIL: the per-row conversion is Python). Workers die with their parent, so kill -9 of the
command stops everything at once. A corrupt, truncated or locked file fails that agent with a clear message;
the others finish.

A large table (``HELPER_MIN_ROWS`` still to load) also gets a helper process, forked by its unit's worker, when a
core is free (fewer units running than cores, checked before every batch, so the last unit still running picks
it up): the helper reads and converts every other batch, one batch ahead, and returns it as ready binary COPY
data with its checksum contribution, rule counts, rejects and kept raw values. The batches are the same rows as
without it (the worker finds each batch's end with a rowid-index walk in SQLite) and the worker still commits
them strictly in rowid order, each in one transaction with its ledger row, so resume and kill -9 behave exactly as
before; the helper dies with its worker.

COPY format: binary by default. Measured here with psycopg 3.3 on 100,000 rows of the memories shape
(text, bytea, jsonb, timestamptz), COPY alone: text with write_row 0.56-0.69 s, binary with set_types
0.38-0.44 s, even with the per-value Jsonb wrapper binary jsonb needs. End to end (scripts/bench_migrate.py
--formats, 1,000,000 rows) the two are within noise of each other, because reading and converting rows in
Python dominates; binary stays the default for the lower server-side cost. ``--copy-format text`` remains,
and tables with a type psycopg cannot send in binary fall back to text. Binary rows are formatted here (block
mode, :mod:`infra.migrate.encode`), so the tuple that is sent is also the one whose md5 is the row's content hash.

Content hashes are computed when the run validates; ``validate=False`` (``--no-validate``) loads without them and
leaves the ledger's checksum NULL, and validation then re-reads the source (:mod:`infra.migrate.validate`).
"""

from __future__ import annotations

import base64
import gc
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import pq, sql
from psycopg.copy import QueuedLibpqWriter

from infra.migrate import columnar, ledger
from infra.migrate.convert import storage_class
from infra.migrate.encode import (
    BATCH_CHECK_VERSION,
    BINARY_SIGNATURE,
    BINARY_TRAILER,
    RowEncoder,
    batch_check_sql,
    batch_digest,
)
from infra.migrate.ledger import UnitKey, UnitProgress
from infra.migrate.plan import FilePlan, TableMapping, iterate_rows, plan_file, row_converter
from infra.migrate.progress import Observer, Silent
from infra.migrate.source import (
    SourceError,
    SourceFile,
    after_bound,
    describe,
    file_digest,
    open_readonly,
)
from infra.migrate.target import TargetTable, connect, database_errors
from infra.migrate.validate import validate_table

CopyFormat = Literal["text", "binary"]
FLUSH_BYTES = 256 * 1024  # binary COPY data goes to the writer thread in pieces this size while rows convert


@dataclass
class RunOptions:
    jobs: int = 4
    batch_rows: int = 20_000
    copy_format: CopyFormat = "binary"
    create_tables: bool = False
    busy_timeout: float = 2.0
    validate: bool = True
    integrity_check: bool = True
    reload: bool = False  # start every table from scratch (e.g. after a validation mismatch)
    # a table with at least this many rows still to load gets a helper process that converts every other batch
    # when a core is free (see HELPER_MIN_ROWS); 0 turns the helper off
    helper_min_rows: int = -1
    # clean rows of supported tables take the native columnar path (infra.migrate.columnar); False: every row
    # through Python
    native: bool = True


@dataclass
class UnitResult:
    source_table: str
    target_table: str
    status: str  # validated, loaded, mismatch, failed, skipped (already done), planned
    rows: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    resumed_from: int | None = None
    rules: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""
    native_rows: int = 0  # rows this run loaded through the native columnar path


@dataclass
class AgentResult:
    repo: str
    agent_id: str
    path: str
    namespace: str
    status: str
    units: list[UnitResult] = field(default_factory=list)
    error: str = ""
    skipped_tables: dict[str, str] = field(default_factory=dict)

    @property
    def rows_loaded(self) -> int:
        return sum(u.rows_loaded for u in self.units)

    @property
    def rows_rejected(self) -> int:
        return sum(u.rows_rejected for u in self.units)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_loaded"] = self.rows_loaded
        data["rows_rejected"] = self.rows_rejected
        return data


@dataclass
class RunReport:
    agents: list[AgentResult]
    seconds: float
    copy_format: str
    dry_run: bool = False

    @property
    def rows_loaded(self) -> int:
        return sum(a.rows_loaded for a in self.agents)

    @property
    def rows_rejected(self) -> int:
        return sum(a.rows_rejected for a in self.agents)

    @property
    def native_rows(self) -> int:
        return sum(u.native_rows for a in self.agents for u in a.units)

    @property
    def failed(self) -> list[AgentResult]:
        return [a for a in self.agents if a.status in ("failed", "mismatch")]

    def rules(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for agent in self.agents:
            for unit in agent.units:
                for rule, count in unit.rules.items():
                    total[rule] = total.get(rule, 0) + count
            for rule in agent.skipped_tables.values():
                total[rule] = total.get(rule, 0) + 1
        return dict(sorted(total.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "copy_format": self.copy_format,
            "seconds": round(self.seconds, 3),
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "native_rows": self.native_rows,
            "rows_per_second": round(self.rows_loaded / self.seconds) if self.seconds else None,
            "agents_failed": len(self.failed),
            "rules": self.rules(),
            "agents": [a.as_dict() for a in self.agents],
        }


# ---------------------------------------------------------------------------------------------- helpers


def row_record(columns: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    """A whole source row as JSON that keeps every value exactly (text with NUL or bad UTF-8 and blobs as base64)."""
    record: dict[str, Any] = {}
    for name, value in zip(["rowid", *columns], row, strict=True):
        kind = storage_class(value)
        if value is None or isinstance(value, int | float):
            record[name] = {"class": kind, "value": value if value is None or kind == "integer" else repr(value)}
        elif isinstance(value, str) and "\x00" not in value:
            record[name] = {"class": kind, "value": value}
        else:
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            record[name] = {"class": kind, "base64": base64.b64encode(data).decode("ascii")}
    return record


@dataclass
class BatchPayload:
    """One converted batch: what its transaction writes besides the COPY rows (kept in ``rows`` only when the
    batch was converted by the helper process), and where it ends."""

    first_after: int | None
    last: int | None = None
    batch: int = 0
    full: bool = False
    checksum: int = 0
    checked: bool = False  # compared with the source inside its transaction (the native path's check)
    rules: dict[str, int] = field(default_factory=dict)
    rejects: list[tuple[Any, ...]] = field(default_factory=list)
    raws: list[tuple[Any, ...]] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    data: bytes = b""  # binary COPY: the helper's rows already formatted (encode.format_row_binary)


def convert_rows(
    source_rows: Iterator[tuple[Any, ...]],
    convert: Callable[[tuple[Any, ...]], Any],
    key: tuple[str, str, str],
    mapping: TableMapping,
    limit: int,
    write: Callable[[list[Any]], int],
    after: int | None = None,
) -> BatchPayload:
    """Convert up to ``limit`` rows, handing each converted row to ``write`` (which sends or keeps it and returns
    its content hash); rules, rejects (with the whole row as JSON), kept raw values and the checksum contribution
    go in the payload."""
    payload = BatchPayload(after)
    rules = payload.rules
    raws = payload.raws
    batch = 0
    batch_sum = 0
    last = None
    for row in source_rows:
        converted, rejected, applied = convert(row)
        last = row[0]
        batch += 1
        for rule, column, raw in applied:
            rules[rule] = rules.get(rule, 0) + 1
            if raw is not None:
                raws.append((*key, last, column, rule, raw))
        if converted is not None:
            batch_sum += write(converted.values)
        elif rejected is not None:
            payload.rejects.append(
                (
                    *key,
                    rejected.rowid,
                    rejected.column,
                    rejected.reason,
                    rejected.storage_class,
                    rejected.raw,
                    row_record(mapping.source_columns, rejected.row),
                )
            )
        if batch >= limit:
            payload.full = True
            break
    payload.last, payload.batch, payload.checksum = last, batch, batch_sum
    return payload


def batch_end(
    sqlite_conn: sqlite3.Connection, mapping: TableMapping, path: Any, after: int | None, limit: int
) -> int | None:
    """The rowid of the ``limit``-th row after ``after`` (where a full batch starting there ends), None when fewer
    rows are left. A rowid-index walk in SQLite, no values read."""
    query = mapping.batch_end_sql()
    try:
        row = sqlite_conn.execute(query, (after_bound(after), limit - 1)).fetchone()
    except sqlite3.Error as exc:
        raise SourceError(describe(path, exc)) from None
    return None if row is None else int(row[0])


# The helper process of a unit (forked from the unit's worker; it inherits the mapping, converter and adapters).
_HELPER: dict[str, Any] = {}
# Below this many rows still to load (three default batches) the helper is not started: forking it and shipping
# its batches back buys little for a table that ends within a second. Chosen, not tuned: on 150,000- and
# 400,000-row files the helper paid off (README); the exact break-even was not measured.
HELPER_MIN_ROWS = 60_000
CORES = os.cpu_count() or 1


_PREFETCH: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child must not use its parent's thread


def _one_thread(pools: dict[int, ThreadPoolExecutor], name: str) -> ThreadPoolExecutor:
    """This process's one-thread pool in ``pools`` (a forked child starts its own; one per table cost about 3 ms)."""
    pool = pools.get(os.getpid())
    if pool is None:
        pools.clear()
        pool = pools[os.getpid()] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    return pool


def _prefetch_pool() -> ThreadPoolExecutor:
    """The thread that reads native batches ahead."""
    return _one_thread(_PREFETCH, "native-read")


class LazyConverter:
    """A table's row converter (:func:`plan.row_converter`), generated on its first call."""

    def __init__(self, agent_id: str, mapping: TableMapping, canonical_json: bool) -> None:
        self.arguments = (agent_id, mapping, canonical_json)
        self.convert: Callable[[tuple[Any, ...]], Any] | None = None

    def __call__(self, row: tuple[Any, ...]) -> Any:
        if self.convert is None:
            agent_id, mapping, canonical_json = self.arguments
            self.convert = row_converter(agent_id, mapping, canonical_json=canonical_json)
        return self.convert(row)


def _completed(function: Callable[..., Any], *arguments: Any) -> Future[Any]:
    """``function(*arguments)`` run now, as a finished future (its exception too, raised by ``result()``)."""
    future: Future[Any] = Future()
    try:
        future.set_result(function(*arguments))
    except BaseException as exc:  # handed to whoever takes the result, as an executor would
        future.set_exception(exc)
    return future


_CHECKS: dict[int, ThreadPoolExecutor] = {}  # by process id, as _PREFETCH


def _check_pool() -> ThreadPoolExecutor:
    """The thread that checks and commits a batch while the next one loads."""
    return _one_thread(_CHECKS, "native-check")


def _second_connection(url: str) -> psycopg.Connection[Any] | None:
    """A unit's second connection, for loading a batch while the one before is checked (None if it cannot be
    had: the unit then goes on with its one connection)."""
    try:
        second = psycopg.connect(url, autocommit=True)
    except psycopg.Error:
        return None
    asynchronous_commits(second)
    return second


_CHECK_SQL: dict[tuple[Any, ...], sql.Composed] = {}


def _check_sql(mapping: TableMapping, count: str) -> sql.Composed:
    """A table's in-batch check (:func:`encode.batch_check_sql`), built once per target and column list."""
    key = (mapping.namespace, mapping.target_name, tuple(mapping.target_columns), count)
    found = _CHECK_SQL.get(key)
    if found is None:
        found = _CHECK_SQL[key] = batch_check_sql(mapping.target_identifier, mapping.target_columns, count=count)
    return found


class BatchMismatch(Exception):
    """A native batch's stored rows differ from the source's (found inside its transaction, which rolls back)."""


FIRST_NATIVE_ROWS = 2_000  # the first native batch of a table reads at least this many rows (or --batch-rows)


def first_native_limit(source: SourceFile, rows: int, most: int) -> int:
    """Rows of a table's first native batch: as many as would hold columnar.BATCH_BYTES if the whole file were this
    table's ``rows`` rows (an upper bound of their size; a table of 2,500 small rows is read in one batch), at
    least FIRST_NATIVE_ROWS, at most ``most``."""
    try:
        size = source.path.stat().st_size
    except OSError:
        size = 0
    return max(1, min(most, max(FIRST_NATIVE_ROWS, columnar.BATCH_BYTES * max(1, rows) // max(1, size))))


def _start_helper(
    source: SourceFile, mapping: TableMapping, busy_timeout: float, binary: bool, hashed: bool
) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_helper,
        initargs=(source, mapping, busy_timeout, binary, hashed),
    )


def _init_helper(source: SourceFile, mapping: TableMapping, busy_timeout: float, binary: bool, hashed: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    sqlite_conn = open_readonly(source.path, busy_timeout=busy_timeout)
    sqlite_conn.execute("BEGIN")
    _HELPER.update(
        sqlite=sqlite_conn,
        source=source,
        mapping=mapping,
        encoder=RowEncoder(mapping.target_columns, binary=binary),
        hashed=hashed,
        convert=row_converter(source.agent_id, mapping, canonical_json=hashed),
        key=(source.namespace, source.agent_id, mapping.source.name),
    )


def _helper_batch(after: int, limit: int) -> BatchPayload:
    """In the helper: read and convert the batch after ``after``; the rows come back ready for COPY (binary COPY
    tuples when the table loads in binary, else the rows' values)."""
    encoder: RowEncoder = _HELPER["encoder"]
    hashed: bool = _HELPER["hashed"]
    rows: list[list[Any]] = []
    data = bytearray()
    if encoder.binary:
        write = encoder.writer(data, hashed)
    else:

        def write(values: list[Any]) -> int:
            rows.append(values)
            return encoder.row_hash(values) if hashed else 0

    source_rows = iterate_rows(_HELPER["sqlite"], _HELPER["mapping"], _HELPER["source"].path, after)
    try:
        payload = convert_rows(source_rows, _HELPER["convert"], _HELPER["key"], _HELPER["mapping"], limit, write, after)
    finally:
        source_rows.close()
    payload.rows, payload.data = rows, bytes(data)
    return payload


# ---------------------------------------------------------------------------------------------- the run


class HelperBatches:
    """The helper process of one unit and the batches it converts ahead of the unit's own process.

    With a free core, the helper converts every other batch, one pair ahead, while the unit's process converts
    (and sends) the ones between. The batches are the same rows as without it (:func:`batch_end` finds where
    each ends) and the unit still commits them strictly in rowid order, each with its ledger row.
    """

    def __init__(
        self,
        migrator: Migrator,
        sqlite_conn: sqlite3.Connection,
        source: SourceFile,
        mapping: TableMapping,
        *,
        binary: bool,
        hashed: bool,
    ) -> None:
        self.migrator = migrator
        self.sqlite_conn = sqlite_conn
        self.source = source
        self.mapping = mapping
        self.binary = binary
        self.hashed = hashed
        self.limit = max(1, migrator.options.batch_rows)
        self.executor: ProcessPoolExecutor | None = None
        self.queued: dict[int, Future[BatchPayload]] = {}  # helper batches by the rowid they start after

    def take(self, after: int | None) -> Future[BatchPayload] | None:
        """The helper's batch that starts after ``after``, if it converted that one."""
        return self.queued.pop(after, None) if after is not None else None

    def plan_ahead(self, after: int | None, taken: bool, remaining: int) -> None:
        """Hand the helper the batch after the next local one (the next local batch starts at ``after``, or after
        the helper batch just ``taken``), when none is queued and the helper is wanted."""
        if self.queued or not self.migrator._helper_wanted(remaining):
            return
        path = self.source.path
        boundary = batch_end(self.sqlite_conn, self.mapping, path, after, self.limit)
        if taken and boundary is not None:
            boundary = batch_end(self.sqlite_conn, self.mapping, path, boundary, self.limit)
        if boundary is None:
            return
        if self.executor is None:
            options = self.migrator.options
            self.executor = _start_helper(self.source, self.mapping, options.busy_timeout, self.binary, self.hashed)
        self.queued[boundary] = self.executor.submit(_helper_batch, boundary, self.limit)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


class Migrator:
    def __init__(self, url: str, options: RunOptions, observer: Observer | None = None) -> None:
        self.url = url
        self.options = options
        self.observer = observer or Silent()
        self.create_lock = threading.Lock()
        # the target tables this run has introspected, by (namespace, table): a run's files share them
        self.targets: dict[tuple[str, str], TargetTable] = {}

    @staticmethod
    def _file_record(source: SourceFile, status: str, error: str, sha: str | None) -> ledger.FileRecord:
        stat = source.path.stat() if source.path.exists() else None
        return ledger.FileRecord(
            namespace=source.namespace,
            agent_id=source.agent_id,
            repo=source.repo,
            path=str(source.path),
            sha256=sha,
            size=stat.st_size if stat else None,
            mtime_ns=stat.st_mtime_ns if stat else None,
            status=status,
            error=error,
        )

    # -- one table -----------------------------------------------------------------------------------------

    def load_unit(
        self,
        conn: psycopg.Connection[Any],
        sqlite_conn: sqlite3.Connection,
        source: SourceFile,
        sha: str,
        mapping: TableMapping,
        rows: int = 0,
    ) -> UnitResult:
        """Load one table: fail it when it cannot map, skip (or validate) it when already loaded from this file,
        else create its target if asked, resume from the ledger (or start over), load the batches, validate."""
        result = UnitResult(mapping.source.name, mapping.target_label, "loaded", rows=rows)
        key = UnitKey(source.namespace, source.agent_id, mapping.source.name)
        if mapping.problems:
            result.status, result.error = "failed", "; ".join(mapping.problems)
            ledger.fail_unit(conn, key, mapping.target_name, sha, result.error)
            return result
        state = ledger.unit_state(conn, key)
        fresh = state is None or state.sha256 != sha or self.options.reload
        if not fresh and state is not None and state.status in ledger.FINISHED:
            return self._already_loaded(conn, sqlite_conn, source, sha, mapping, state, result)
        if state is not None and state.last_rowid is None and not state.rows_loaded and not state.rows_rejected:
            fresh = True  # nothing of it was ever committed (e.g. its first batch failed): it starts as new
        if mapping.create:
            self._create_target(conn, mapping)
        progress = self._resume_point(None if fresh else state, mapping)
        result.resumed_from = progress.after
        if progress.rows_loaded or progress.rows_rejected:
            self.observer.advance(source.agent_id, progress.rows_loaded + progress.rows_rejected)
        result.native_rows, checked = self._load_batches(
            conn, sqlite_conn, source, sha, mapping, rows, progress, fresh=fresh
        )
        result.rows_loaded, result.rows_rejected = progress.rows_loaded, progress.rows_rejected
        result.rules, result.seconds = dict(sorted(progress.rules.items())), progress.seconds
        if self.options.validate and checked:
            # every batch was compared with the source in its own transaction (_check_native_batch), and the last
            # one also counted the table's rows of the agent and recorded the outcome (validate_checked)
            result.status = checked
        elif self.options.validate:
            result.status = self.validate_loaded(
                conn, sqlite_conn, source, sha, mapping, progress.rows_loaded, progress.checksum, progress.checked_rows
            )
        return result

    def _already_loaded(
        self,
        conn: psycopg.Connection[Any],
        sqlite_conn: sqlite3.Connection,
        source: SourceFile,
        sha: str,
        mapping: TableMapping,
        state: ledger.UnitState,
        result: UnitResult,
    ) -> UnitResult:
        """A unit whose rows are all loaded from this very file: nothing to load; validated now when it was only
        loaded and this run validates."""
        result.rows_loaded, result.rows_rejected = state.rows_loaded, state.rows_rejected
        result.rules = dict(state.rules)
        self.observer.advance(source.agent_id, result.rows_loaded + result.rows_rejected)
        if state.status == "loaded" and self.options.validate:
            result.status = self.validate_loaded(
                conn, sqlite_conn, source, sha, mapping, state.rows_loaded, state.checksum, state.checked_rows
            )
        else:
            result.status = "skipped" if state.status == "validated" else state.status
        return result

    def _create_target(self, conn: psycopg.Connection[Any], mapping: TableMapping) -> None:
        """--create-tables: the target table from the source schema (one creator at a time, across processes)."""
        with self.create_lock, conn.transaction():
            ledger.lock_table_creation(conn)
            for statement in mapping.create_statements():
                conn.execute(statement)

    def _resume_point(self, state: ledger.UnitState | None, mapping: TableMapping) -> UnitProgress:
        """Where loading starts: after the ledger's last committed batch, or (``state`` None) from nothing.

        Content hashes are computed when this run validates; a resumed unit keeps the choice it started with (one
        that was loading without them, or with an earlier version's encoding, goes on without them and is
        validated by re-reading the source)."""
        if state is None:
            progress = UnitProgress(None, 0, 0, 0 if self.options.validate else None, {}, 0.0)
        else:
            progress = UnitProgress(
                state.last_rowid,
                state.rows_loaded,
                state.rows_rejected,
                state.checksum,
                dict(state.rules),
                state.seconds,
                state.checked_rows,
            )
        progress.rules.update(mapping.rules)
        return progress

    def _load_batches(
        self,
        conn: psycopg.Connection[Any],
        sqlite_conn: sqlite3.Connection,
        source: SourceFile,
        sha: str,
        mapping: TableMapping,
        rows: int,
        progress: UnitProgress,
        *,
        fresh: bool,
    ) -> tuple[int, str]:
        """Batches in rowid order, each one transaction: (the unit's reset, before the first batch of a fresh
        start,) the COPY of its rows, its rejects and kept raw values, and the ledger's new position. Returns how
        many rows took the native path, and when every batch of the unit was checked against the source in its
        own transaction, the unit's status recorded with the last one (validated or mismatch; else "")."""
        key = UnitKey(source.namespace, source.agent_id, mapping.source.name)
        hashed = progress.checksum is not None
        encoder = RowEncoder(mapping.target_columns, binary=self.options.copy_format == "binary")
        copy_sql = mapping.copy_sql(encoder.binary)
        if self.options.native and encoder.binary and columnar.supports(mapping):
            # the converter is generated (compiled) only when a row of the table goes through Python
            lazy = LazyConverter(source.agent_id, mapping, hashed)
            return self._load_native_batches(
                conn, sqlite_conn, source, sha, mapping, rows, progress, lazy, encoder, fresh=fresh
            )
        convert = row_converter(source.agent_id, mapping, canonical_json=hashed)
        reader = iterate_rows(sqlite_conn, mapping, source.path, progress.after)
        helper = HelperBatches(self, sqlite_conn, source, mapping, binary=encoder.binary, hashed=hashed)
        reset = fresh
        exhausted = False
        try:
            while not exhausted:
                pending = helper.take(progress.after)
                helper.plan_ahead(
                    progress.after, pending is not None, rows - progress.rows_loaded - progress.rows_rejected
                )
                started = time.monotonic()
                with conn.transaction():
                    if reset:
                        ledger.reset_unit(conn, key, mapping.target_identifier, mapping.target_label, sha)
                        reset = False
                    cursor = conn.cursor()
                    # a writer thread sends while this thread reads and converts the next rows
                    with cursor.copy(copy_sql, writer=QueuedLibpqWriter(cursor)) as copy:
                        if pending is None:
                            done = self._convert_into(
                                copy, encoder, reader, convert, key, mapping, progress.after, hashed
                            )
                        else:
                            done = self._send_helper_batch(copy, pending, source, mapping, progress.after)
                    if pending is not None:
                        # the next local batch reads on after the helper's batch
                        reader.close()
                        reader = iterate_rows(sqlite_conn, mapping, source.path, done.last)
                    exhausted = not done.full
                    self._commit_batch(conn, key, progress, done, started, exhausted=exhausted)
                self.observer.advance(source.agent_id, done.batch)
        finally:
            reader.close()
            helper.close()
        return 0, ""

    def _load_native_batches(
        self,
        conn: psycopg.Connection[Any],
        sqlite_conn: sqlite3.Connection,
        source: SourceFile,
        sha: str,
        mapping: TableMapping,
        rows: int,
        progress: UnitProgress,
        convert: Callable[[tuple[Any, ...]], Any],
        encoder: RowEncoder,
        *,
        fresh: bool,
    ) -> tuple[int, str]:
        """The batches of a table that takes the native path (:mod:`infra.migrate.columnar`): SQLite reads each
        batch into Arrow and tells its clean rows, whose binary COPY tuples Arrow builds; the other rows go through
        the Python converters into the same COPY. Each batch is one transaction with its ledger row, as on the
        Python path. When hashing, the clean rows' share of the checksum is computed by PostgreSQL from the rows as
        stored, in the batch's transaction (the Python rows' share from the tuples sent, as always); when
        PostgreSQL refuses a native value (a JSON number beyond numeric's range), the batch is done again through
        Python alone."""
        key = UnitKey(source.namespace, source.agent_id, mapping.source.name)
        hashed = progress.checksum is not None
        table = columnar.NativeTable.of(mapping)
        copy_sql = mapping.copy_sql(True)
        most = max(1, self.options.batch_rows)
        # batches are sized in bytes too: the first as if the whole file were this table's rows (so a small table
        # is read in one batch, and a table of large values starts small), each next one is scaled from the last
        # one's size so that it holds about columnar.BATCH_BYTES (never more than --batch-rows rows)
        limit = first_native_limit(source, rows, most)
        native_rows = 0
        validated = ""
        checked = [0]  # batches checked so far (counted by finish, in whichever thread runs it)
        reader = columnar.NativeReader(source.path)
        # SQLite reads and Arrow encodes the next batch in a thread while PostgreSQL takes this one: both release
        # the GIL, so on two cores the reading and encoding overlap the loading and its check
        prefetch = _prefetch_pool()
        exhausted = False

        def prepare(after: int | None, limit: int) -> tuple[int, columnar.SplitBatch, columnar.EncodedBatch, list[int]]:
            read = reader.read(table, after, limit)
            batch = columnar.split(table, read)
            try:
                encoded = columnar.encode(table, source.agent_id, batch.clean, checked=hashed)
                others = batch.others
            except columnar.NotNative:  # text that is not valid UTF-8: the whole batch through Python
                encoded = columnar.EncodedBatch(b"", 0, {})
                others = columnar.rowids(batch)
            return read.nbytes, batch, encoded, others

        def load(
            c: psycopg.Connection[Any],
            after: int | None,
            batch: columnar.SplitBatch,
            encoded: columnar.EncodedBatch,
            others: list[int],
            first: bool,
        ) -> tuple[BatchPayload, columnar.EncodedBatch, list[int]]:
            """A batch's first half, on connection ``c``: open its transaction, (reset a fresh unit,) COPY. When
            PostgreSQL refuses a native value, the transaction rolls back and the batch is done again through Python
            alone, in a new one (no savepoint: two statements less per batch)."""

            def begin() -> None:
                c.execute("BEGIN")
                if first and fresh:
                    ledger.reset_unit(c, key, mapping.target_identifier, mapping.target_label, sha)

            begin()
            arguments = (copy_sql, encoder, encoded, others, sqlite_conn, source, mapping, convert, key, after, hashed)
            try:
                done = self._copy_native(c, *arguments)
            except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded):
                c.execute("ROLLBACK")
                begin()
                encoded = columnar.EncodedBatch(b"", 0, {})
                others = columnar.rowids(batch)
                done = self._copy_native(c, copy_sql, encoder, encoded, others, *arguments[4:])
            done.last, done.batch = batch.last, batch.rows
            for rule, count in encoded.rules.items():
                done.rules[rule] = done.rules.get(rule, 0) + count
            return done, encoded, others

        def finish(
            c: psycopg.Connection[Any],
            after: int | None,
            batch: columnar.SplitBatch,
            encoded: columnar.EncodedBatch,
            others: list[int],
            done: BatchPayload,
            last: bool,
            started: float,
        ) -> str:
            """A batch's second half, on the connection that loaded it: check it against the source, write its
            ledger row, commit. Returns the unit's status when this batch recorded it (its last, fresh, checked)."""
            target_rows = None
            if hashed:
                # a fresh unit's last batch also counts the agent's rows in the target (every batch of it is
                # checked here, so that count is all that is left to compare); a table of one batch counts the
                # rows outside the batch's range only, as the check reads the rest
                count = "" if not (fresh and last) else "outside" if after is None else "table"
                check_sql = _check_sql(mapping, count)
                done.checksum, target_rows = self._check_native_batch(
                    c, check_sql, source, mapping, after, batch.last, encoded, done, others
                )
                done.checked = True
                checked[0] += 1
            counted = target_rows
            status = self._commit_batch(
                c,
                key,
                progress,
                done,
                started,
                exhausted=last,
                validation=None if counted is None else lambda p: self.checked_validation(p, checked[0], counted),
            )
            c.execute("COMMIT")
            return status if counted is not None else ""

        # With validation, a batch's check runs on its connection while the next batch's COPY goes through a
        # second connection (:func:`_second_connection`): PostgreSQL checks one batch and loads the next at once.
        # The batches still commit strictly in order: a batch's ledger row is written only after the one before
        # has committed, and when a batch fails, the next one (not yet committed) is rolled back with it.
        connections = [conn]
        finishing: tuple[Future[str], BatchPayload] | None = None
        after = progress.after
        first = True
        # the first batch is read here: this thread has nothing else to do meanwhile (a table of one batch, most
        # agents' tables, never hands work to the read-ahead thread and back)
        upcoming = _completed(prepare, after, limit)
        try:
            while not exhausted:
                started = time.monotonic()
                size, batch, encoded, others = upcoming.result()
                exhausted = batch.rows < limit
                limit = max(1, min(most, limit * columnar.BATCH_BYTES // max(1, size)))
                if not exhausted:
                    upcoming = prefetch.submit(prepare, batch.last, limit)
                    if hashed and len(connections) == 1:
                        second = _second_connection(self.url)
                        if second is not None:
                            connections.append(second)
                c = connections[0]
                done, encoded, others = load(c, after, batch, encoded, others, first)
                done.full = not exhausted
                first = False
                native_rows += encoded.rows
                if finishing is not None:  # the batch before, checked meanwhile: it commits first
                    validated = finishing[0].result() or validated
                    self.observer.advance(source.agent_id, finishing[1].batch)
                    finishing = None
                if len(connections) > 1 and not exhausted:
                    future = _check_pool().submit(finish, c, after, batch, encoded, others, done, exhausted, started)
                    finishing = (future, done)
                    connections.reverse()
                else:
                    validated = finish(c, after, batch, encoded, others, done, exhausted, started) or validated
                    self.observer.advance(source.agent_id, done.batch)
                after = batch.last
        except BaseException:
            if finishing is not None:
                wait([finishing[0]])
            for c in connections:
                if not c.closed and not c.broken and c.info.transaction_status != pq.TransactionStatus.IDLE:
                    c.execute("ROLLBACK")
            raise
        finally:
            if not upcoming.cancel():
                wait([upcoming])  # the reader is closed next: its last read must be over
            reader.close()
            for c in connections:
                if c is not conn:
                    c.close()
        # a resumed unit holds batches this run did not check: validated by validate_loaded (re-reading the source)
        return native_rows, validated

    def _check_native_batch(
        self,
        conn: psycopg.Connection[Any],
        check_sql: sql.Composed,
        source: SourceFile,
        mapping: TableMapping,
        after: int | None,
        last: int | None,
        encoded: columnar.EncodedBatch,
        done: BatchPayload,
        others: list[int],
    ) -> tuple[int, int | None]:
        """Inside a native batch's transaction, after its COPY: compare the rows PostgreSQL stored with the source,
        every row and every column, in one pass of PostgreSQL over the batch (:func:`encode.batch_check_sql`). The
        native rows: the sha256 of their stored rows' record_send bytes in rowid order against that of the same
        bytes Arrow built from the SQLite batch (one C call), and their jsonb values against the sent texts parsed
        again; the rows that went through Python: the sum of their stored rows' content hashes against the one
        Python computed from the tuples it sent. Returns the batch's checksum contribution (the Python rows'
        content hashes: the native rows' count as checked rows in the ledger instead) and, when ``check_sql``
        counts them, the agent's rows in the target; a difference rolls the batch back and fails the unit, so
        nothing unchecked is ever committed."""
        parameters = {
            "others": others,
            "agent": source.agent_id,
            "after": after_bound(after),
            "last": last,
            **encoded.check_parameters(sum(c.type_name == "jsonb" for c in mapping.target_columns)),
        }
        found = conn.execute(check_sql, parameters).fetchone()
        assert found is not None
        stored_digest, documents_equal, others_sum = found[:3]
        sent_digest = batch_digest(encoded.checked) if encoded.rows else None
        stored = None if stored_digest is None else bytes(stored_digest)
        if stored != sent_digest or not documents_equal or int(others_sum) != done.checksum:
            where = f"after rowid {after}" if after is not None else "from its first row"
            raise BatchMismatch(
                f"{source.path}: table {mapping.source.name}, batch {where} up to rowid {last}: the rows PostgreSQL "
                "stored differ from the rows read from the source; the batch was rolled back. Run `ws migrate run` "
                "again; if it fails the same way, report it with this file"
            )
        return int(others_sum), (int(found[3]) if len(found) > 3 else None)

    def _copy_native(
        self,
        conn: psycopg.Connection[Any],
        copy_sql: sql.Composed,
        encoder: RowEncoder,
        encoded: columnar.EncodedBatch,
        others: list[int],
        sqlite_conn: sqlite3.Connection,
        source: SourceFile,
        mapping: TableMapping,
        convert: Callable[[tuple[Any, ...]], Any],
        key: tuple[str, str, str],
        after: int | None,
        hashed: bool,
    ) -> BatchPayload:
        """One binary COPY: the clean rows' tuples built by Arrow, then the other rows converted by Python (sent in
        FLUSH_BYTES pieces, so large values never pile up)."""
        cursor = conn.cursor()
        with cursor.copy(copy_sql) as copy:
            copy.write(BINARY_SIGNATURE)
            if encoded.rows:
                copy.write(encoded.data)
            out = bytearray()
            append = encoder.writer(out, hashed)

            def write(values: list[Any]) -> int:
                checksum = append(values)
                if len(out) >= FLUSH_BYTES:
                    copy.write(out)
                    out.clear()
                return checksum

            rows = columnar.rows_by_rowid(sqlite_conn, mapping, source.path, others)
            done = convert_rows(rows, convert, key, mapping, max(1, len(others)), write, after)
            out += BINARY_TRAILER
            copy.write(out)
        return done

    @staticmethod
    def _send_helper_batch(
        copy: psycopg.Copy, pending: Future[BatchPayload], source: SourceFile, mapping: TableMapping, after: int | None
    ) -> BatchPayload:
        """Send a batch the helper converted (ready binary COPY data, or the rows' values for text COPY)."""
        done = pending.result()
        if done.first_after != after:
            raise SourceError(
                f"{source.path}: table {mapping.source.name} changed while it was being read; "
                "stop the writer, then run `ws migrate run` again"
            )
        if done.data:
            copy.write(BINARY_SIGNATURE + done.data + BINARY_TRAILER)
        for values in done.rows:
            copy.write_row(values)
        return done

    @staticmethod
    def _commit_batch(
        conn: psycopg.Connection[Any],
        key: UnitKey,
        progress: UnitProgress,
        done: BatchPayload,
        started: float,
        *,
        exhausted: bool,
        validation: Callable[[UnitProgress], tuple[bool, dict[str, Any]]] | None = None,
    ) -> str:
        """Inside the batch's transaction, after its COPY: its rejects and kept raw values, then the ledger row's
        new position (last rowid, row counts, running checksum, rule counts) and, with ``validation`` (given the
        new position), the unit's outcome in the same statement. Returns the unit's new status."""
        ledger.write_rejects(conn, done.rejects)
        ledger.write_raw_values(conn, done.raws)
        for rule, count in done.rules.items():
            progress.rules[rule] = progress.rules.get(rule, 0) + count
        progress.rows_rejected += len(done.rejects)
        progress.rows_loaded += done.batch - len(done.rejects)
        if done.checked:
            progress.checked_rows += done.batch - len(done.rejects)
        if progress.checksum is not None:
            progress.checksum += done.checksum
        if done.last is not None:
            progress.after = done.last
        progress.seconds += time.monotonic() - started
        outcome = validation(progress) if validation is not None else None
        return ledger.record_batch(conn, key, progress, exhausted=exhausted, validation=outcome)

    def _convert_into(
        self,
        copy: psycopg.Copy,
        encoder: RowEncoder,
        source_rows: Iterator[tuple[Any, ...]],
        convert: Callable[[tuple[Any, ...]], Any],
        key: tuple[str, str, str],
        mapping: TableMapping,
        after: int | None,
        hashed: bool,
    ) -> BatchPayload:
        """Convert one batch straight into the COPY: binary tuples go to its writer thread in FLUSH_BYTES pieces
        while the next rows convert (block mode: this side writes the signature and the trailer)."""
        limit = max(1, self.options.batch_rows)
        if not encoder.binary:

            def write_text(values: list[Any]) -> int:
                checksum = encoder.row_hash(values) if hashed else 0
                copy.write_row(values)
                return checksum

            return convert_rows(source_rows, convert, key, mapping, limit, write_text, after)
        out = bytearray(BINARY_SIGNATURE)
        append = encoder.writer(out, hashed)

        def write(values: list[Any]) -> int:
            checksum = append(values)
            if len(out) >= FLUSH_BYTES:
                copy.write(bytes(out))  # a copy: the writer thread sends it later
                out.clear()
            return checksum

        done = convert_rows(source_rows, convert, key, mapping, limit, write, after)
        out += BINARY_TRAILER
        copy.write(bytes(out))
        return done

    def _helper_wanted(self, remaining: int) -> bool:
        """A helper process for the next batches: only for a table with enough rows left to pay for it, and only
        when a core is free (fewer units running than cores) - checked again before every pair of batches, so
        the last unit still running picks it up."""
        threshold = self.options.helper_min_rows if self.options.helper_min_rows >= 0 else HELPER_MIN_ROWS
        if threshold == 0 or remaining < threshold:
            return False
        running = _RUNNING.value if _RUNNING is not None else 1
        return running < CORES

    @staticmethod
    def checked_validation(progress: UnitProgress, batches: int, target_rows: int) -> tuple[bool, dict[str, Any]]:
        """The outcome of a unit whose every batch this run compared with the source inside the batch's own
        transaction (the stored rows against the source's, :meth:`_check_native_batch`): validated when the table
        holds exactly the rows the ledger counts for the agent (nothing lost, nothing left from elsewhere; counted
        by the last batch's check, with whose ledger row this is recorded)."""
        detail = {
            "method": "batch-check",
            "version": BATCH_CHECK_VERSION,
            "batches": batches,
            "source_rows": progress.rows_loaded,
            "checked_rows": progress.checked_rows,
            "target_rows": target_rows,
        }
        return target_rows == progress.rows_loaded, detail

    def validate_loaded(
        self,
        conn: psycopg.Connection[Any],
        sqlite_conn: sqlite3.Connection,
        source: SourceFile,
        sha: str,
        mapping: TableMapping,
        rows: int,
        checksum: int | None,
        checked_rows: int = 0,
    ) -> str:
        """Validate a loaded unit from what was recorded while loading it: by PostgreSQL's count and checksum of the
        agent's target rows against the recorded ones when every row's content hash is in the ledger (no batch was
        checked in its transaction: ``checked_rows`` 0). A unit loaded without content hashes (``checksum`` None),
        or with batches an earlier run checked in their transactions (their rows' hashes are not kept, and a row
        changed in the target since would go unseen by a count), is validated by re-reading the source, as
        `ws migrate validate` does. (A fresh unit whose every batch this run checked records its outcome with its
        last batch instead: :meth:`checked_validation`.)"""
        key = UnitKey(source.namespace, source.agent_id, mapping.source.name)
        if checksum is None or checked_rows:
            return "validated" if validate_table(conn, sqlite_conn, source, sha, mapping).ok else "mismatch"
        target_rows, target_sum = mapping.target_checksum(conn, source.agent_id, rows)
        detail = {
            "method": "load-checksum",
            "source_rows": rows,
            "target_rows": target_rows,
            "source_checksum": str(checksum),
            "target_checksum": str(target_sum),
        }
        return ledger.record_load_validation(conn, key, target_rows == rows and target_sum == checksum, detail)

    # -- one unit, in a worker (or in this process when jobs == 1) ---------------------------------------------

    def run_unit(
        self, conn: psycopg.Connection[Any], source: SourceFile, sha: str, mapping: TableMapping, rows: int
    ) -> UnitResult:
        """Load one table of one file under an advisory lock (two runs never load the same unit at once: the second
        waits for the first, then finds the unit done)."""
        key = UnitKey(source.namespace, source.agent_id, mapping.source.name)
        self.observer.agent_started(source.agent_id, -1)  # -1: "started"; the parent knows the file's total
        # another run loading this unit right now: wait for it, then go on from what it recorded (usually nothing
        # is left to do). Giving up instead once left agents "running" or "failed" for good: two runs that each
        # loaded one of an agent's tables both saw the other's as taken, and neither recorded the agent's outcome.
        # No deadlock: a worker holds at most one unit lock, and none while it waits.
        ledger.lock_unit(conn, key)
        try:
            sqlite_conn = open_readonly(source.path, busy_timeout=self.options.busy_timeout)
            try:
                sqlite_conn.execute("BEGIN")  # one read snapshot for the whole table
                return self.load_unit(conn, sqlite_conn, source, sha, mapping, rows)
            finally:
                sqlite_conn.close()
        except (SourceError, sqlite3.Error, BatchMismatch) as exc:
            error = describe(source.path, exc) if isinstance(exc, sqlite3.Error) else str(exc)
        except psycopg.Error as exc:
            error = f"PostgreSQL refused the batch: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
        except BrokenProcessPool as exc:
            error = f"the conversion helper process of this table died ({exc}); run `ws migrate run` again to resume"
        finally:
            if not conn.closed:
                ledger.unlock_unit(conn, key)
        if not conn.closed and not conn.broken:
            ledger.fail_unit(conn, key, mapping.target_name, sha, error)
        return UnitResult(mapping.source.name, mapping.target_label, "failed", rows=rows, error=error)

    # -- everything ----------------------------------------------------------------------------------------

    def plan_one(self, conn: psycopg.Connection[Any], source: SourceFile) -> FilePlan:
        """Integrity check, schema, targets, row counts and sha256 of one file (errors go into the plan)."""
        try:
            sqlite_conn = open_readonly(source.path, busy_timeout=self.options.busy_timeout)
            try:
                sqlite_conn.execute("BEGIN")
                plan = plan_file(
                    conn,
                    source,
                    sqlite_conn,
                    create_tables=self.options.create_tables,
                    integrity_check=self.options.integrity_check,
                    targets=self.targets,
                )
            finally:
                sqlite_conn.close()
            plan.sha256 = file_digest(source.path)
            return plan
        except (SourceError, sqlite3.Error, OSError) as exc:
            error = str(exc) if isinstance(exc, SourceError) else describe(source.path, exc)
            return FilePlan(source, error=error)

    def plan(self, sources: list[SourceFile]) -> list[FilePlan]:
        with connect(self.url, autocommit=True) as conn:
            return [self.plan_one(conn, source) for source in sources]

    def _finish_agent(self, conn: psycopg.Connection[Any], plan: FilePlan, units: list[UnitResult]) -> AgentResult:
        source = plan.source
        result = AgentResult(source.repo, source.agent_id, str(source.path), source.namespace, "loaded")
        result.units = sorted(units, key=lambda u: u.source_table)
        if plan.schema is not None:
            result.skipped_tables = dict(plan.schema.skipped)
        statuses = {u.status for u in result.units}
        if plan.error:
            result.status, result.error = "failed", plan.error
        elif "failed" in statuses:
            result.status = "failed"
            result.error = "; ".join(f"{u.source_table}: {u.error}" for u in result.units if u.error)
        elif "mismatch" in statuses:
            result.status = "mismatch"
            result.error = "checksum mismatch in " + ", ".join(
                u.source_table for u in result.units if u.status == "mismatch"
            )
        elif statuses <= {"validated", "skipped"}:
            result.status = "validated"
        ledger.record_files(conn, [self._file_record(source, result.status, result.error, plan.sha256 or None)])
        self.observer.agent_finished(source.agent_id, result.status, result.error)
        return result

    def run(self, sources: list[SourceFile], *, dry_run: bool = False) -> RunReport:
        started = time.monotonic()
        if not dry_run:
            with connect(self.url, autocommit=True) as conn:
                ledger.ensure_ledger(conn)
        if dry_run:
            plans = self.plan(sources)
            with connect(self.url, autocommit=True) as conn:
                states = ledger.all_unit_states(conn) if ledger.ledger_exists(conn) else {}
            agents = [dry_result(p, states) for p in plans]
            return RunReport(agents, time.monotonic() - started, self.options.copy_format, True)
        workers = min(max(1, self.options.jobs), 2 * len(sources))
        executor: ProcessPoolExecutor | None = None
        queue: Any = None
        if workers > 1:
            # fork the workers first, before this process opens connections or starts threads they would inherit
            context = multiprocessing.get_context("fork")
            queue = context.Queue()
            running = context.Value("i", 0)
            executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.url, self.options, queue, running),
            )
            executor.submit(_ready).result()
            # files are planned (integrity check, counts, sha256) in the workers too
            try:
                plans = list(executor.map(_worker_plan, sources, chunksize=max(1, len(sources) // (4 * workers))))
            except BaseException:
                executor.shutdown(wait=False, cancel_futures=True)
                raise
        else:
            plans = self.plan(sources)
        tasks = [(index, mapping) for index, plan in enumerate(plans) if not plan.error for mapping in plan.mappings]
        # largest tables first, so parallel workers finish together
        tasks.sort(key=lambda t: -plans[t[0]].counts.get(t[1].source.name, 0))
        units: dict[int, list[UnitResult]] = {i: [] for i in range(len(plans))}
        results: dict[int, AgentResult] = {}
        self.observer.start(len(plans), sum(p.rows for p in plans if not p.error))
        try:
            with connect(self.url, autocommit=True) as conn:
                asynchronous_commits(conn)
                for index, plan in enumerate(plans):
                    if plan.error:
                        results[index] = self._finish_agent(conn, plan, [])
                marked = [self._file_record(p.source, "running", "", p.sha256) for p in plans if not p.error]
                ledger.record_files(conn, marked)
                remaining = {i: len(p.mappings) for i, p in enumerate(plans) if not p.error}
                for index, count in remaining.items():
                    if count == 0:
                        results[index] = self._finish_agent(conn, plans[index], [])

                def finished(index: int, unit: UnitResult) -> None:
                    units[index].append(unit)
                    remaining[index] -= 1
                    if remaining[index] == 0:
                        results[index] = self._finish_agent(conn, plans[index], units[index])

                totals = {p.source.agent_id: p.rows for p in plans}
                if executor is None:
                    observer, self.observer = self.observer, _FirstStart(self.observer, totals)
                    try:
                        for index, mapping in tasks:
                            plan = plans[index]
                            rows = plan.counts.get(mapping.source.name, 0)
                            finished(index, self.run_unit(conn, plan.source, plan.sha256, mapping, rows))
                    finally:
                        self.observer = observer
                else:
                    self._run_parallel(executor, queue, plans, tasks, finished, totals)
        except KeyboardInterrupt:
            # Ctrl-C: stop the workers now; their open batches roll back and the next run resumes after the last
            # committed one, exactly as after kill -9
            if executor is not None:
                _kill_workers(executor)
            raise
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
            self.observer.finish()
        ordered = [results[i] for i in range(len(plans)) if i in results]
        return RunReport(ordered, time.monotonic() - started, self.options.copy_format)

    def _run_parallel(
        self,
        executor: ProcessPoolExecutor,
        queue: Any,
        plans: list[FilePlan],
        tasks: list[tuple[int, TableMapping]],
        finished: Callable[[int, UnitResult], None],
        totals: dict[str, int],
    ) -> None:
        """Units over the worker processes, each with one database connection (Python's GIL would serialise the
        per-row conversion in threads). Workers report rows through a queue that feeds the observer."""
        drain = threading.Thread(target=_drain, args=(queue, _FirstStart(self.observer, totals)), daemon=True)
        drain.start()
        try:
            futures = {}
            for index, mapping in tasks:
                plan = plans[index]
                rows = plan.counts.get(mapping.source.name, 0)
                future = executor.submit(_worker_unit, plan.source, plan.sha256, mapping, rows)
                futures[future] = (index, mapping, rows)
            for future in as_completed(futures):
                index, mapping, rows = futures[future]
                try:
                    unit = future.result()
                except Exception as exc:  # a worker that died or could not connect: that unit fails, not the run
                    unit = UnitResult(
                        mapping.source.name, mapping.target_label, "failed", rows=rows, error=f"worker failed: {exc}"
                    )
                finished(index, unit)
        finally:
            queue.put(None)
            drain.join(timeout=5)


# ------------------------------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}
_RUNNING: Any = None  # units running right now across the workers (a shared counter), None in a serial run


class QueueObserver:
    """The observer inside a worker process: forwards progress to the parent through a queue."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def start(self, agents: int, rows: int) -> None:
        pass

    def agent_started(self, agent: str, rows: int) -> None:
        self.queue.put(("start", agent, rows))

    def advance(self, agent: str, rows: int) -> None:
        self.queue.put(("advance", agent, rows))

    def agent_finished(self, agent: str, status: str, detail: str) -> None:
        pass

    def finish(self) -> None:
        pass


class _FirstStart:
    """Passes progress on, announcing each agent once (with its file's total rows) however many tables it has."""

    def __init__(self, observer: Observer, totals: dict[str, int]) -> None:
        self.observer = observer
        self.totals = totals
        self.started: set[str] = set()

    def start(self, agents: int, rows: int) -> None:
        self.observer.start(agents, rows)

    def agent_started(self, agent: str, rows: int) -> None:
        if agent not in self.started:
            self.started.add(agent)
            self.observer.agent_started(agent, self.totals.get(agent, 0))

    def advance(self, agent: str, rows: int) -> None:
        self.observer.advance(agent, rows)

    def agent_finished(self, agent: str, status: str, detail: str) -> None:
        self.observer.agent_finished(agent, status, detail)

    def finish(self) -> None:
        self.observer.finish()


def _drain(queue: Any, observer: Observer) -> None:
    while True:
        message = queue.get()
        if message is None:
            return
        kind, agent, rows = message
        if kind == "start":
            observer.agent_started(agent, rows)
        else:
            observer.advance(agent, rows)


def _die_with_parent() -> None:
    """A worker must not outlive its parent (kill -9 of `ws migrate run` stops everything at once)."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _ready() -> bool:
    return True


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    processes = getattr(executor, "_processes", None) or {}  # the pool keeps its processes there (CPython)
    for process in list(processes.values()):
        process.kill()


def _init_worker(url: str, options: RunOptions, queue: Any, running: Any) -> None:
    global _RUNNING
    _RUNNING = running
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops the workers)
    _die_with_parent()
    _WORKER["url"] = url
    _WORKER["migrator"] = Migrator(url, options, QueueObserver(queue))
    # the objects inherited from the parent (modules, the plan) never become garbage: keep the cyclic collector
    # from walking them again and again while batches allocate (it took about 5% of a worker's CPU)
    gc.freeze()


def _worker_connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = _WORKER.get("conn")
    if conn is None or conn.closed or conn.broken:
        conn = _WORKER["conn"] = psycopg.connect(_WORKER["url"], autocommit=True)
        asynchronous_commits(conn)
    return conn


def asynchronous_commits(conn: psycopg.Connection[Any]) -> None:
    """Batch commits on this connection do not wait for their WAL flush. Safe for resume: a batch's rows and its
    ledger row are one transaction, so a PostgreSQL crash can only take back whole batches together with the
    ledger's record of them (the next run loads them again). Anything that acts on a loaded state (cleanup
    archiving files) commits synchronously, which flushes every earlier commit first."""
    conn.execute("SET synchronous_commit = off")


def _worker_plan(source: SourceFile) -> FilePlan:
    migrator: Migrator = _WORKER["migrator"]
    return migrator.plan_one(_worker_connection(), source)


def _worker_unit(source: SourceFile, sha: str, mapping: TableMapping, rows: int) -> UnitResult:
    migrator: Migrator = _WORKER["migrator"]
    with _RUNNING.get_lock():
        _RUNNING.value += 1
    try:
        return migrator.run_unit(_worker_connection(), source, sha, mapping, rows)
    finally:
        with _RUNNING.get_lock():
            _RUNNING.value -= 1


def dry_result(plan: FilePlan, states: dict[UnitKey, tuple[str, str, int | None]]) -> AgentResult:
    """What `run` would do with one file: load, create+load, resume after a rowid, reload a changed file, skip."""
    source = plan.source
    result = AgentResult(source.repo, source.agent_id, str(source.path), source.namespace, "planned")
    if plan.error:
        result.status, result.error = "failed", plan.error
        return result
    for mapping in plan.mappings:
        state = states.get(UnitKey(source.namespace, source.agent_id, mapping.source.name))
        action = "create+load" if mapping.create else "load"
        resumed: int | None = None
        if mapping.problems:
            action = "failed"
        elif state is not None and state[1] != plan.sha256:
            action = "reload (file changed)"
        elif state is not None and state[0] in ("loaded", "validated", "mismatch"):
            action = f"skip ({state[0]})"
        elif state is not None and state[2] is not None:
            action, resumed = f"resume after rowid {state[2]}", state[2]
        unit = UnitResult(
            mapping.source.name,
            mapping.target_label,
            action,
            rows=plan.counts.get(mapping.source.name, 0),
            resumed_from=resumed,
            error="; ".join(mapping.problems),
        )
        result.units.append(unit)
    if any(u.status == "failed" for u in result.units):
        result.status = "failed"
    if plan.schema:
        result.skipped_tables = dict(plan.schema.skipped)
    return result


@database_errors
def run_migration(
    url: str, sources: list[SourceFile], options: RunOptions, observer: Observer | None = None, *, dry_run: bool = False
) -> RunReport:
    return Migrator(url, options, observer).run(sources, dry_run=dry_run)
