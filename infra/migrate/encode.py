"""Rows as PostgreSQL binary COPY tuples: the bytes `run` sends, and the canonical encoding the checksums hash.

A row's content hash is md5 over its binary COPY tuple - PostgreSQL's own binary format: the field count, then per
field its length (-1 for NULL) and its type's send representation - whose first 8 bytes, as a signed 64-bit
integer, are summed over the rows of a table, so row order does not matter. In Python the tuple is framed here
from the fields psycopg's dumpers give (public API only), so hashing a row costs one md5 of bytes that are sent
anyway; the native path (:mod:`infra.migrate.columnar`) builds the same tuples from Arrow columns. Inside
PostgreSQL, :func:`row_hash_sql` rebuilds the same bytes from the stored row with the types' send functions
(textsend, int8send, jsonb_send, timestamptz_send, ...): the two agree exactly when the stored row is the row
that was sent.

A few types are stored differently from how they are sent (numeric keeps its own scale, char(n) pads, citext has
no binary format psycopg knows): those columns are hashed through a canonical text, the same on both sides.

The encoding needs no connection: the dumpers are psycopg's built-in ones plus two that take JSON text the
converters already wrote (jsonb: version byte 1, then the text; json: the text), so the worker, the helper
process and `ws migrate validate` all produce the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import abc as psycopg_abc
from psycopg import postgres, sql
from psycopg.adapt import AdaptersMap, Dumper, PyFormat, Transformer
from psycopg.pq import Format
from psycopg.types.string import BytesBinaryDumper

from infra.migrate.convert import TargetColumn

__all__ = [
    "BATCH_CHECK_VERSION",
    "BINARY_SIGNATURE",
    "BINARY_TRAILER",
    "CHECKSUM_FORMAT",
    "NULL_FIELD",
    "RowEncoder",
    "batch_check_sql",
    "batch_digest",
    "row_hash_sql",
]

# PostgreSQL's binary COPY framing (documented with COPY, "Binary Format"): the signature, flags (no OIDs) and an
# empty header extension; the trailer is a field count of -1
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
BINARY_TRAILER = b"\xff\xff"
NULL_FIELD = b"\xff\xff\xff\xff"  # a field of length -1
_pack_count = struct.Struct(">h").pack
_pack_length = struct.Struct(">i").pack

# The version of the row encoding below, recorded in the ledger next to every checksum computed with it: a sum
# made by another version (or by one that recorded none) is never compared with this one's, the source is re-read
# instead. Change it whenever a row's hash, or what the sum covers, changes. 3: a unit whose batches were checked in
# their transactions (ledger checked_rows) sums the hashes of its Python rows only; 2: every row's hash.
CHECKSUM_FORMAT = 3


class _SerializedJson(str):
    """Marker type for the dumpers below (registered on ADAPTERS; never instantiated)."""


class SerializedJsonbBinaryDumper(Dumper):
    """Binary jsonb from JSON text the converters already produced: version byte 1, then the text."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode("utf-8")


class SerializedJsonBinaryDumper(Dumper):
    """Binary json from JSON text: the text itself."""

    format = Format.BINARY
    oid = postgres.types["json"].oid

    def dump(self, obj: Any) -> bytes:
        return bytes(obj.encode("utf-8"))


# psycopg's global adapters plus the JSON-text dumpers; only lookups by type oid (what the row formatter does)
# see them, parameters still choose dumpers by Python class
ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_dumper(_SerializedJson, SerializedJsonbBinaryDumper)
ADAPTERS.register_dumper(_SerializedJson, SerializedJsonBinaryDumper)
# bytea by oid would be psycopg's DB-API Binary dumper, a Python call per value; the plain bytes one is C
ADAPTERS.register_dumper(bytes, BytesBinaryDumper)

# type -> SQL of its send representation ({c}: the column); the Python side dumps the value as that type
NATIVE_SEND: dict[str, str] = {
    "text": "textsend({c})",
    "varchar": "textsend({c}::text)",
    "name": "textsend({c}::text)",
    "int2": "int2send({c})",
    "int4": "int4send({c})",
    "int8": "int8send({c})",
    "float4": "float4send({c})",
    "float8": "float8send({c})",
    "bool": "boolsend({c})",
    "bytea": "{c}",
    "json": "json_send({c})",
    "jsonb": "jsonb_send({c})",
    "timestamptz": "timestamptz_send({c})",
    "timestamp": "timestamp_send({c})",
    "date": "date_send({c})",
    "uuid": "uuid_send({c})",
}
# types hashed through a canonical text (Python function of the converted value; SQL is textsend({c}::text))
CANONICAL_TEXT: dict[str, Callable[[Any], str]] = {
    "numeric": lambda value: format(value, "f"),
    "bpchar": lambda value: value.rstrip(" "),  # char(n)::text drops the padding
    "citext": str,
}
HASHED_TYPES = set(NATIVE_SEND) | set(CANONICAL_TEXT)
BINARY_SEND_TYPES = set(NATIVE_SEND) | {"numeric", "bpchar"}  # what binary COPY can send (not citext)
SEND_AS = {"bpchar": "text"}  # psycopg has no binary char(n) dumper; char(n) reads text's binary format
_HASH_KEY = struct.Struct(">q").unpack_from
_md5 = hashlib.md5


def _uuid_object(value: Any) -> Any:
    return None if value is None else uuid.UUID(value)


def _transformer(types: list[str]) -> psycopg_abc.Transformer:
    tx = Transformer(ADAPTERS)
    tx.set_dumper_types([ADAPTERS.types.get_oid(t) for t in types], Format.BINARY)
    return tx


def format_row_binary(values: list[Any], tx: psycopg_abc.Transformer, out: bytearray) -> None:
    """Append one row's binary COPY tuple to ``out``: the field count, then each field's length (-1 for NULL) and
    its binary send representation, dumped by psycopg's public :meth:`Transformer.dump_sequence` with the dumpers
    chosen by the column types (no private psycopg API)."""
    fields = tx.dump_sequence(
        values, _BINARY_FORMATS[len(values)] if len(values) < 256 else [PyFormat.BINARY] * len(values)
    )
    out += _pack_count(len(fields))
    for field in fields:
        if field is None:
            out += NULL_FIELD
        else:
            out += _pack_length(len(field))
            out += field


_BINARY_FORMATS = [[PyFormat.BINARY] * n for n in range(256)]


class RowEncoder:
    """Binary COPY tuples and content hashes of one table's converted rows (agent_id, source_rowid, columns...).

    ``binary``: the rows are sent with binary COPY (:meth:`write` formats them); otherwise they are sent as text
    and only hashed (:meth:`row_hash`).
    """

    def __init__(self, columns: list[TargetColumn], *, binary: bool) -> None:
        kinds = [c.type_name for c in columns]
        unknown = [k for k in kinds if k not in HASHED_TYPES]
        if unknown:
            raise ValueError(f"no canonical encoding for column type(s) {', '.join(sorted(set(unknown)))}")
        self.binary = binary and all(k in BINARY_SEND_TYPES for k in kinds)
        # per-value fixes, by index in the full row (0 agent_id, 1 source_rowid)
        self.send_fix = [(i + 2, _uuid_object) for i, k in enumerate(kinds) if k == "uuid"]
        canonical = [(i + 2, CANONICAL_TEXT[k]) for i, k in enumerate(kinds) if k in CANONICAL_TEXT]
        self.hash_fix = [(i, lambda v, f=f: None if v is None else f(v)) for i, f in canonical]
        self.send_tx = _transformer(["text", "int8", *(SEND_AS.get(k, k) for k in kinds)]) if self.binary else None
        hash_types = ["text" if k in CANONICAL_TEXT else k for k in kinds]
        self.hash_tx = _transformer(["text", "int8", *hash_types])
        self.same_bytes = self.binary and not canonical  # the hashed tuple is the sent tuple

    def row_hash(self, values: list[Any]) -> int:
        """The content hash of one converted row (the list is not changed)."""
        out = bytearray()
        if not self.send_fix and not self.hash_fix:
            format_row_binary(values, self.hash_tx, out)
            return int(_HASH_KEY(_md5(out).digest())[0])
        row = list(values)
        for index, fix in self.send_fix:
            row[index] = fix(row[index])
        for index, fix in self.hash_fix:
            row[index] = fix(row[index])
        format_row_binary(row, self.hash_tx, out)
        return int(_HASH_KEY(_md5(out).digest())[0])

    def writer(self, out: bytearray, hashed: bool = True) -> Callable[[list[Any]], int]:
        """A function that appends one converted row's binary COPY tuple to ``out`` and returns its content hash
        (0 when not ``hashed``). The row list is changed in place (uuid text becomes uuid objects)."""
        assert self.send_tx is not None, "writer() needs a table sent with binary COPY"
        send_tx, send_fix, same = self.send_tx, self.send_fix, self.same_bytes
        row_hash = self.row_hash

        if same and hashed and not send_fix:

            def write(values: list[Any]) -> int:
                one = bytearray()
                format_row_binary(values, send_tx, one)
                out.extend(one)
                return int(_HASH_KEY(_md5(one).digest())[0])

            return write
        if not hashed and not send_fix:

            def write_unhashed(values: list[Any]) -> int:
                format_row_binary(values, send_tx, out)
                return 0

            return write_unhashed

        def write_general(values: list[Any]) -> int:
            checksum = row_hash(values) if hashed else 0
            for index, fix in send_fix:
                values[index] = fix(values[index])
            format_row_binary(values, send_tx, out)
            return checksum

        return write_general


def row_hash_sql(columns: list[TargetColumn]) -> sql.Composed:
    """SQL of a stored row's content hash (what :meth:`RowEncoder.row_hash` gives for the row that was sent)."""
    parts = [("agent_id", "text"), ("source_rowid", "int8")] + [(c.name, c.type_name) for c in columns]
    return _tuple_hash_sql([(sql.Identifier(name), kind) for name, kind in parts])


def _tuple_hash_sql(fields: Sequence[tuple[sql.Composable, str]]) -> sql.Composed:
    """The content hash of a row from its fields (expression, type): md5 of its binary COPY tuple, rebuilt with
    the types' send functions, as a signed 64-bit integer."""
    framed: list[sql.Composable] = [sql.SQL("int2send({}::int2)").format(sql.Literal(len(fields)))]
    for value, kind in fields:
        send = sql.SQL(NATIVE_SEND.get(kind, "textsend({c}::text)")).format(c=value)
        framed.append(sql.SQL("coalesce(int4send(length({v})) || {v}, '\\xffffffff'::bytea)").format(v=send))
    return sql.SQL("('x' || left(md5({}), 16))::bit(64)::bigint").format(sql.SQL(" || ").join(framed))


# The version of the in-batch check below (recorded with each validation it makes): change it whenever what it
# compares changes. 3: the native rows' values compared through record_send (one C call per row) and no content
# hash per native row (the ledger counts checked rows instead); 2: the tuples rebuilt field by field with the send
# functions, jsonb values compared through one parse of the sent array; 1: every sent text parsed on its own.
BATCH_CHECK_VERSION = 3


def type_oid(type_name: str) -> int:
    """The OID of a built-in type by its name (pg_type.typname): what record_send writes before a field of that
    type (the check casts every column to its base type, so a domain's values are written as its base type's)."""
    return postgres.types[type_name].oid


def batch_digest(data: bytes | memoryview) -> bytes:
    """The digest :func:`batch_check_sql` computes in PostgreSQL, of the compared rows' bytes (one C call)."""
    return hashlib.sha256(data).digest()


def batch_check_sql(target: sql.Composable, columns: list[TargetColumn], *, count: str = "") -> sql.Composed:
    """One pass of PostgreSQL over an agent's stored rows with ``after < source_rowid <= last`` (named parameters
    ``agent``, ``after``, ``last``, ``others``: an array of rowids, and for each jsonb column ``docs0``,
    ``docs1``...: the native rows' non-NULL source texts as sent, in rowid order, as one JSON array). It returns:

    * over the rows not in ``others`` (the native rows), in rowid order, the sha256 of each row's
      ``record_send(ROW(agent_id, source_rowid, <every column but jsonb ones, cast to its base type>,
      <for each jsonb column: whether it is NULL>))`` concatenated: PostgreSQL's binary form of a record (the
      field count, then per field its type OID, its length or -1 and its send representation), one C call per
      row; :func:`infra.migrate.columnar.encode` builds the same bytes from the source batch with Arrow, and
      :func:`batch_digest` hashes them;
    * whether each jsonb column's non-NULL stored values, in rowid order, are the sent texts parsed again by
      PostgreSQL (the sent array is parsed once as one jsonb document and printed in jsonb's canonical text,
      ``[v1, v2, ...]``, which is compared byte for byte with the stored values' canonical texts joined the same
      way: a value's text never holds a top-level ``", "``, so equal texts mean equal values one by one);
    * the sum of the content hashes (:func:`row_hash_sql`) of the rows in ``others`` (those went through Python,
      which hashed the tuples it sent);
    * with ``count`` "table", the agent's rows in the whole target table; with "outside", the same number counted
      as the rows this pass reads plus the agent's rows outside ``after < source_rowid <= last`` (two index
      lookups that find nothing when the batch is all the agent has: a table's only batch, where "table" would
      read its rows a second time).

    The rows are read in rowid order (``ORDER BY`` in the subquery: the primary key's index) and the aggregates
    take them in that order through a projection fenced by ``OFFSET 0``, so no aggregate sorts its input again.
    The subquery's columns are named by position (``c0``, ``c1``...), so no target column's name can clash."""
    parts = [("agent_id", "text"), ("source_rowid", "int8")] + [(c.name, c.type_name) for c in columns]
    inner = [
        sql.SQL("r.{} AS {}").format(sql.Identifier(name), sql.Identifier(f"c{i}")) for i, (name, _) in enumerate(parts)
    ]
    fields = [(sql.Identifier(f"c{i}"), kind) for i, (_, kind) in enumerate(parts)]
    compared: list[sql.Composable] = []
    documents: list[sql.Identifier] = []
    for value, kind in fields:
        if kind == "jsonb":
            documents.append(value)
        else:
            compared.append(sql.SQL("{}::pg_catalog.{}").format(value, sql.Identifier(kind)))
    compared += [sql.SQL("{} IS NULL").format(d) for d in documents]
    outputs: list[sql.Composable] = [
        sql.SQL("sha256(string_agg(record_send(ROW({})), ''::bytea) FILTER (WHERE NOT other))").format(
            sql.SQL(", ").join(compared)
        )
    ]
    checks: list[sql.Composable] = []
    for k, doc in enumerate(documents):
        # jsonb_send: version byte 1, then jsonb's text; substr(.., 2): the stored value's text
        checks.append(
            sql.SQL(
                "jsonb_send(convert_from({p}, 'UTF8')::jsonb) = '\\x015b'::bytea || coalesce(string_agg("
                "substr(jsonb_send({d}), 2), '\\x2c20'::bytea) FILTER (WHERE NOT other AND {d} IS NOT NULL), "
                "''::bytea) || '\\x5d'::bytea"
            ).format(p=sql.Placeholder(f"docs{k}"), d=doc)
        )
    outputs.append(sql.SQL(" AND ").join(checks) if checks else sql.SQL("true"))
    outputs.append(sql.SQL("coalesce(sum({}) FILTER (WHERE other), 0)").format(_tuple_hash_sql(fields)))
    agent = sql.Placeholder("agent")
    if count == "table":
        outputs.append(sql.SQL("(SELECT count(*) FROM {} WHERE agent_id = {})").format(target, agent))
    elif count == "outside":
        outside = sql.SQL("(SELECT count(*) FROM {t} WHERE agent_id = {a} AND source_rowid {op} {bound})")
        outputs.append(
            sql.SQL("count(*) + {} + {}").format(
                outside.format(t=target, a=agent, op=sql.SQL("<="), bound=sql.Placeholder("after")),
                outside.format(t=target, a=agent, op=sql.SQL(">"), bound=sql.Placeholder("last")),
            )
        )
    return sql.SQL(
        "SELECT {outputs} FROM (SELECT {inner}, r.source_rowid = ANY({others}) AS other FROM {target} AS r "
        "WHERE r.agent_id = {agent} AND r.source_rowid > {after} AND r.source_rowid <= {last} "
        "ORDER BY r.source_rowid OFFSET 0) s"
    ).format(
        outputs=sql.SQL(", ").join(outputs),
        inner=sql.SQL(", ").join(inner),
        target=target,
        others=sql.Placeholder("others"),
        agent=sql.Placeholder("agent"),
        after=sql.Placeholder("after"),
        last=sql.Placeholder("last"),
    )
