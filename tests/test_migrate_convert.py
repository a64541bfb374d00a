"""Unit tests of infra.migrate.convert: the named rules, rejects and value conversions, without a database."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from infra.migrate.convert import (
    REJECT_REASONS,
    RULES,
    SUPPORTED_TYPES,
    InvalidUtf8,
    Notes,
    Rejected,
    TargetColumn,
    converter_for,
    jsonb_text,
    parse_timestamp,
    raw_bytes,
    round_like_postgresql,
    storage_class,
    text_factory,
)

UTC = dt.UTC


def convert(type_name: str, value: Any, **column: Any) -> tuple[Any, Notes]:
    """Convert one value into a column of ``type_name``; returns the value and the notes (rule, raw kept)."""
    notes: Notes = []
    result = converter_for(TargetColumn("c", type_name, **column))(value, notes)
    return result, notes


def rejected(type_name: str, value: Any, **column: Any) -> str:
    with pytest.raises(Rejected) as caught:
        convert(type_name, value, **column)
    assert caught.value.reason in REJECT_REASONS
    return caught.value.reason


def rules(notes: Notes) -> list[str]:
    names = [rule for rule, _raw in notes]
    assert all(name in RULES for name in names), names
    return names


# ------------------------------------------------------------------------------------------ storage classes


def test_text_factory_keeps_invalid_utf8_apart_from_blobs() -> None:
    assert text_factory("é".encode()) == "é"
    bad = text_factory(b"caf\xe9")
    assert isinstance(bad, InvalidUtf8) and bytes(bad) == b"caf\xe9"
    assert [storage_class(v) for v in (None, "t", bad, b"b", 1, True, 1.5)] == [
        "null",
        "text",
        "text",
        "blob",
        "integer",
        "integer",
        "real",
    ]


def test_raw_bytes_are_the_source_value_exactly() -> None:
    assert raw_bytes(None) is None
    assert raw_bytes("é\x00") == b"\xc3\xa9\x00"
    assert raw_bytes(InvalidUtf8(b"\xff")) == b"\xff"
    assert raw_bytes(42) == b"42" and raw_bytes(0.1) == b"0.1" and raw_bytes(1e300) == b"1e+300"


# ------------------------------------------------------------------------------------------------- text


def test_text_loads_as_is_or_by_a_named_rule() -> None:
    assert convert("text", "plain") == ("plain", [])
    assert convert("text", None) == (None, [])
    value, notes = convert("text", "a\x00b")
    assert value == "ab" and notes == [("nul-removed", b"a\x00b")]
    value, notes = convert("text", InvalidUtf8(b"caf\xe9\x00!"))
    assert value == "caf\ufffd!" and notes == [("invalid-utf8-replaced", b"caf\xe9\x00!")]
    assert convert("text", b"utf-8 blob") == ("utf-8 blob", [("blob-as-text", None)])
    assert convert("text", 42) == ("42", [("integer-as-text", None)])
    assert convert("text", 3.5) == ("3.5", [("real-as-text", None)])
    assert convert("text", 0.1) == ("0.1", [("real-as-text", None)])  # shortest exact decimal text


def test_varchar_counts_characters_not_bytes() -> None:
    assert convert("varchar", "日本語", max_length=3) == ("日本語", [])
    assert rejected("varchar", "abcd", max_length=3) == "too-long"


def test_not_null_rejects_null_in_every_type() -> None:
    for type_name in sorted(SUPPORTED_TYPES):
        assert rejected(type_name, None, not_null=True) == "null-in-not-null", type_name
        assert convert(type_name, None) == (None, []), type_name


# ---------------------------------------------------------------------------------------------- numbers


def test_integers_in_range_or_rejected() -> None:
    assert convert("int4", 7) == (7, [])
    assert convert("int4", "12") == (12, [("text-to-integer", None)])
    assert convert("int4", " -3 ") == (-3, [("text-to-integer", None)])
    assert convert("int8", 7.0) == (7, [("real-to-integer", None)])
    assert convert("int2", True) == (1, [])
    assert rejected("int4", 2**31) == "integer-out-of-range"
    assert rejected("int2", -(2**15) - 1) == "integer-out-of-range"
    assert convert("int8", -(2**63)) == (-(2**63), [])
    assert rejected("int4", 7.5) == "not-an-integer"
    assert rejected("int4", "seven") == "not-an-integer"
    assert rejected("int4", b"\x01") == "blob-not-convertible"
    assert rejected("int4", InvalidUtf8(b"\xff")) == "not-an-integer"


def test_floats_round_as_postgresql_and_keep_the_raw_value() -> None:
    assert convert("float8", 0.1) == (0.1, [])
    assert convert("float8", 3) == (3.0, [("integer-to-real", None)])
    value, notes = convert("float8", 2**53 + 1)
    assert value == float(2**53) and rules(notes) == ["integer-to-real", "rounded-to-column-precision"]
    assert notes[1][1] == str(2**53 + 1).encode()
    value, notes = convert("float4", 0.1)
    assert value == pytest.approx(0.1, rel=1e-7) and value != 0.1
    assert notes == [("rounded-to-column-precision", b"0.1")]
    assert convert("float4", 0.5) == (0.5, [])
    assert convert("float8", "1e3") == (1000.0, [("text-to-number", None)])
    assert rejected("float4", 1e300) == "not-a-number"
    assert rejected("float8", "x") == "not-a-number"
    assert rejected("float8", b"\x00") == "blob-not-convertible"
    value, notes = convert("float8", float("nan"))
    assert value != value and notes == []


def test_numeric_rounds_half_away_from_zero_to_its_scale() -> None:
    assert convert("numeric", 1.5) == (Decimal("1.5"), [])
    assert convert("numeric", "2.50") == (Decimal("2.50"), [("text-to-number", None)])
    assert convert("numeric", -0.0) == (Decimal("0.0"), [])
    value, notes = convert("numeric", 1.005, precision=6, scale=2)
    assert str(value) == "1.01" and notes == [("rounded-to-column-precision", b"1.005")]
    value, notes = convert("numeric", "-0.004", precision=6, scale=2)
    assert str(value) == "0.00" and rules(notes) == ["text-to-number", "rounded-to-column-precision"]
    value, _ = convert("numeric", 12350, precision=5, scale=-2)
    assert value == Decimal("1.24E+4")
    assert convert("numeric", 3, precision=6, scale=2)[0] == Decimal("3.00")
    assert rejected("numeric", 123456, precision=6, scale=2) == "number-out-of-range"
    assert rejected("numeric", 9999.995, precision=6, scale=2) == "number-out-of-range"  # rounds up to 10000.00
    assert rejected("numeric", "1e200000") == "number-out-of-range"
    assert rejected("numeric", float("inf")) == "not-a-number"
    assert rejected("numeric", "NaN") == "not-a-number"


def test_booleans_from_numbers_and_words() -> None:
    assert convert("bool", 1) == (True, [("number-to-boolean", None)])
    assert convert("bool", 0.0) == (False, [("number-to-boolean", None)])
    for word, expected in (("true", True), (" Yes ", True), ("off", False), ("F", False), ("1", True)):
        assert convert("bool", word) == (expected, [("text-to-boolean", None)]), word
    assert rejected("bool", 2) == "not-a-boolean"
    assert rejected("bool", "maybe") == "not-a-boolean"


# ------------------------------------------------------------------------------------------------- times


def test_timestamps_from_iso_text_and_epochs() -> None:
    moment = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert convert("timestamptz", 1700000000) == (moment, [("epoch-seconds-to-timestamptz", None)])
    assert convert("timestamptz", "1700000000") == (moment, [("epoch-seconds-to-timestamptz", None)])
    value, notes = convert("timestamptz", 1700000000123)
    assert value == moment + dt.timedelta(milliseconds=123) and notes == [("epoch-milliseconds-to-timestamptz", None)]
    value, _ = convert("timestamptz", 1700000000.25)
    assert value == moment + dt.timedelta(milliseconds=250)
    assert convert("timestamptz", "2023-11-14T22:13:20Z") == (moment, [])
    assert convert("timestamptz", "2023-11-15T00:13:20+02:00") == (moment, [])
    assert convert("timestamptz", "2023-11-14 22:13:20") == (moment, [("naive-time-as-utc", None)])
    assert convert("timestamp", "2023-11-15T00:13:20+02:00") == (moment.replace(tzinfo=None), [])
    assert rejected("timestamptz", "next tuesday") == "unparseable-timestamp"
    assert rejected("timestamptz", True) == "unparseable-timestamp"
    assert rejected("timestamptz", float("inf")) == "unparseable-timestamp"
    assert rejected("timestamptz", b"\x00") == "unparseable-timestamp"
    assert rejected("timestamptz", 10**20) == "timestamp-out-of-range"


def test_timestamp_precision_rounds_like_postgresql() -> None:
    value, notes = convert("timestamp", "2024-01-01 00:00:00.123456", scale=3)
    assert value == dt.datetime(2024, 1, 1, 0, 0, 0, 123000)
    assert rules(notes) == ["naive-time-as-utc", "rounded-to-column-precision"]
    assert notes[1][1] == b"2024-01-01 00:00:00.123456"
    value, _ = convert("timestamp", "1999-12-31 23:59:59.9995", scale=3)
    assert value == dt.datetime(1999, 12, 31, 23, 59, 59, 999000)  # before 2000: halves round away from zero
    assert convert("timestamptz", "2024-01-01T00:00:00.5Z", scale=0)[0] == dt.datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)
    # counted from 2000-01-01: -500 us rounds to -1000 us, +500 us to +1000 us (halves away from zero)
    before = dt.datetime(1999, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)
    assert round_like_postgresql(before, 3) == dt.datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    after = dt.datetime(2000, 1, 1, 0, 0, 0, 500, tzinfo=UTC)
    assert round_like_postgresql(after, 3) == dt.datetime(2000, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)


def test_parse_timestamp_reads_epoch_text_and_iso_text() -> None:
    notes: Notes = []
    assert parse_timestamp("  1700000000.5 ", notes) == dt.datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
    assert parse_timestamp("2024-02-29", notes) == dt.datetime(2024, 2, 29, tzinfo=UTC)
    assert rules(notes) == ["epoch-seconds-to-timestamptz", "naive-time-as-utc"]


def test_dates_and_uuids() -> None:
    assert convert("date", "2024-02-29") == (dt.date(2024, 2, 29), [])
    assert convert("date", 1700000000) == (dt.date(2023, 11, 14), [("epoch-seconds-to-timestamptz", None)])
    assert rejected("date", "someday") == "unparseable-timestamp"
    text = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"
    assert convert("uuid", text) == (text.lower(), [])
    assert convert("uuid", uuid.UUID(text).bytes) == (text.lower(), [])
    assert rejected("uuid", "not-a-uuid") == "invalid-uuid"
    assert rejected("uuid", b"short") == "invalid-uuid"


# -------------------------------------------------------------------------------------------------- JSON


def test_jsonb_text_is_postgresqls_output() -> None:
    # the text `SELECT '...'::jsonb::text` prints (test_migrate.py checks these against PostgreSQL itself)
    assert (
        jsonb_text({"b": 1, "a": 2, "aa": [1, Decimal("2.50"), Decimal("-0")]})
        == '{"a": 2, "b": 1, "aa": [1, 2.50, 0]}'
    )
    assert (
        jsonb_text({"é": "ü\n", "": None, "k": [True, False, {}, []]})
        == '{"": null, "k": [true, false, {}, []], "é": "ü\\n"}'
    )
    assert jsonb_text("just a string") == '"just a string"'
    with pytest.raises(TypeError):
        jsonb_text({1, 2})


def test_json_canonical_fast_path_and_cleaning_rules() -> None:
    assert convert("jsonb", '{"b": 1.50, "a": 1e2}') == ('{"a": 100, "b": 1.50}', [])
    plain: Notes = []
    assert converter_for(TargetColumn("c", "jsonb"), canonical_json=False)('{"b": 1}', plain) == '{"b": 1}'
    assert plain == []
    assert convert("json", '{"b":1 }') == ('{"b":1 }', [])  # json keeps its text
    value, notes = convert("jsonb", '{"k": 1, "k": 2}')
    assert value == '{"k": 2}' and notes == [("json-duplicate-keys", b'{"k": 1, "k": 2}')]
    value, notes = convert("jsonb", '{"t": "x\\u0000y"}')
    assert value == '{"t": "xy"}' and rules(notes) == ["json-nul-removed"]
    value, notes = convert("jsonb", '["\\ud800"]')
    assert value == '["\ufffd"]' and rules(notes) == ["json-surrogate-replaced"]
    assert convert("jsonb", 5) == ("5", [("number-as-json", None)])
    assert convert("jsonb", 1.5) == ("1.5", [("number-as-json", None)])
    assert convert("jsonb", b'{"a": 1}') == ('{"a": 1}', [("blob-as-text", None)])
    for bad in ("{not json", "NaN", '{"a": Infinity}', float("nan"), InvalidUtf8(b'"\xff"'), "[" * 100_000):
        assert rejected("jsonb", bad) == "invalid-json", bad
    assert rejected("json", '"a\x00b"') == "invalid-json"
    assert rejected("jsonb", "1e200000") == "invalid-json"  # beyond PostgreSQL's numeric range
    assert rejected("jsonb", "[" * 3000 + "]" * 3000) == "invalid-json"  # deeper than Python parses: no crash


def test_every_rule_and_reason_is_documented() -> None:
    assert all(RULES.values()) and all(REJECT_REASONS.values())
    with pytest.raises(ValueError, match="not supported"):
        converter_for(TargetColumn("c", "point"))
