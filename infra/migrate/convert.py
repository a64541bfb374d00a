"""Value conversion from SQLite storage classes to PostgreSQL column types, by named, counted rules.

Every source value takes exactly one of three paths:

* it loads as-is (the storage class matches the target type);
* a named rule converts it (``RULES``); the rule is counted, and when the conversion is lossy the raw source
  value is kept byte for byte in ``ws_migrate.raw_values`` (the side store), so nothing is lost;
* it cannot be represented: :class:`Rejected` is raised with a reason (``REJECT_REASONS``) and the whole row goes
  to ``ws_migrate.rejects`` with its raw value.

The content checksums hash the converted rows' binary COPY tuples (:mod:`infra.migrate.encode`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

RULES: dict[str, str] = {
    "nul-removed": "NUL characters removed from text (PostgreSQL text cannot hold them); raw value kept",
    "invalid-utf8-replaced": "text that is not valid UTF-8 decoded with U+FFFD replacements; raw bytes kept",
    "integer-as-text": "an INTEGER value in a text column stored as its decimal text (exact)",
    "real-as-text": "a REAL value in a text column stored as its shortest exact decimal text",
    "blob-as-text": "a BLOB holding valid UTF-8 in a text column stored as that text (exact)",
    "text-as-bytes": "a TEXT value in a bytea column stored as its UTF-8 bytes (exact)",
    "number-as-bytes": "a number in a bytea column stored as the bytes of its decimal text",
    "text-to-integer": "integer text (e.g. '42') in an integer column parsed (exact)",
    "real-to-integer": "an integral REAL (e.g. 3.0) in an integer column stored as an integer (exact)",
    "integer-to-real": "an INTEGER in a floating-point column stored as a double",
    "text-to-number": "numeric text in a numeric or floating-point column parsed",
    "number-to-boolean": "0/1 in a boolean column stored as false/true",
    "text-to-boolean": "true/false/t/f/yes/no text in a boolean column parsed",
    "epoch-seconds-to-timestamptz": "a Unix epoch in seconds (number or numeric text) stored as a UTC timestamp",
    "epoch-milliseconds-to-timestamptz": "a Unix epoch in milliseconds (|value| > 1e11) stored as a UTC timestamp",
    "naive-time-as-utc": "an ISO date-time without a UTC offset read as UTC",
    "number-as-json": "a number in a JSON column stored as a JSON number",
    "json-nul-removed": "\\u0000 escapes removed from JSON strings (jsonb rejects them); raw value kept",
    "json-surrogate-replaced": "lone UTF-16 surrogate escapes in JSON replaced by U+FFFD (jsonb rejects them); raw kept",
    "json-duplicate-keys": "a JSON object with duplicate keys keeps the last (jsonb semantics); raw value kept",
    "rounded-to-column-precision": "a value more precise than its column (timestamp(p), numeric(p,s), real, an "
    "integer beyond 2^53 in a double) rounded as PostgreSQL rounds it; raw value kept",
    "rowid-alias": "an INTEGER PRIMARY KEY column is the rowid and is stored as source_rowid (exact)",
    "sqlite-internal-skipped": "SQLite's own bookkeeping tables (sqlite_sequence, sqlite_stat*) are not data",
    "virtual-shadow-skipped": "shadow tables of a virtual (FTS/R-tree) table hold its index; the table is migrated",
}

REJECT_REASONS: dict[str, str] = {
    "null-in-not-null": "NULL in a column the target declares NOT NULL",
    "integer-out-of-range": "integer outside the target column's range",
    "number-out-of-range": "number with more integer digits than the target numeric(p,s) column (or numeric) holds",
    "not-an-integer": "value in an integer column that is not an integer",
    "not-a-number": "value in a numeric column that is not a number",
    "not-a-boolean": "value in a boolean column that is not a boolean",
    "invalid-json": "text in a JSON column that PostgreSQL cannot parse as JSON",
    "unparseable-timestamp": "value in a date/time column that is neither ISO 8601 text nor a Unix epoch",
    "timestamp-out-of-range": "date/time outside the range PostgreSQL and Python share",
    "invalid-uuid": "value in a uuid column that is not a UUID",
    "too-long": "text longer than the target column's declared length",
    "blob-not-convertible": "a BLOB in a column whose type cannot hold bytes",
}

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
INT_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1), "int8": (-(2**63), 2**63 - 1)}
TEXT_TYPES = {"text", "varchar", "bpchar", "name", "citext"}
TIME_TYPES = {"timestamptz", "timestamp"}
SUPPORTED_TYPES = (
    TEXT_TYPES
    | TIME_TYPES
    | set(INT_RANGES)
    | {
        "bytea",
        "float4",
        "float8",
        "numeric",
        "bool",
        "json",
        "jsonb",
        "date",
        "uuid",
    }
)


class InvalidUtf8(bytes):
    """A SQLite TEXT value whose bytes are not valid UTF-8 (kept apart from BLOBs, which are plain bytes)."""


def text_factory(raw: bytes) -> str | InvalidUtf8:
    """sqlite3 text factory: decode UTF-8, or keep the bytes marked as invalid text (never raises)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidUtf8(raw)


class Rejected(Exception):
    """The value cannot be stored in the target column; the row goes to the reject table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TargetColumn:
    name: str
    type_name: str  # pg_type.typname, e.g. text, int4, jsonb, timestamptz
    not_null: bool = False
    has_default: bool = False
    max_length: int | None = None  # varchar(n) / char(n)
    precision: int | None = None  # numeric(p, s): p
    scale: int | None = None  # numeric(p, s): s; timestamp(p) / timestamptz(p) with p < 6: p


# A note is (rule, raw bytes to keep or None). Converters append notes and return the converted value.
Notes = list[tuple[str, bytes | None]]
Converter = Callable[[Any, Notes], Any]


def storage_class(value: Any) -> str:
    """SQLite's typeof() of a fetched value."""
    if value is None:
        return "null"
    if isinstance(value, InvalidUtf8) or isinstance(value, str):
        return "text"
    if isinstance(value, bytes):
        return "blob"
    if isinstance(value, int):
        return "integer"
    return "real"


def raw_bytes(value: Any) -> bytes | None:
    """The source value as bytes, exactly: text as UTF-8 (or its invalid bytes), numbers as decimal text."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


# --------------------------------------------------------------------------------------------- converters


def _clean_text(value: str, notes: Notes, raw: bytes | None) -> str:
    if "\x00" in value:
        notes.append(("nul-removed", raw if raw is not None else value.encode("utf-8")))
        return value.replace("\x00", "")
    return value


def _to_text(value: Any, notes: Notes) -> str:
    if isinstance(value, str):
        return _clean_text(value, notes, None)
    if isinstance(value, bytes):
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            notes.append(("invalid-utf8-replaced", raw))
            return raw.decode("utf-8", "replace").replace("\x00", "")
        if not isinstance(value, InvalidUtf8):
            notes.append(("blob-as-text", None))
        return _clean_text(text, notes, raw)
    if isinstance(value, bool | int):
        notes.append(("integer-as-text", None))
        return str(value)
    notes.append(("real-as-text", None))
    return repr(value)


def _text_converter(column: TargetColumn) -> Converter:
    limit = column.max_length

    def convert(value: Any, notes: Notes) -> Any:
        if value is None:
            return None
        text = value if value.__class__ is str and "\x00" not in value else _to_text(value, notes)
        if limit is not None and len(text) > limit:
            raise Rejected("too-long")
        return text

    return convert


def _bytea(value: Any, notes: Notes) -> Any:
    if value is None or value.__class__ is bytes:
        return value
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        notes.append(("text-as-bytes", None))
        return value.encode("utf-8")
    notes.append(("number-as-bytes", None))
    return raw_bytes(value)


def _integer_converter(type_name: str) -> Converter:
    low, high = INT_RANGES[type_name]

    def convert(value: Any, notes: Notes) -> Any:
        if value is None:
            return None
        if value.__class__ is int:
            result = value
        elif isinstance(value, float):
            if not value.is_integer():
                raise Rejected("not-an-integer")
            notes.append(("real-to-integer", None))
            result = int(value)
        elif isinstance(value, str):
            try:
                result = int(value.strip())
            except ValueError:
                raise Rejected("not-an-integer") from None
            notes.append(("text-to-integer", None))
        elif isinstance(value, int):
            result = int(value)
        else:
            raise Rejected("blob-not-convertible" if not isinstance(value, InvalidUtf8) else "not-an-integer")
        if not low <= result <= high:
            raise Rejected("integer-out-of-range")
        return result

    return convert


def _float_converter(type_name: str) -> Converter:
    single = type_name == "float4"

    def convert(value: Any, notes: Notes) -> Any:
        if value is None:
            return None
        if value.__class__ is float:
            result = value
            if not single:
                return result
        elif isinstance(value, int):
            notes.append(("integer-to-real", None))
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise Rejected("not-a-number") from None
            notes.append(("text-to-number", None))
        else:
            raise Rejected("blob-not-convertible")
        if single:
            try:
                result = struct.unpack(">f", struct.pack(">f", result))[0]
            except OverflowError:
                raise Rejected("not-a-number") from None
        if result != value and result == result and not isinstance(value, str):  # NaN is not rounded
            notes.append(("rounded-to-column-precision", raw_bytes(value)))
        return result

    return convert


def _decimal(value: Any, notes: Notes) -> Decimal:
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Rejected("not-a-number")
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise Rejected("not-a-number") from None
        if not result.is_finite():
            raise Rejected("not-a-number")
        notes.append(("text-to-number", None))
        return result
    raise Rejected("blob-not-convertible")


# exact arithmetic for rounding to a numeric(p, s) scale (p <= 1000); ties away from zero, as PostgreSQL rounds
_NUMERIC_CONTEXT = Context(prec=2000, rounding=ROUND_HALF_UP, Emin=-999999, Emax=999999)


def _numeric_converter(precision: int | None, scale: int | None) -> Converter:
    """numeric, or numeric(p, s): rounded to s decimals as PostgreSQL does (a rule when that changes the value),
    and rejected when more integer digits remain than p - s allows (PostgreSQL would refuse the whole batch)."""
    step = Decimal(1).scaleb(-scale) if scale is not None else None

    def convert(value: Any, notes: Notes) -> Any:
        if value is None:
            return None
        result = _decimal(value, notes)
        if not result:
            result = abs(result)  # numeric has no negative zero: -0.0 is stored (and printed) as 0.0
        elif not -16383 <= result.adjusted() <= 131071:
            raise Rejected("number-out-of-range")  # beyond any PostgreSQL numeric
        if step is None or precision is None:
            return result
        digits = precision - (scale or 0)  # integer digits numeric(p, s) holds
        if result and result.adjusted() >= digits:
            raise Rejected("number-out-of-range")
        rounded = result.quantize(step, context=_NUMERIC_CONTEXT)  # the exponent -s: printed with s decimals
        if rounded and rounded.adjusted() >= digits:  # rounding reached the next power of ten (9.995 -> 10.00)
            raise Rejected("number-out-of-range")
        if rounded != result:
            notes.append(("rounded-to-column-precision", raw_bytes(value)))
        return abs(rounded) if not rounded else rounded  # -0.004 rounds to 0.00, not -0.00

    return convert


TRUE_TEXT = {"true", "t", "yes", "y", "on", "1"}
FALSE_TEXT = {"false", "f", "no", "n", "off", "0"}


def _boolean(value: Any, notes: Notes) -> Any:
    if value is None:
        return None
    if isinstance(value, int | float) and value in (0, 1):
        notes.append(("number-to-boolean", None))
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_TEXT or lowered in FALSE_TEXT:
            notes.append(("text-to-boolean", None))
            return lowered in TRUE_TEXT
    raise Rejected("not-a-boolean")


EPOCH_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _from_epoch(number: float | int, notes: Notes) -> dt.datetime:
    try:
        if abs(number) > 1e11:
            notes.append(("epoch-milliseconds-to-timestamptz", None))
            if isinstance(number, int):
                return EPOCH + dt.timedelta(milliseconds=number)
            return EPOCH + dt.timedelta(microseconds=round(number * 1000))
        notes.append(("epoch-seconds-to-timestamptz", None))
        if isinstance(number, int):
            return EPOCH + dt.timedelta(seconds=number)
        return EPOCH + dt.timedelta(microseconds=round(number * 1_000_000))
    except (OverflowError, ValueError):
        raise Rejected("timestamp-out-of-range") from None


def parse_timestamp(value: Any, notes: Notes) -> dt.datetime:
    """A timezone-aware UTC datetime from ISO 8601 text or a Unix epoch (seconds or milliseconds)."""
    if isinstance(value, bool):
        raise Rejected("unparseable-timestamp")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise Rejected("unparseable-timestamp")
        return _from_epoch(value, notes)
    if not isinstance(value, str):
        raise Rejected("unparseable-timestamp")
    text = value.strip()
    looks_iso = len(text) > 10 and text[4] == "-"  # the common case, ISO date-time text: no regex needed
    if not looks_iso and EPOCH_TEXT.match(text):
        number: float | int = int(text) if text.lstrip("+-").isdigit() else float(text)
        return _from_epoch(number, notes)
    return _from_iso_text(text, notes)


def _from_iso_text(text: str, notes: Notes) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Rejected("unparseable-timestamp") from None
    if parsed.tzinfo is None:
        notes.append(("naive-time-as-utc", None))
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise Rejected("timestamp-out-of-range") from None


PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL counts microseconds from here
ONE_MICROSECOND = dt.timedelta(microseconds=1)


def round_like_postgresql(moment: dt.datetime, digits: int) -> dt.datetime:
    """A UTC time rounded to ``digits`` fractional-second digits exactly as timestamp(p) input is
    (AdjustTimestampForTypmod): halves away from zero, counted from 2000-01-01."""
    unit = 10 ** (6 - digits)
    micros = (moment - PG_EPOCH) // ONE_MICROSECOND
    half = unit // 2
    micros = (micros + half) // unit * unit if micros >= 0 else -((-micros + half) // unit * unit)
    return PG_EPOCH + dt.timedelta(microseconds=micros)


def _timestamp_converter(type_name: str, digits: int | None = None) -> Converter:
    """timestamp(tz); with ``digits`` (timestamp(p), p < 6, e.g. Prisma's DateTime is timestamp(3)) rounded to
    them as PostgreSQL rounds, a rule with the raw value kept when that changes it."""
    aware = type_name == "timestamptz"
    unit = 10 ** (6 - digits) if digits is not None else 1

    def convert(value: Any, notes: Notes) -> Any:
        if value is None:
            return None
        result = parse_timestamp(value, notes)
        if result.microsecond % unit:
            try:
                result = round_like_postgresql(result, digits or 0)
            except OverflowError:
                raise Rejected("timestamp-out-of-range") from None
            notes.append(("rounded-to-column-precision", raw_bytes(value)))
        return result if aware else result.replace(tzinfo=None)

    return convert


def _date(value: Any, notes: Notes) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    return parse_timestamp(value, notes).date()


def _uuid(value: Any, notes: Notes) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise Rejected("invalid-uuid") from None
    if isinstance(value, bytes) and len(value) == 16 and not isinstance(value, InvalidUtf8):
        return str(uuid.UUID(bytes=bytes(value)))
    raise Rejected("invalid-uuid")


# ------------------------------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not valid JSON")


class _Dedup(dict[str, Any]):
    duplicated = False


_PARSE = threading.local()  # .duplicates: set by _pairs while this thread parses one JSON text


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        dedup = _Dedup(result)
        dedup.duplicated = True
        _PARSE.duplicates = True
        return dedup
    return result


def _clean_json(node: Any, found: set[str]) -> Any:
    if isinstance(node, str):
        if "\x00" in node:
            found.add("json-nul-removed")
            node = node.replace("\x00", "")
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            found.add("json-surrogate-replaced")
            node = _surrogate_free(node)
        return node
    if isinstance(node, list):
        return [_clean_json(item, found) for item in node]
    if isinstance(node, dict):
        if getattr(node, "duplicated", False):
            found.add("json-duplicate-keys")
        return {_clean_json(k, found): _clean_json(v, found) for k, v in node.items()}
    return node


def _surrogate_free(text: str) -> str:
    """Replace lone UTF-16 surrogates (from JSON escapes like \\ud800) by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


_encode_string = json.encoder.encode_basestring  # escapes exactly as json.dumps(ensure_ascii=False)


def _key_order(key: str) -> tuple[int, str]:
    # jsonb orders keys by UTF-8 length, then bytes; UTF-8 byte order is code point order, so str order serves
    return (len(key) if key.isascii() else len(key.encode("utf-8")), key)


# objects of one table tend to share their keys: per key tuple, the keys in jsonb order with their written form
_LAYOUTS: dict[tuple[str, ...], list[tuple[str, str]]] = {}


def _layout(node: dict[str, Any]) -> list[tuple[str, str]]:
    keys = tuple(node)
    found = _LAYOUTS.get(keys)
    if found is None:
        found = [(key, _encode_string(key) + ": ") for key in sorted(keys, key=_key_order)]
        if len(_LAYOUTS) < 4096:
            _LAYOUTS[keys] = found
    return found


def _leaf_or_nested(value: Any) -> str:
    cls = value.__class__
    if cls is str:
        return _encode_string(value)
    if cls is int:
        return str(value)
    return jsonb_text(value)


def jsonb_text(node: Any) -> str:
    """The text PostgreSQL's jsonb output gives for a parsed JSON value (jsonb_out), reproduced exactly.

    Object keys sorted by UTF-8 length then bytes, ", " and ": " separators, numbers as numeric_out prints
    them, strings escaped as escape_json does (which matches json.dumps with ensure_ascii=False).
    """
    cls = node.__class__
    if cls is str:
        return _encode_string(node)
    if cls is dict or isinstance(node, dict):
        if not node:
            return "{}"
        return "{" + ", ".join([written + _leaf_or_nested(node[key]) for key, written in _layout(node)]) + "}"
    if cls is int:
        return str(node)
    if cls is Decimal:
        if node.is_zero():
            node = abs(node)
        return format(node, "f")
    if node is None:
        return "null"
    if node is True:
        return "true"
    if node is False:
        return "false"
    if cls is list:
        return "[" + ", ".join([_leaf_or_nested(item) for item in node]) + "]"
    raise TypeError(f"not a JSON value: {cls.__name__}")


def _json_number(text: str) -> Decimal:
    number = Decimal(text)
    if not -16383 <= number.adjusted() <= 131071:  # beyond PostgreSQL numeric: jsonb would refuse the batch
        raise ValueError(f"JSON number {text[:20]}... is out of PostgreSQL's numeric range")
    return number


_DECODER = json.JSONDecoder(parse_float=_json_number, parse_constant=_reject_constant, object_pairs_hook=_pairs)


def _parse_json(text: str) -> Any:
    return _DECODER.decode(text)  # one decoder for all (json.loads with hooks would build one per call)


def _json_converter(type_name: str, canonical: bool = True) -> Converter:
    """``canonical``: jsonb values come back as PostgreSQL prints them (what the content hash needs); otherwise
    JSON that loads as-is comes back as the source text, which PostgreSQL parses to the same jsonb."""
    binary = type_name == "jsonb"

    def convert(value: Any, notes: Notes) -> Any:
        if value is None:
            return None
        if isinstance(value, bool | int):
            notes.append(("number-as-json", None))
            return str(int(value))
        if isinstance(value, float):
            if not math.isfinite(value):
                raise Rejected("invalid-json")
            notes.append(("number-as-json", None))
            return jsonb_text(Decimal(repr(value))) if binary else repr(value)
        raw: bytes | None = None
        if isinstance(value, bytes):
            raw = bytes(value)
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise Rejected("invalid-json") from None
            if not isinstance(value, InvalidUtf8):
                notes.append(("blob-as-text", None))
        _PARSE.duplicates = False
        try:
            parsed = _parse_json(value)
        except (ValueError, RecursionError):
            raise Rejected("invalid-json") from None
        if not binary:
            if "\x00" in value:
                raise Rejected("invalid-json")
            return value
        if "\\u" not in value and not _PARSE.duplicates:
            # fast path: no escapes that jsonb refuses, no duplicate keys
            return jsonb_text(parsed) if canonical else value
        found: set[str] = set()
        cleaned = _clean_json(parsed, found)
        for rule in sorted(found):
            notes.append((rule, raw if raw is not None else value.encode("utf-8", "surrogatepass")))
        try:
            return jsonb_text(cleaned)
        except UnicodeEncodeError:
            raise Rejected("invalid-json") from None

    return convert


def converter_for(column: TargetColumn, *, canonical_json: bool = True) -> Converter:
    """The converter of one target column (its NOT NULL check included); ``canonical_json``: see
    :func:`_json_converter`."""
    kind = column.type_name
    base: Converter
    if kind in TEXT_TYPES:
        base = _text_converter(column)
    elif kind == "bytea":
        base = _bytea
    elif kind in INT_RANGES:
        base = _integer_converter(kind)
    elif kind in ("float4", "float8"):
        base = _float_converter(kind)
    elif kind == "numeric":
        base = _numeric_converter(column.precision, column.scale)
    elif kind == "bool":
        base = _boolean
    elif kind in ("json", "jsonb"):
        base = _json_converter(kind, canonical_json)
    elif kind in TIME_TYPES:
        base = _timestamp_converter(kind, column.scale)
    elif kind == "date":
        base = _date
    elif kind == "uuid":
        base = _uuid
    else:
        raise ValueError(f"column {column.name}: type {kind} is not supported")
    if not column.not_null:
        return base

    def not_null(value: Any, notes: Notes) -> Any:
        if value is None:
            raise Rejected("null-in-not-null")
        return base(value, notes)

    return not_null
