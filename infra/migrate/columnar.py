"""The native path of `ws migrate run`: clean rows go from SQLite to PostgreSQL without passing through Python one by
one.

Per batch, one SQL statement run by SQLite (through ``adbc-driver-sqlite``, straight into Apache Arrow) reads the
rows, tells for every row whether each of its values takes a rule that can be applied natively (the row is
*clean*), and already applies those rules in SQL: values that load as they are, epoch seconds and milliseconds for
timestamp columns, each with a rule code counted per row. ISO 8601 text of timestamp columns is tested and turned
into microseconds by Arrow (:func:`iso_micros`: one RE2 match, then Arrow's own ISO 8601 parser, or exact integer
arithmetic when it refuses a value), and NUL bytes and JSON escapes are looked for by Arrow too. The clean
rows' binary COPY tuples are then built column by column with Arrow compute (lengths and big-endian values, joined
per row) and written to psycopg's public COPY API; no Python code runs per row or per value. What the batch's
check in PostgreSQL compares (:func:`infra.migrate.encode.batch_check_sql`) is built the same way.

A row is clean when every value is one of (anything else is *not* clean and goes through the Python path of
:mod:`infra.migrate.convert`, with the same rules, counts, rejects and kept raw values; rows are never changed by
the native path in a way a rule would report with a raw value):

* text into text (varchar(n): at most n characters), without NUL; blobs into bytea; integers in range into
  int2/int4/int8; reals into double precision; NULL where the column allows it;
* JSON text into json/jsonb that SQLite finds valid (``json_valid``), without backslash escapes, NUL, duplicate
  keys (``json_patch`` onto ``{}``, or ``json_tree``), 500 or more brackets or 64 KiB of text - PostgreSQL parses
  it to the same jsonb the Python path's text gives (a number it refuses sends the batch through Python);
* for timestamp(tz) columns (microsecond precision): integer or real epochs (seconds, or milliseconds above
  1e11) and ISO text ``YYYY-MM-DD[T ]HH:MM:SS[.fff|.ffffff][Z|+HH:MM|-HH:MM]`` between the years 2 and 9998
  (rules epoch-seconds-to-timestamptz, epoch-milliseconds-to-timestamptz, naive-time-as-utc).

Text that is not valid UTF-8 is found per batch (Arrow refuses to cast it to a string); such a batch goes through
the Python path whole. WITHOUT ROWID tables and columns of other types always take the Python path.
"""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbc_driver_sqlite.dbapi as adbc_sqlite
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from infra.migrate.convert import INT_RANGES, TargetColumn
from infra.migrate.encode import NULL_FIELD, type_oid
from infra.migrate.plan import TableMapping
from infra.migrate.source import SourceError, after_bound, describe, quote_sqlite, wal_at_rest

NOTHING = pa.scalar(b"", pa.large_binary())  # the separator of joined fields
PG_EPOCH_MICROS = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970: PostgreSQL's timestamp zero
TEXT_KINDS = {"text", "varchar", "name"}
JSON_KINDS = {"json", "jsonb"}
TIME_KINDS = {"timestamptz", "timestamp"}
FIXED_WIDTH = {"int2": 2, "int4": 4, "int8": 8, "float8": 8}
TIME_RULES = {1: "epoch-seconds-to-timestamptz", 2: "epoch-milliseconds-to-timestamptz", 3: "naive-time-as-utc"}
DIGIT = "[0-9]"
# larger values take the Python path, which streams them: a native batch holds at most this much per value
MAX_BYTES = 1 << 20
# the bytes a native batch aims at: the next batch's rows are scaled from the last one's size
BATCH_BYTES = 32 << 20


def native_kind(column: TargetColumn) -> str | None:
    """How a target column's values travel natively, None when it always takes the Python path."""
    kind = column.type_name
    if kind in TEXT_KINDS or kind in JSON_KINDS or kind in FIXED_WIDTH or kind == "bytea":
        return kind
    if kind in TIME_KINDS and (column.scale is None or column.scale >= 6):
        return "time"
    return None


def supports(mapping: TableMapping) -> bool:
    """Whether a table can take the native path (its rows still do only when clean)."""
    return (
        not mapping.source.without_rowid
        and not mapping.problems
        and all(native_kind(c) is not None for c in mapping.target_columns)
    )


# ------------------------------------------------------------------------------------------------ the SQL


@dataclass
class ColumnSql:
    selects: list[str]  # expressions selected for the column, in order
    clean: str  # SQL predicate: the value takes the native path
    rule: str | None = None  # SQL expression of the row's rule code for this column (0: none)
    # bytes a value of the first select must not hold to be clean, each searched for by Arrow as a one-byte
    # regular expression (RE2 finds a literal with memchr: about 35 ns per 130-byte value, where SQLite's instr()
    # walks the text character by character, about 0.3 us per row and column)
    forbidden: tuple[str, ...] = ()


def _nullable(column: TargetColumn, q: str, predicate: str) -> str:
    return predicate if column.not_null else f"({q} IS NULL OR ({predicate}))"


def column_sql(column: TargetColumn, source_name: str) -> ColumnSql:
    q = quote_sqlite(source_name)
    kind = native_kind(column)
    if kind in TEXT_KINDS:
        # octet_length: SQLite's byte count, read without scanning the text (length() counts characters); a NUL
        # byte is looked for by Arrow (split)
        predicate = f"typeof({q}) = 'text' AND octet_length({q}) < {MAX_BYTES}"
        if column.max_length is not None:
            predicate += f" AND length({q}) <= {int(column.max_length)}"
        text = f"CASE WHEN typeof({q}) = 'text' AND octet_length({q}) < {MAX_BYTES} THEN CAST({q} AS BLOB) END"
        return ColumnSql([text], _nullable(column, q, predicate), forbidden=("\x00",))
    if kind == "bytea":
        predicate = f"typeof({q}) = 'blob' AND octet_length({q}) < {MAX_BYTES}"
        return ColumnSql([f"CASE WHEN {predicate} THEN {q} END"], _nullable(column, q, predicate))
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        predicate = f"typeof({q}) = 'integer' AND {q} BETWEEN {low} AND {high}"
        return ColumnSql([f"CASE WHEN typeof({q}) = 'integer' THEN {q} END"], _nullable(column, q, predicate))
    if kind == "float8":
        return ColumnSql(
            [f"CASE WHEN typeof({q}) = 'real' THEN {q} END"], _nullable(column, q, f"typeof({q}) = 'real'")
        )
    if kind in JSON_KINDS:
        # nesting Python's parser refuses (RecursionError) but PostgreSQL's accepts: at most 500 brackets
        brackets = (
            f"(octet_length({q}) < 500 OR octet_length({q}) - octet_length(replace(replace({q}, '[', ''), '{{', '')) "
            "< 500)"
        )
        # duplicate keys (rule json-duplicate-keys keeps the raw text): none without an object. Where no object
        # sits after the first '[' (no object inside an array), SQLite's json_patch onto {} (RFC 7396) merges
        # duplicates of every object and drops null members: the same minified text back means neither. Else one
        # object at the top: its keys; else every object's (json_tree)
        each = f"(SELECT count(*) = count(DISTINCT key) FROM json_each({q}))"  # noqa: S608 (q: quoted identifier)
        tree = f"NOT EXISTS (SELECT 1 FROM json_tree({q}) GROUP BY parent, key HAVING count(*) > 1)"  # noqa: S608
        one_object = f"octet_length({q}) - octet_length(replace({q}, '{{', '')) = 1 AND json_type({q}) = 'object'"
        flat = f"(instr({q}, '[') = 0 OR instr(substr({q}, instr({q}, '[')), '{{') = 0)"
        patched = f"json_patch('{{}}', {q}) = json({q})"
        duplicates = (
            f"(instr({q}, '{{') = 0 OR (CASE WHEN {flat} AND {patched} THEN 1 WHEN {one_object} THEN {each} "
            f"ELSE {tree} END))"
        )
        # numbers beyond PostgreSQL's numeric range (an exponent) make PostgreSQL refuse the batch, which then goes
        # through the Python path whole (where such a value is a reject)
        # NUL and backslashes (escapes) are looked for by Arrow (split)
        predicate = (
            f"typeof({q}) = 'text' AND octet_length({q}) < 65536 AND {brackets} AND json_valid({q}) AND {duplicates}"
        )
        text = f"CASE WHEN typeof({q}) = 'text' AND octet_length({q}) < 65536 THEN CAST({q} AS BLOB) END"
        return ColumnSql([text], _nullable(column, q, predicate), forbidden=("\x00", "\\\\"))
    # timestamps: epochs are tested and scaled here; ISO text of a plausible length is selected as bytes and
    # tested and converted by Arrow (iso_micros), which is also where its rule is counted
    integer_seconds = f"{q} BETWEEN -62135596800 AND 100000000000"
    # milliseconds up to 9e12 (year 2255): Python's timedelta(milliseconds=n) is exact only that far
    integer_millis = f"({q} > 100000000000 OR {q} < -100000000000) AND {q} BETWEEN -9000000000000 AND 9000000000000"
    real_seconds = f"{q} BETWEEN -62135596799.0 AND 100000000000.0"
    real_millis = (
        f"({q} > 100000000000.0 OR {q} < -100000000000.0) AND {q} BETWEEN -62135596799000.0 AND 253402300798999.0"
    )
    iso_candidate = f"typeof({q}) = 'text' AND octet_length({q}) BETWEEN 19 AND 32"
    predicate = (
        f"(typeof({q}) = 'integer' AND (({integer_seconds}) OR ({integer_millis}))) "
        f"OR (typeof({q}) = 'real' AND (({real_seconds}) OR ({real_millis}))) OR ({iso_candidate})"
    )
    integer = (
        f"CASE WHEN typeof({q}) = 'integer' AND {q} BETWEEN -62135596800000 AND 253402300799999 THEN "
        f"{q} * (CASE WHEN {q} > 100000000000 OR {q} < -100000000000 THEN 1000 ELSE 1000000 END) END"
    )
    real = f"CASE WHEN typeof({q}) = 'real' THEN {q} END"
    iso = f"CASE WHEN {iso_candidate} THEN CAST({q} AS BLOB) END"
    rule = (
        f"CASE WHEN typeof({q}) IN ('integer', 'real') THEN (CASE WHEN {q} > 100000000000 OR {q} < -100000000000 "
        "THEN 2 ELSE 1 END) ELSE 0 END"
    )
    return ColumnSql([integer, real, iso], _nullable(column, q, predicate), rule)


@dataclass
class NativeTable:
    """The native path of one table: its batch statement and how to turn a batch into binary COPY tuples."""

    mapping: TableMapping
    columns: list[ColumnSql] = field(default_factory=list)

    @classmethod
    def of(cls, mapping: TableMapping) -> NativeTable:
        table = cls(mapping)
        table.columns = [column_sql(c, s) for c, s in zip(mapping.target_columns, mapping.source_columns, strict=True)]
        return table

    def forbidden_positions(self) -> list[tuple[int, tuple[str, ...]]]:
        """(position in a batch, the bytes it must not hold, as regular expressions) of each column with such."""
        found = []
        position = 2
        for column in self.columns:
            if column.forbidden:
                found.append((position, column.forbidden))
            position += len(column.selects)
        return found

    def time_positions(self) -> list[tuple[int, int]]:
        """(position of the ISO text, position of the rule code) in a batch, per timestamp column."""
        found = []
        position = 2
        rule_position = 2 + sum(len(c.selects) for c in self.columns)
        for column in self.columns:
            position += len(column.selects)
            if column.rule is not None:
                found.append((position - 1, rule_position))
                rule_position += 1
        return found

    def batch_sql(self, after: int | None, limit: int) -> str:
        """rowid, clean (0/1), every column's expressions, every rule code; the next ``limit`` rows after rowid
        ``after`` (from the first when None). The two integers are written into the statement: with parameters,
        the driver prepares it, then SQLite compiles it again when it runs (about a third of a small table's read
        went to compiling this long statement twice)."""
        start = int(after_bound(after))
        clean = " AND ".join(f"({c.clean})" for c in self.columns) or "1"
        parts = ["rowid", f"CASE WHEN {clean} THEN 1 ELSE 0 END"]
        for column in self.columns:
            parts += column.selects
        parts += [c.rule for c in self.columns if c.rule is not None]
        table = quote_sqlite(self.mapping.source.name)
        return f"SELECT {', '.join(parts)} FROM {table} WHERE rowid > {start} ORDER BY rowid LIMIT {int(limit)}"  # noqa: S608


# --------------------------------------------------------------------------------------------- Arrow side


class NotNative(Exception):
    """This batch cannot take the native path (text that is not valid UTF-8): it goes through Python whole."""


LITTLE_ENDIAN = sys.byteorder == "little"


def _combined(array: Any) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def big_endian(values: pa.Array, width: int) -> pa.Array:
    """Integers as ``width``-byte big-endian binary values (binary COPY's byte order), computed by Arrow kernels:
    on a little-endian machine each value's bytes in memory, reversed (three kernels: a batch of a few hundred
    rows costs its kernel calls more than its bytes); elsewhere assembled byte by byte with shifts."""
    unsigned = pa.uint64() if width == 8 else pa.uint32() if width == 4 else pa.uint16()
    u = pc.cast(values, unsigned, safe=False)
    if LITTLE_ENDIAN:
        flat = _combined(u)
        view = pa.Array.from_buffers(pa.binary(width), len(flat), flat.buffers()[:2], offset=flat.offset)
        return pc.binary_reverse(view.cast(pa.large_binary()))
    result = None
    for k in range(width):
        byte = pc.bit_wise_and(pc.shift_right(u, pa.scalar(8 * (width - 1 - k), unsigned)), pa.scalar(0xFF, unsigned))
        placed = pc.shift_left(byte, pa.scalar(8 * k, unsigned))
        result = placed if result is None else pc.bit_wise_or(result, placed)
    assert result is not None
    flat = _combined(pc.cast(result, unsigned))
    view = pa.Array.from_buffers(pa.binary(width), len(flat), flat.buffers()[:2], offset=flat.offset)
    return view.cast(pa.large_binary())


def _lengths(values: pa.Array, width: int | None = None) -> pa.Array:
    """Each field's length prefix: the value's byte length (``width`` for fixed-width types), -1 for NULL."""
    if width is None:
        lengths = pc.fill_null(pc.binary_length(values), -1)
    else:
        lengths = pc.if_else(pc.is_valid(values), pa.scalar(width, pa.int32()), pa.scalar(-1, pa.int32()))
    return big_endian(lengths, 4)


def _float_bits(values: pa.Array) -> pa.Array:
    flat = _combined(pc.cast(values, pa.float64()))
    return pa.Array.from_buffers(pa.int64(), len(flat), flat.buffers()[:2], offset=flat.offset)


def _typed(values: pa.Array, kind: pa.DataType) -> pa.Array:
    """``values`` as ``kind`` (the driver types a column that was NULL in every row of a batch as int64)."""
    if values.type == kind:
        return values
    if values.null_count == len(values):
        return pa.nulls(len(values), kind)
    return values.cast(kind)


def _valid_text(values: pa.Array) -> pa.Array:
    try:
        values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise NotNative from None
    return values


def time_micros(integer: pa.Array, real: pa.Array, iso: pa.Array) -> pa.Array:
    """Microseconds since 1970 of a timestamp column: integer epochs (already scaled in SQL), real epochs rounded
    half to even as Python's round() does (milliseconds above 1e11, else seconds), ISO text (already microseconds: :func:`iso_micros`)."""
    real = _typed(real, pa.float64())
    integer, iso = _typed(integer, pa.int64()), _typed(iso, pa.int64())
    scaled = pc.if_else(pc.greater(pc.abs(real), 1e11), pc.multiply(real, 1000.0), pc.multiply(real, 1e6))
    rounded = pc.cast(pc.round(scaled, round_mode="half_to_even"), pa.int64())
    return pc.coalesce(integer, rounded, iso)


@dataclass
class EncodedBatch:
    data: bytes | memoryview  # binary COPY tuples of the clean rows (no signature, no trailer)
    rows: int
    rules: dict[str, int]
    # what :func:`infra.migrate.encode.batch_check_sql` compares, when asked for: each row's record_send bytes
    # (every field but the jsonb ones, then whether each jsonb field is NULL), and each jsonb column's non-NULL
    # texts as one JSON array
    checked: bytes | memoryview = b""
    documents: list[bytes] = field(default_factory=list)

    def check_parameters(self, documents: int) -> dict[str, Any]:
        """The native rows' part of the parameters of :func:`infra.migrate.encode.batch_check_sql` for a table
        with ``documents`` jsonb columns (empty arrays when the batch has no native rows)."""
        return {f"docs{k}": self.documents[k] if self.rows else b"[]" for k in range(documents)}


def _flat_data(joined: pa.Array) -> memoryview:
    """The bytes of a binary array's values, end to end (an array sliced or not)."""
    joined = _combined(joined)
    rows = len(joined)
    offsets = pa.Array.from_buffers(pa.int64(), rows + 1, [None, joined.buffers()[1]], offset=joined.offset)
    first, last = offsets[0].as_py(), offsets[rows].as_py()
    return memoryview(joined.buffers()[2]).cast("B")[first:last]


def _json_array(texts: pa.Array) -> bytes:
    """A jsonb column's non-NULL texts, in order, as one JSON array."""
    present = pc.drop_null(texts)
    listed = pa.LargeListArray.from_arrays(pa.array([0, len(present)], pa.int64()), _combined(present))
    joined = pc.binary_join(listed, pa.scalar(b",", pa.large_binary()))
    return b"[" + joined[0].as_py() + b"]"


def _constant(data: bytes) -> pa.Scalar:
    return pa.scalar(data, pa.large_binary())


def _oid(type_name: str) -> pa.Scalar:
    return _constant(type_oid(type_name).to_bytes(4, "big"))


BOOL_FIELD = {False: _constant(b"\x00\x00\x00\x01\x00"), True: _constant(b"\x00\x00\x00\x01\x01")}


def _join(parts: list[Any]) -> memoryview:
    return _flat_data(pc.binary_join_element_wise(*parts, NOTHING, null_handling="replace", null_replacement=b""))


def encode(table: NativeTable, agent_id: str, batch: pa.Table, checked: bool = False) -> EncodedBatch:
    """The clean rows of a batch (already filtered) as binary COPY tuples: agent_id, source_rowid, columns; with
    ``checked``, also what the batch's check in PostgreSQL compares (:class:`EncodedBatch`)."""
    rows = batch.num_rows
    if rows == 0:
        return EncodedBatch(b"", 0, {})
    agent = agent_id.encode("utf-8")
    # per field: its type's name (jsonb fields are left out of the check's record), length prefixes and values
    fields: list[tuple[str, Any, Any]] = [
        ("text", _constant(len(agent).to_bytes(4, "big")), _constant(agent)),
        ("int8", _constant((8).to_bytes(4, "big")), big_endian(_combined(batch.column(0)), 8)),
    ]
    rules: dict[str, int] = {}
    documents: list[pa.Array] = []
    position = 2  # after rowid and the clean flag
    rule_position = 2 + sum(len(c.selects) for c in table.columns)
    for column, target in zip(table.columns, table.mapping.target_columns, strict=True):
        kind = native_kind(target)
        values = [_combined(batch.column(position + i)) for i in range(len(column.selects))]
        position += len(column.selects)
        if kind in TEXT_KINDS or kind in JSON_KINDS or kind == "bytea":
            data = _typed(values[0], pa.large_binary())
            if kind != "bytea":
                data = _valid_text(data)
            if kind == "jsonb":  # jsonb's binary format: version 1, then the text
                documents.append(data)
                data = pc.binary_join_element_wise(_constant(b"\x01"), data, NOTHING)
            fields.append((target.type_name, _lengths(data), data))
        elif kind == "float8":
            number = _typed(values[0], pa.float64())
            fields.append((kind, _lengths(number, 8), big_endian(_float_bits(number), 8)))
        elif kind in FIXED_WIDTH:
            width = FIXED_WIDTH[kind]
            integer = _typed(values[0], pa.int64())
            fields.append((kind, _lengths(integer, width), big_endian(integer, width)))
        else:
            micros = time_micros(*values)
            fields.append((target.type_name, _lengths(micros, 8), big_endian(pc.subtract(micros, PG_EPOCH_MICROS), 8)))
            codes = pc.value_counts(_combined(batch.column(rule_position)))
            rule_position += 1
            for entry in codes.to_pylist():
                name = TIME_RULES.get(int(entry["values"]))
                if name is not None:
                    rules[name] = rules.get(name, 0) + int(entry["counts"])
    data = _join(
        [_constant(len(fields).to_bytes(2, "big"))] + [p for _, length, value in fields for p in (length, value)]
    )
    encoded = EncodedBatch(data, rows, rules)
    if checked:
        # record_send's form of each row: the field count, then per field its type OID, length and value; jsonb
        # fields are left out, and whether each is NULL comes last (a bool field)
        compared = [(kind, length, value) for kind, length, value in fields if kind != "jsonb"]
        parts: list[Any] = [_constant((len(compared) + len(documents)).to_bytes(4, "big"))]
        for kind, length, value in compared:
            parts += [_oid(kind), length, value]
        for document in documents:
            parts += [_oid("bool"), pc.if_else(pc.is_null(document), BOOL_FIELD[True], BOOL_FIELD[False])]
        encoded.checked = _join(parts)
        encoded.documents = [_json_array(d) for d in documents]
    return encoded


assert NULL_FIELD == (-1).to_bytes(4, "big", signed=True)


# -------------------------------------------------------------------------------------------- the reader


class NativeReader:
    """One read-only snapshot of a SQLite file through adbc-driver-sqlite, batches as Arrow tables."""

    def __init__(self, path: Path) -> None:
        self.path = path
        query = "mode=ro" + ("&immutable=1" if wal_at_rest(path) else "")
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?{query}"
        try:
            self.conn = adbc_sqlite.connect(uri)
        except Exception as exc:  # the driver's own error classes
            raise SourceError(describe(path, exc)) from None

    def read(self, table: NativeTable, after: int | None, limit: int) -> pa.Table:
        try:
            with self.conn.cursor() as cursor:
                # the driver infers each column's type from the rows it reads first: read the whole batch at once
                cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(max(limit, 1))})
                cursor.execute(table.batch_sql(after, limit))
                return cursor.fetch_arrow_table()
        except Exception as exc:  # the driver's own error classes
            raise SourceError(describe(self.path, exc)) from None

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


@dataclass
class SplitBatch:
    last: int | None  # the batch's last rowid (None: no rows)
    rows: int  # rows in the batch
    clean: pa.Table  # the clean rows
    others: list[int]  # rowids of the rows that go through Python


def split(table: NativeTable, batch: pa.Table) -> SplitBatch:
    """A batch's clean rows and the rowids of the others. ISO text in timestamp columns is tested here (a row
    whose text is not one of the shapes the native path reads is not clean) and replaced by its microseconds;
    naive ones count their rule."""
    rows = batch.num_rows
    if rows == 0:
        return SplitBatch(None, 0, batch, [])
    rowids = _combined(batch.column(0))
    flags = pc.equal(_combined(batch.column(1)), 1)
    for position, forbidden in table.forbidden_positions():
        values = _typed(_combined(batch.column(position)), pa.large_binary())
        for pattern in forbidden:
            found = pc.fill_null(pc.match_substring_regex(values, pattern), False)  # NULL holds nothing
            flags = pc.and_(flags, pc.invert(found))
    columns = list(batch.columns)
    for iso_position, rule_position in table.time_positions():
        iso = _combined(batch.column(iso_position))
        micros, naive = iso_micros(iso)
        flags = pc.and_(flags, pc.or_(pc.is_null(iso), pc.is_valid(micros)))
        columns[iso_position] = micros
        codes = _typed(_combined(batch.column(rule_position)), pa.int64())
        columns[rule_position] = pc.if_else(naive, pa.scalar(3, pa.int64()), codes)
    batch = pa.Table.from_arrays(columns, names=batch.column_names)
    others = pc.filter(rowids, pc.invert(flags)).to_pylist()
    return SplitBatch(int(rowids[rows - 1].as_py()), rows, batch.filter(flags), others)


ISO_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3}|\.[0-9]{6})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
MONTH_DAYS = pa.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], pa.int64())
# ISO_PATTERN with the years 0002-9998 only (the range the native path takes), and the offset at its end
YEARS_2_TO_9998 = "(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
ISO_IN_RANGE = "^" + YEARS_2_TO_9998 + ISO_PATTERN[len("^[0-9]{4}") :]
ZONED = r"(Z|[+-][0-9]{2}:[0-9]{2})$"
NO_TEXT = pa.scalar(None, pa.large_string())


def iso_micros(iso: pa.Array) -> tuple[pa.Array, pa.Array]:
    """What :func:`iso_micros_exact` gives, in a dozen Arrow calls instead of about sixty when Arrow's own ISO 8601
    parser takes every value: a batch's fixed cost, which is most of a small table's. Values of the shape and
    year range are cast by Arrow (naive ones to a timestamp, zoned ones to UTC), which refuses exactly the
    date-times :func:`iso_micros_exact` refuses (a day its month has not, hour 24, second 60, offsets of 24:00 or
    :60); when it refuses one, the batch is converted by :func:`iso_micros_exact`, which tells which."""
    text = _typed(iso, pa.large_binary())
    shaped = pc.fill_null(pc.match_substring_regex(text, ISO_IN_RANGE), False)
    zoned = pc.fill_null(pc.match_substring_regex(text, ZONED), False)
    strings = pc.if_else(shaped, text, pa.scalar(None, pa.large_binary())).cast(pa.large_string())  # ASCII
    try:
        naive_times = pc.if_else(zoned, NO_TEXT, strings).cast(pa.timestamp("us"))
        zoned_times = pc.if_else(zoned, strings, NO_TEXT).cast(pa.timestamp("us", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return iso_micros_exact(iso)
    micros = pc.coalesce(naive_times.cast(pa.int64()), zoned_times.cast(pa.int64()))
    return _combined(micros), _combined(pc.and_(shaped, pc.invert(zoned)))


def iso_micros_exact(iso: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Microseconds since 1970 of ISO 8601 text ``YYYY-MM-DD[T ]HH:MM:SS[.fff|.ffffff][Z|+HH:MM|-HH:MM]`` (as
    bytes), NULL where a value is NULL or not such a date-time between the years 2 and 9998 (a day its month has,
    hours under 24, minutes and seconds under 60, offsets under 24:00); and whether each is naive (no offset, no
    Z: rule naive-time-as-utc). Exact integer arithmetic with Arrow kernels (days from the civil date as in
    Howard Hinnant's algorithm), no Python per value."""
    text = _typed(iso, pa.large_binary())
    shaped = pc.if_else(pc.match_substring_regex(text, ISO_PATTERN), text, pa.scalar(None, pa.large_binary()))
    shaped = shaped.cast(pa.large_string())  # only ASCII is left
    size = pc.utf8_length(shaped)

    def number(values: pa.Array, start: int, stop: int | None = None) -> pa.Array:
        return pc.cast(pc.utf8_slice_codeunits(values, start, stop), pa.int64())

    def where(mask: pa.Array) -> pa.Array:
        return pc.if_else(mask, shaped, pa.scalar(None, pa.large_string()))

    year, month, day = number(shaped, 0, 4), number(shaped, 5, 7), number(shaped, 8, 10)
    hour, minute, second = number(shaped, 11, 13), number(shaped, 14, 16), number(shaped, 17, 19)
    millis = where(pc.is_in(size, pa.array([23, 24, 29], pa.int64())))
    micros = where(pc.is_in(size, pa.array([26, 27, 32], pa.int64())))
    offset = where(pc.is_in(size, pa.array([25, 29, 32], pa.int64())))
    fraction = pc.coalesce(pc.multiply(number(millis, 20, 23), 1000), number(micros, 20, 26), 0)
    offset_hours, offset_minutes = number(offset, -5, -3), number(offset, -2)
    sign = pc.if_else(pc.equal(pc.utf8_slice_codeunits(offset, -6, -5), "+"), 1, -1)
    offset_seconds = pc.coalesce(
        pc.multiply(sign, pc.add(pc.multiply(offset_hours, 3600), pc.multiply(offset_minutes, 60))), 0
    )
    leap = pc.and_(
        pc.equal(month, 2),
        pc.or_(
            pc.and_(pc.equal(_remainder(year, 4), 0), pc.not_equal(_remainder(year, 100), 0)),
            pc.equal(_remainder(year, 400), 0),
        ),
    )
    in_year = pc.and_(pc.greater_equal(month, 1), pc.less_equal(month, 12))
    month_days = pc.add(pc.take(MONTH_DAYS, pc.if_else(in_year, month, 0)), pc.cast(leap, pa.int64()))
    valid = pc.and_(
        pc.and_(pc.and_(pc.greater_equal(year, 2), pc.less_equal(year, 9998)), in_year),
        pc.and_(
            pc.and_(pc.greater_equal(day, 1), pc.less_equal(day, month_days)),
            pc.and_(pc.and_(pc.less(hour, 24), pc.less(minute, 60)), pc.less(second, 60)),
        ),
    )
    valid = pc.and_(valid, pc.coalesce(pc.and_(pc.less(offset_hours, 24), pc.less(offset_minutes, 60)), True))
    # days since 1970-01-01 of the civil date (years >= 2, so every quotient is of non-negative numbers)
    march = pc.greater(month, 2)
    shifted_year = pc.subtract(year, pc.cast(pc.invert(march), pa.int64()))
    era = pc.divide(shifted_year, 400)
    year_of_era = pc.subtract(shifted_year, pc.multiply(era, 400))
    month_from_march = pc.if_else(march, pc.subtract(month, 3), pc.add(month, 9))
    day_of_year = pc.add(pc.divide(pc.add(pc.multiply(month_from_march, 153), 2), 5), pc.subtract(day, 1))
    day_of_era = pc.add(
        pc.subtract(pc.add(pc.multiply(year_of_era, 365), pc.divide(year_of_era, 4)), pc.divide(year_of_era, 100)),
        day_of_year,
    )
    days = pc.subtract(pc.add(pc.multiply(era, 146097), day_of_era), 719468)
    seconds = pc.add(
        pc.add(pc.multiply(days, 86400), pc.multiply(hour, 3600)),
        pc.subtract(pc.add(pc.multiply(minute, 60), second), offset_seconds),
    )
    total = pc.add(pc.multiply(seconds, 1_000_000), fraction)
    result = pc.if_else(valid, total, pa.scalar(None, pa.int64()))
    naive = pc.fill_null(pc.and_(valid, pc.is_in(size, pa.array([19, 23, 26], pa.int64()))), False)
    return _combined(result), _combined(naive)


def _remainder(values: pa.Array, divisor: int) -> pa.Array:
    """values mod divisor for non-negative values (Arrow has no modulo kernel)."""
    return pc.subtract(values, pc.multiply(pc.divide(values, divisor), divisor))


def rowids(batch: SplitBatch) -> list[int]:
    """Every rowid of a batch, clean or not (for a batch that goes through Python whole)."""
    return sorted([*batch.others, *(_combined(batch.clean.column(0)).to_pylist() if batch.clean.num_rows else [])])


def rows_by_rowid(conn: Any, mapping: TableMapping, path: Path, rowids: list[int]) -> Iterator[tuple[Any, ...]]:
    """Source rows (rowid first) of the given rowids, in rowid order, read with the Python path's connection."""
    if not rowids:
        return
    columns = ", ".join(["rowid"] + [quote_sqlite(c) for c in mapping.source_columns])
    query = (
        f"SELECT {columns} FROM {quote_sqlite(mapping.source.name)} "  # noqa: S608
        "WHERE rowid IN (SELECT value FROM json_each(?)) ORDER BY rowid"
    )
    try:
        yield from conn.execute(query, ("[" + ",".join(map(str, rowids)) + "]",))
    except Exception as exc:  # sqlite3.Error
        raise SourceError(describe(path, exc)) from None
