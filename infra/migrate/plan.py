"""How one source table maps onto its target table, and the per-row conversion that check, run and validate share."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from infra.migrate.convert import Rejected, TargetColumn, converter_for
from infra.migrate.encode import row_hash_sql
from infra.migrate.source import (
    LOWEST_ROWID,
    SourceError,
    SourceFile,
    SourceSchema,
    SourceTable,
    after_bound,
    count_rows,
    describe,
    holds_lowest_rowid,
    integrity,
    quote_sqlite,
    read_schema,
)
from infra.migrate.target import (
    KEY_COLUMNS,
    TargetTable,
    create_table_sql,
    introspect,
    pg_identifier,
    target_type_for,
    unsupported,
)

PG_TYPNAME = {
    "bigint": "int8",
    "text": "text",
    "jsonb": "jsonb",
    "timestamptz": "timestamptz",
    "double precision": "float8",
    "boolean": "bool",
    "bytea": "bytea",
    "numeric": "numeric",
}


@dataclass
class TableMapping:
    source: SourceTable
    namespace: str
    target_name: str
    target: TargetTable | None  # None: missing (created by --create-tables when `create` is set)
    create: bool = False
    source_columns: list[str] = field(default_factory=list)  # selected after rowid, in order
    target_columns: list[TargetColumn] = field(default_factory=list)  # same order
    problems: list[str] = field(default_factory=list)
    rules: dict[str, int] = field(default_factory=dict)  # table-level rules (rowid alias)
    declared_name: str = ""  # the target name as declared (the source table's, or sqlite_migration.tables')

    @property
    def target_label_as_declared(self) -> str:
        return f"{self.namespace}.{self.declared_name or self.target_name}"

    @property
    def target_label(self) -> str:
        return f"{self.namespace}.{self.target_name}"

    @property
    def target_identifier(self) -> sql.Identifier:
        return sql.Identifier(self.namespace, self.target_name)

    def _keyed(self, columns: list[str]) -> tuple[str, str]:
        """(FROM clause, key column) that number the source rows: the rowid, or for a WITHOUT ROWID table the
        row's position in primary-key order (rule without-rowid-ordinal), computed in SQLite."""
        table = quote_sqlite(self.source.name)
        if not self.source.without_rowid:
            return table, "rowid"
        order = ", ".join(quote_sqlite(c) for c in self.source.primary_key)
        selected = "".join(f", {c}" for c in columns)
        numbered = f"(SELECT row_number() OVER (ORDER BY {order}) AS {ORDINAL}{selected} FROM {table})"  # noqa: S608
        return numbered, ORDINAL

    def select_sql(self) -> str:
        """Source rows after a key (``?``) in key order: the key first, then the mapped columns."""
        quoted = [quote_sqlite(c) for c in self.source_columns]
        origin, key = self._keyed(quoted)
        columns = ", ".join([key, *quoted])
        return f"SELECT {columns} FROM {origin} WHERE {key} > ? ORDER BY {key}"  # noqa: S608

    def batch_end_sql(self) -> str:
        """The key of the ``?``-th row (0-based, the OFFSET) after a key (``?``): where a batch starting there ends."""
        origin, key = self._keyed([])
        return f"SELECT {key} FROM {origin} WHERE {key} > ? ORDER BY {key} LIMIT 1 OFFSET ?"  # noqa: S608

    def copy_sql(self, binary: bool) -> sql.Composed:
        names = [sql.Identifier(n) for n in KEY_COLUMNS] + [sql.Identifier(c.name) for c in self.target_columns]
        return sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            self.target_identifier, sql.SQL(", ").join(names), sql.SQL(" (FORMAT BINARY)" if binary else "")
        )

    def create_statements(self) -> list[sql.Composed]:
        return create_table_sql(self.namespace, self.target_name, self.source)

    def checksum_sql(self) -> sql.Composed:
        """count and order-independent checksum of one agent's rows in the target, computed by PostgreSQL."""
        return sql.SQL("SELECT count(*), coalesce(sum({h}), 0) FROM {t} WHERE agent_id = %s").format(
            h=row_hash_sql(self.target_columns), t=self.target_identifier
        )

    def target_checksum(self, conn: psycopg.Connection[Any], agent_id: str, rows: int) -> tuple[int, int]:
        """PostgreSQL's (count, checksum) of one agent's rows (:meth:`checksum_sql`). For a table of
        ``PARALLEL_CHECKSUM_ROWS`` rows or more, PostgreSQL may spread the hashing over parallel workers (the
        planner's statistics are stale right after COPY, so it would not on its own): measured on 200,000 rows
        here, 0.82 s -> 0.46 s; the same rows and the same sum, only computed by more processes. Smaller tables
        keep the serial plan (starting workers costs more than it saves)."""
        with conn.transaction():
            if rows >= PARALLEL_CHECKSUM_ROWS:
                for setting in PARALLEL_SETTINGS:
                    conn.execute("SELECT set_config(%s, '0', true)", (setting,))  # this transaction only
            found = conn.execute(self.checksum_sql(), (agent_id,)).fetchone()
        assert found is not None
        return int(found[0]), int(found[1])

    def stored_checksum(
        self, conn: psycopg.Connection[Any], agent_id: str, after: int | None, last: int | None, others: list[int]
    ) -> int:
        """PostgreSQL's checksum (:meth:`checksum_sql`'s definition) of the agent's stored rows after ``after`` up to
        ``last``, leaving out the rowids ``others`` (rows hashed elsewhere)."""
        query = sql.SQL(
            "SELECT coalesce(sum({h}), 0) FROM {t} WHERE agent_id = %s AND source_rowid > %s AND source_rowid <= %s "
            "AND NOT (source_rowid = ANY(%s))"
        ).format(h=row_hash_sql(self.target_columns), t=self.target_identifier)
        found = conn.execute(query, (agent_id, after_bound(after), last, others)).fetchone()
        assert found is not None
        return int(found[0])

    def row_hashes_sql(self) -> sql.Composed:
        return sql.SQL("SELECT source_rowid, {h} FROM {t} WHERE agent_id = %s").format(
            h=row_hash_sql(self.target_columns), t=self.target_identifier
        )


ORDINAL = '"ws_migrate_ordinal"'  # the key column of a WITHOUT ROWID table's numbered rows
PARALLEL_CHECKSUM_ROWS = 50_000
PARALLEL_SETTINGS = (
    "parallel_setup_cost",
    "parallel_tuple_cost",
    "min_parallel_table_scan_size",
    "min_parallel_index_scan_size",
)


def synthetic_target(namespace: str, name: str, source: SourceTable) -> TargetTable:
    """The table --create-tables would create, as if introspected."""
    columns = {
        "agent_id": TargetColumn("agent_id", "text", True),
        "source_rowid": TargetColumn("source_rowid", "int8", True),
    }
    for column in source.columns:
        if column.name == source.rowid_alias or column.name in KEY_COLUMNS:
            continue
        stored = pg_identifier(column.name)
        columns[stored] = TargetColumn(stored, PG_TYPNAME[target_type_for(column)])
    return TargetTable(namespace, name, columns)


def build_mapping(
    source_file: SourceFile, table: SourceTable, target: TargetTable | None, *, create_tables: bool
) -> TableMapping:
    declared = source_file.target_table(table.name)
    mapping = TableMapping(table, source_file.namespace, pg_identifier(declared), target, declared_name=declared)
    if table.without_rowid:
        mapping.rules["without-rowid-ordinal"] = 1
    if target is None:
        if not create_tables:
            mapping.problems.append(
                f"target table {mapping.target_label} does not exist; apply {source_file.repo}'s migrations "
                "or pass --create-tables to create it from the source schema"
            )
            return mapping
        mapping.create = True
        target = synthetic_target(source_file.namespace, mapping.target_name, table)
    missing_keys = [k for k in KEY_COLUMNS if k not in target.columns]
    if missing_keys:
        mapping.problems.append(
            f"target table {mapping.target_label} lacks column(s) {', '.join(missing_keys)}; every target row "
            "carries agent_id text and source_rowid bigint (its primary key) so that re-runs never duplicate"
        )
    bad = unsupported(target.columns)
    mapping.problems += colliding_columns(table)
    for column in table.columns:
        stored = pg_identifier(column.name)
        if stored in target.columns and target.columns[stored].generated:
            if not column.generated:
                mapping.problems.append(
                    f"target column {mapping.target_label}.{stored} is generated by PostgreSQL but the source's "
                    f"{table.name}.{column.name} holds data; its values would be lost - make the target column a "
                    "plain column, or map the table elsewhere in sqlite_migration.tables"
                )
                continue
            mapping.rules["generated-in-target"] = mapping.rules.get("generated-in-target", 0) + 1
        elif stored in target.columns and stored not in KEY_COLUMNS:
            if stored in bad:
                mapping.problems.append(
                    f"target column {mapping.target_label}.{stored} has type "
                    f"{target.columns[stored].type_name}, which ws migrate cannot convert to; use text, "
                    "bytea, integer, float, numeric, boolean, json(b), timestamp(tz), date or uuid"
                )
                continue
            mapping.source_columns.append(column.name)
            mapping.target_columns.append(target.columns[stored])
            if column.generated:
                mapping.rules["generated-column-values"] = mapping.rules.get("generated-column-values", 0) + 1
        elif column.name == table.rowid_alias:
            mapping.rules["rowid-alias"] = 1
        else:
            mapping.problems.append(
                f"source column {table.name}.{column.name} has no column in {mapping.target_label}; its values "
                "would be lost - add the column to the target table (a migration), or map the table elsewhere in "
                "sqlite_migration.tables"
            )
    mapped = {c.name for c in mapping.target_columns} | set(KEY_COLUMNS)
    for target_column in target.columns.values():
        if (
            target_column.name not in mapped
            and target_column.not_null
            and not target_column.has_default
            and not target_column.generated
        ):
            mapping.problems.append(
                f"target column {mapping.target_label}.{target_column.name} is NOT NULL without a default and the "
                "source has no such column; give it a default or make it nullable"
            )
    mapping.target = target
    return mapping


TRUNCATED = "PostgreSQL keeps only the first 63 bytes of a name"


def colliding_columns(table: SourceTable) -> list[str]:
    """Problems for source columns whose names PostgreSQL would cut to one name (their values would mix)."""
    groups: dict[str, list[str]] = {}
    for column in table.columns:
        groups.setdefault(pg_identifier(column.name), []).append(column.name)
    return [
        f"source columns {names[0]!r} and {names[1]!r} of table {table.name!r} both become column {stored!r} in "
        f"PostgreSQL ({TRUNCATED}); give them names that differ within their first 63 bytes in a copy of the table "
        "(CREATE TABLE ... AS SELECT col AS shorter_name, ...) and migrate that"
        for stored, names in groups.items()
        if len(names) > 1
    ]


def duplicate_targets(mappings: list[TableMapping]) -> None:
    """Two source tables of one file may not load into the same target table (their rowids would collide, and
    each unit's reset would delete the other's rows): every table of such a group is refused. Names are compared
    as PostgreSQL stores them, cut to 63 bytes."""
    groups: dict[str, list[TableMapping]] = {}
    for mapping in mappings:
        groups.setdefault(mapping.target_label, []).append(mapping)
    for label, group in groups.items():
        if len(group) < 2:
            continue
        names = [m.source.name for m in group]
        cut = any(pg_identifier(m.target_label_as_declared) != m.target_label_as_declared for m in group)
        why = f" ({TRUNCATED})" if cut else ""
        for mapping in group:
            other = next(n for n in names if n != mapping.source.name)
            first, second = sorted((mapping.source.name, other))
            mapping.problems.append(
                f"source tables {first!r} and {second!r} both map to {label}{why}; map each source table to its "
                f"own target in sqlite_migration.tables (e.g. tables: {{{second}: a_shorter_name}})"
            )


@dataclass
class ConvertedRow:
    rowid: int
    values: list[Any]  # agent_id, source_rowid, then target columns


@dataclass
class RejectedRow:
    rowid: int
    column: str
    reason: str
    storage_class: str
    raw: bytes | None
    row: tuple[Any, ...]


RowResult = tuple[ConvertedRow | None, RejectedRow | None, list[tuple[str, str, bytes | None]]]


def row_converter(
    agent_id: str, mapping: TableMapping, *, canonical_json: bool = True
) -> Callable[[tuple[Any, ...]], RowResult]:
    """A function from a fetched source row (rowid first) to a converted row or a rejected row, with the
    rules it applied as (rule, column, raw bytes kept or None). ``canonical_json=False`` (a load that computes no
    content hashes) keeps JSON that loads as-is in its source text instead of writing jsonb's form of it.

    It is generated per table (one straight-line function, no per-column loop), with inline fast paths for
    the common cases (a str without NUL into text, an in-range int into an integer column); everything else
    goes through the column's converter from :mod:`infra.migrate.convert`. The hot loop of `run` is this.
    """
    from infra.migrate.convert import INT_RANGES, TEXT_TYPES, raw_bytes, storage_class

    columns = mapping.target_columns
    scope: dict[str, Any] = {
        "agent_id": agent_id,
        "Rejected": Rejected,
        "RejectedRow": RejectedRow,
        "ConvertedRow": ConvertedRow,
        "storage_class": storage_class,
        "raw_bytes": raw_bytes,
        "names": [c.name for c in columns],
    }
    lines = [
        "def convert(row):",
        "    rowid = row[0]",
        "    applied = []",
        "    notes = []",
        "    column = 0",
        "    try:",
        "        pass",  # a table whose only column is the rowid has no value to convert
    ]
    for index, column in enumerate(columns, start=1):
        scope[f"conv{index}"] = converter_for(column, canonical_json=canonical_json)
        value, result = f"v{index}", f"r{index}"
        lines.append(f"        column = {index}")
        lines.append(f"        {value} = row[{index}]")
        if column.type_name in TEXT_TYPES and column.max_length is None:
            lines.append(
                f"        {result} = {value} if {value}.__class__ is str and '\\x00' not in {value} "
                f"else conv{index}({value}, notes)"
            )
        elif column.type_name in INT_RANGES:
            low, high = INT_RANGES[column.type_name]
            lines.append(
                f"        {result} = {value} if {value}.__class__ is int and {low} <= {value} <= {high} "
                f"else conv{index}({value}, notes)"
            )
        else:
            lines.append(f"        {result} = conv{index}({value}, notes)")
        lines.append("        if notes:")
        lines.append(f"            applied.extend((rule, names[{index - 1}], raw) for rule, raw in notes)")
        lines.append("            notes.clear()")
    lines += [
        "    except Rejected as rejected:",
        "        value = row[column]",
        "        return None, RejectedRow(rowid, names[column - 1], rejected.reason, storage_class(value),"
        " raw_bytes(value), row), applied",
    ]
    results = ", ".join(f"r{i}" for i in range(1, len(columns) + 1))
    lines.append(f"    values = [agent_id, rowid{', ' if columns else ''}{results}]")
    lines.append("    return ConvertedRow(rowid, values), None, applied")
    code = compile("\n".join(lines) + "\n", f"<row converter of {mapping.source.name}>", "exec")
    exec(code, scope)
    function: Callable[[tuple[Any, ...]], RowResult] = scope["convert"]
    return function


FETCH_ROWS = 2000


def iterate_rows(
    conn: sqlite3.Connection, mapping: TableMapping, path: Path, after: int | None
) -> Generator[tuple[Any, ...], None, None]:
    """Source rows in rowid order after ``after``; read errors become :class:`SourceError`.

    Text is decoded by sqlite3 itself (in C, about a quarter of the read cost saved) and the rows are the same
    as with the connection's own text factory, which comes back whenever a chunk holds text that is not valid
    UTF-8: sqlite3 refuses such a chunk, so it is read again from the last row handed out with the text
    factory (which keeps those bytes as :class:`InvalidUtf8`), and the fast reading goes on after it. The
    connection's text factory is in place whenever rows are handed out, so callers see no difference.
    """
    own_factory = conn.text_factory
    last = after_bound(after)
    select, select_some = mapping.select_sql(), mapping.select_sql() + " LIMIT ?"
    try:
        while True:
            conn.text_factory = str
            cursor = conn.execute(select, (last,))
            try:
                while True:
                    chunk = cursor.fetchmany(FETCH_ROWS)
                    if not chunk:
                        return
                    last = chunk[-1][0]
                    conn.text_factory = own_factory
                    yield from chunk
                    conn.text_factory = str
            except sqlite3.OperationalError as exc:
                if not str(exc).startswith("Could not decode to UTF-8"):
                    raise
            conn.text_factory = own_factory
            chunk = conn.execute(select_some, (last, FETCH_ROWS)).fetchall()
            if not chunk:
                return
            last = chunk[-1][0]
            yield from chunk
    except sqlite3.Error as exc:
        raise SourceError(describe(path, exc)) from None
    finally:
        conn.text_factory = own_factory


@dataclass
class FilePlan:
    source: SourceFile
    schema: SourceSchema | None = None
    mappings: list[TableMapping] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""
    sha256: str = ""

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def plan_file(
    conn: psycopg.Connection[Any],
    source: SourceFile,
    sqlite_conn: sqlite3.Connection,
    *,
    create_tables: bool,
    integrity_check: bool,
    quick: bool = True,
    targets: dict[tuple[str, str], TargetTable] | None = None,
) -> FilePlan:
    """Read one file's schema and map each table onto its target (raises SourceError for unreadable files).
    ``targets``: the target tables already introspected by this run (filled here; a table found absent is asked
    for again), so that 200 files mapping onto the same two tables ask PostgreSQL's catalog twice, not 400 times."""
    plan = FilePlan(source)
    if integrity_check:
        problems = integrity(sqlite_conn, source.path, quick=quick)
        if problems:
            raise SourceError(
                f"{source.path}: SQLite integrity check failed ({'; '.join(problems[:3])}); the file is corrupt - "
                "recover it with `sqlite3 FILE .recover` or restore it from a backup, then run again"
            )
    plan.schema = read_schema(sqlite_conn, source.path)
    for table in plan.schema.tables:
        name = (source.namespace, pg_identifier(source.target_table(table.name)))
        target = targets.get(name) if targets is not None else None
        if target is None:
            target = introspect(conn, *name)
            if target is not None and targets is not None:
                targets[name] = target
        mapping = build_mapping(source, table, target, create_tables=create_tables)
        if holds_lowest_rowid(sqlite_conn, table, source.path):
            quoted = quote_sqlite(table.name)
            advice = f"UPDATE {quoted} SET rowid = (SELECT max(rowid) + 1 FROM {quoted})"  # noqa: S608 (shown, not run)
            mapping.problems.append(
                f"a row has rowid {LOWEST_ROWID}, the lowest SQLite allows, which ws migrate cannot read (it reads "
                f"after that value); give it another rowid in the source (e.g. {advice} WHERE rowid = "
                f"{LOWEST_ROWID}), then run again"
            )
        plan.mappings.append(mapping)
        plan.counts[table.name] = count_rows(sqlite_conn, table, source.path)
    duplicate_targets(plan.mappings)
    return plan
