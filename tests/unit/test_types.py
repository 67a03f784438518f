"""Debezium JSON values (as the 3.6.1 connector wrote them with the sample spec's settings) back
into the values psycopg returns for the same Postgres values."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fabric.core.types import (
    UNAVAILABLE_VALUE,
    Column,
    ColumnType,
    TableSchema,
    UnavailableValueError,
    UnknownColumnsError,
    decode_row,
    decode_value,
)
from fabric.errors import MalformedEventError

INT2 = ColumnType("smallint", "int2")
INT4 = ColumnType("integer", "int4")
INT8 = ColumnType("bigint", "int8")
NUMERIC = ColumnType("numeric", "numeric")
NUMERIC_12_2 = ColumnType("numeric(12,2)", "numeric")
REAL = ColumnType("real", "float4")
DOUBLE = ColumnType("double precision", "float8")
TEXT = ColumnType("text", "text")
VARCHAR = ColumnType("character varying(10)", "varchar")
CHAR = ColumnType("character(5)", "bpchar")
BOOL = ColumnType("boolean", "bool")
UUID = ColumnType("uuid", "uuid")
DATE = ColumnType("date", "date")
TIME = ColumnType("time without time zone", "time")
TIMESTAMP = ColumnType("timestamp without time zone", "timestamp")
TIMESTAMPTZ = ColumnType("timestamp with time zone", "timestamptz")
INTERVAL = ColumnType("interval", "interval")
JSON = ColumnType("json", "json")
JSONB = ColumnType("jsonb", "jsonb")
BYTEA = ColumnType("bytea", "bytea")
MOOD = ColumnType("fidelity.mood", "fidelity.mood", enum_labels=("sad", "ok", "happy ☺"))


def _array(element: ColumnType) -> ColumnType:
    return ColumnType(element.pg_type + "[]", element.base, True, element.enum_labels)


# (type, Debezium JSON value, psycopg value): JSON values copied from real connector output.
CASES: list[tuple[ColumnType, Any, Any]] = [
    (INT2, 32767, 32767),
    (INT2, -32768, -32768),
    (INT4, 2147483647, 2147483647),
    (INT8, -9223372036854775808, -9223372036854775808),
    (NUMERIC, "123456789012345678901234567890.5", Decimal("123456789012345678901234567890.5")),
    (NUMERIC, "0.000000000000000000000000000001", Decimal("1E-30")),
    (NUMERIC, "POSITIVE_INFINITY", Decimal("Infinity")),
    (NUMERIC, "NEGATIVE_INFINITY", Decimal("-Infinity")),
    (NUMERIC_12_2, "-0.01", Decimal("-0.01")),
    (NUMERIC_12_2, "0.00", Decimal("0.00")),
    (REAL, 3.25, 3.25),
    (REAL, 1e-30, 1e-30),
    (REAL, "Infinity", math.inf),
    (REAL, "-Infinity", -math.inf),
    (DOUBLE, 1.0000000000000002, 1.0000000000000002),
    (DOUBLE, -0.0, -0.0),
    (DOUBLE, "Infinity", math.inf),
    (TEXT, "Ünïcode ☃ 😀", "Ünïcode ☃ 😀"),
    (TEXT, "", ""),
    (VARCHAR, "abc", "abc"),
    (CHAR, "ab   ", "ab   "),  # bpchar keeps its padding, in Debezium and in psycopg
    (CHAR, "     ", "     "),
    (BOOL, True, True),
    (BOOL, False, False),
    (
        UUID,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ),
    (DATE, -165, date(1969, 7, 20)),
    (DATE, 2932896, date(9999, 12, 31)),
    (DATE, -719162, date(1, 1, 1)),
    (TIME, 86399999999, time(23, 59, 59, 999999)),
    (TIME, 45296789000, time(12, 34, 56, 789000)),
    (TIME, 0, time(0, 0)),
    (TIMESTAMP, -876544, datetime(1969, 12, 31, 23, 59, 59, 123456)),
    (TIMESTAMP, 253402300799999999, datetime(9999, 12, 31, 23, 59, 59, 999999)),
    (
        TIMESTAMPTZ,
        "2199-12-31T18:30:00.500000Z",
        datetime(2199, 12, 31, 18, 30, 0, 500000, tzinfo=UTC),
    ),
    (TIMESTAMPTZ, "0001-01-01T00:00:00.000000Z", datetime(1, 1, 1, tzinfo=UTC)),
    (TIMESTAMPTZ, "2020-06-01T10:00:00.123000Z", datetime(2020, 6, 1, 10, 0, 0, 123000, UTC)),
    (INTERVAL, "P0Y0M-1DT-2H-3M-4.5S", timedelta(days=-2, seconds=79015, microseconds=500000)),
    (INTERVAL, "P1Y2M3DT4H5M6S", timedelta(days=365 + 60 + 3, seconds=4 * 3600 + 5 * 60 + 6)),
    (INTERVAL, "P0Y-1M0DT0H0M0S", timedelta(days=-30)),
    (INTERVAL, "P0Y1M1DT0H0M-1S", timedelta(days=30, seconds=86399)),
    (INTERVAL, "P-1Y-2M3DT-4H-5M-6.000001S", timedelta(-423, 71693, 999999)),
    (JSON, '{"b": 1,  "a": [1, 2.5, null]}', {"b": 1, "a": [1, 2.5, None]}),
    (JSON, '"s"', "s"),
    (JSONB, "null", None),
    (JSONB, '{"a": [1, 2.5, null], "b": 1}', {"a": [1, 2.5, None], "b": 1}),
    (BYTEA, "AP8Q", b"\x00\xff\x10"),
    (BYTEA, "", b""),
    (MOOD, "happy ☺", "happy ☺"),
    (_array(INT4), [1, None, 3], [1, None, 3]),
    (_array(INT4), [], []),
    (_array(TEXT), ["a", "b c", None, "é"], ["a", "b c", None, "é"]),
    (_array(NUMERIC), ["1.5", None, "-2"], [Decimal("1.5"), None, Decimal("-2")]),
    (
        _array(UUID),
        ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        [uuid.UUID(int=0xA0EEBC999C0B4EF8BB6D6BB9BD380A11)],
    ),
    (_array(DATE), [18321], [date(2020, 2, 29)]),
    (_array(TIMESTAMPTZ), ["2020-01-01T00:00:00.000000Z"], [datetime(2020, 1, 1, tzinfo=UTC)]),
    (_array(BOOL), [True, False, None], [True, False, None]),
    (_array(JSONB), ['{"x": 1}'], [{"x": 1}]),
    (_array(BYTEA), ["AQ=="], [b"\x01"]),
    (_array(MOOD), ["sad", "ok"], ["sad", "ok"]),
]


@pytest.mark.parametrize(("column_type", "json_value", "expected"), CASES)
def test_decode_value_gives_psycopgs_type_and_value(
    column_type: ColumnType, json_value: Any, expected: Any
) -> None:
    got = decode_value(column_type, json_value)
    assert type(got) is type(expected)
    assert got == expected
    if isinstance(expected, list):
        assert [type(v) for v in got] == [type(v) for v in expected]
    if isinstance(expected, float) and expected == 0:
        assert math.copysign(1, got) == math.copysign(1, expected)


@pytest.mark.parametrize("column_type", [REAL, DOUBLE])
def test_float_nan_arrives_as_a_string(column_type: ColumnType) -> None:
    got = decode_value(column_type, "NaN")
    assert type(got) is float and math.isnan(got)


def test_numeric_nan_arrives_as_nan() -> None:
    got = decode_value(NUMERIC, "NAN")
    assert type(got) is Decimal and got.is_nan()


def test_timestamptz_is_utc_aware() -> None:
    got = decode_value(TIMESTAMPTZ, "1970-01-01T00:00:00.000000Z")
    assert got.tzinfo is UTC


@pytest.mark.parametrize("column_type", [t for t, _, _ in CASES])
def test_null_stays_none(column_type: ColumnType) -> None:
    assert decode_value(column_type, None) is None


@pytest.mark.parametrize(
    ("column_type", "json_value", "message"),
    [
        (INT2, 32768, "is not an integer in [-32768, 32767]"),
        (INT4, True, "is not an integer"),
        (INT8, "1", "is not an integer"),
        (NUMERIC, "1_000", "is not a decimal string"),
        (NUMERIC, 1.5, "is not a decimal string"),
        (REAL, "nan", "is not a number"),
        (TEXT, 1, "is not a string"),
        (BOOL, 1, "is not a boolean"),
        (UUID, "not-a-uuid", "is not a UUID"),
        (DATE, -622191234, "is outside Python's dates"),  # date 'infinity' inside a date[]
        (TIME, 86400000000, "24:00:00 has no Python time"),
        (TIMESTAMP, -210863520000000000, "is outside Python's datetimes"),  # 4713 BC
        (TIMESTAMPTZ, "infinity", "is not an ISO timestamp"),
        (TIMESTAMPTZ, "2020-01-01T00:00:00", "has no UTC offset"),
        (INTERVAL, "1 day", "is not an ISO 8601 interval"),
        (JSON, "{", "is not JSON text"),
        (BYTEA, "AP8", "is not base64"),
        (_array(INT4), 1, "is not a JSON array"),
        (_array(INT4), [1, "2"], "has an element that is not an integer"),
        (ColumnType("point", "point"), "(1,2)", "a type the fabric does not decode"),
    ],
)
def test_misfit_values_raise_naming_the_column_and_type(
    column_type: ColumnType, json_value: Any, message: str
) -> None:
    with pytest.raises(MalformedEventError) as caught:
        decode_value(column_type, json_value)
    assert type(caught.value) is MalformedEventError
    assert caught.value.reason.startswith(f"value.value ({column_type.pg_type}): ")
    assert message in caught.value.reason


TABLE = TableSchema(
    "fidelity",
    "everything",
    (
        Column("id", INT4, not_null=True),
        Column("c_text", TEXT),
        Column("c_bytea", BYTEA),
        Column("a_integer", _array(INT4)),
        Column("a_text", _array(TEXT)),
        Column("c_date", DATE),
    ),
    ("id",),
)


def test_decode_row_follows_table_order_and_fills_missing_columns_with_none() -> None:
    image = {"c_date": 0, "a_text": None, "c_text": "x", "id": 1}
    row = decode_row(TABLE, image)
    assert list(row) == ["id", "c_text", "c_bytea", "a_integer", "a_text", "c_date"]
    assert row == {
        "id": 1,
        "c_text": "x",
        "c_bytea": None,
        "a_integer": None,
        "a_text": None,
        "c_date": date(1970, 1, 1),
    }


def test_decode_row_names_the_failing_column() -> None:
    with pytest.raises(MalformedEventError) as caught:
        decode_row(TABLE, {"id": 1, "c_date": "2020-01-01"})
    assert caught.value.reason == (
        "fidelity.everything.c_date (date): '2020-01-01' is not a day count"
    )


def test_unknown_columns_raise_a_distinct_error_unless_ignored() -> None:
    image = {"id": 1, "c_new": 5, "c_text": "x", "c_other": None}
    assert TABLE.unknown_columns(image) == ("c_new", "c_other")
    with pytest.raises(UnknownColumnsError) as caught:
        decode_row(TABLE, image)
    assert caught.value.columns == ("c_new", "c_other")
    assert decode_row(TABLE, image, ignore_unknown=True)["c_text"] == "x"


def test_a_column_added_with_a_constant_default_reads_as_that_default_in_older_rows() -> None:
    added = TableSchema(
        "public",
        "t",
        (
            Column("id", ColumnType("integer", "int4"), not_null=True),
            Column("score", ColumnType("numeric(5,2)", "numeric"), missing=Decimal("1.50")),
            Column("note", ColumnType("text", "text")),
        ),
        ("id",),
    )
    # Written before ADD COLUMN: Postgres shows the default (attmissingval) and NULL.
    assert decode_row(added, {"id": 1}) == {"id": 1, "score": Decimal("1.50"), "note": None}
    # Written after: an explicit NULL stays NULL.
    assert decode_row(added, {"id": 2, "score": None, "note": None})["score"] is None
    assert added.version != TableSchema("public", "t", added.columns[:1], ("id",)).version


# The placeholder of an unchanged TOASTed column, per type, as the connector wrote it.
TOASTED = {
    "id": 7,
    "c_text": UNAVAILABLE_VALUE,
    "c_bytea": "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==",
    "a_integer": list(b"__debezium_unavailable_value"),
    "a_text": [UNAVAILABLE_VALUE],
    "c_date": 1,
}


def test_toast_placeholders_are_never_decoded() -> None:
    with pytest.raises(UnavailableValueError) as caught:
        decode_row(TABLE, TOASTED)
    assert caught.value.columns == ("c_text", "c_bytea", "a_integer", "a_text")


def test_version_fingerprints_the_definition() -> None:
    same = TableSchema(TABLE.schema, TABLE.name, TABLE.columns, TABLE.primary_key)
    wider = TableSchema(TABLE.schema, TABLE.name, (*TABLE.columns, Column("x", INT8)), ("id",))
    assert same == TABLE and same.version == TABLE.version
    assert wider.version != TABLE.version
    assert len(TABLE.version) == 16
