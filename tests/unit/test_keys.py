"""KeyCodec: psycopg values and Debezium row images to the key bytes Connect wrote.

The round trip is the contract: a Debezium JSON key value, decoded to its psycopg value and encoded
again, gives exactly the bytes :func:`encode_key` gives for the JSON value itself, which are the
bytes Connect's JsonConverter wrote (tests/unit/test_keyjson.py holds encode_key to Connect).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from fabric.core.keyjson import encode_key
from fabric.core.keys import KeyCodec
from fabric.core.types import Column, ColumnType, TableSchema, decode_value
from fabric.errors import InvalidKeyError, MalformedEventError

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
TIMESTAMPTZ_3 = ColumnType("timestamp(3) with time zone", "timestamptz")
TIMESTAMPTZ_0 = ColumnType("timestamp(0) with time zone", "timestamptz")
INTERVAL = ColumnType("interval", "interval")
JSON = ColumnType("json", "json")
JSONB = ColumnType("jsonb", "jsonb")
BYTEA = ColumnType("bytea", "bytea")
MOOD = ColumnType("shop.mood", "shop.mood", enum_labels=("sad", "ok", "happy ☺"))
INT4_ARRAY = ColumnType("integer[]", "int4", is_array=True)
TEXT_ARRAY = ColumnType("text[]", "text", is_array=True)

A_UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def _codec(column_type: ColumnType, name: str = "k") -> KeyCodec:
    return KeyCodec(
        TableSchema("public", "t", (Column(name, column_type, not_null=True),), (name,))
    )


# (type, Debezium JSON value of a key column): every type that routes exactly.
ROUND_TRIPS: list[tuple[ColumnType, Any]] = [
    (INT2, 0),
    (INT2, 32767),
    (INT2, -32768),
    (INT4, 2147483647),
    (INT4, -2147483648),
    (INT8, 9223372036854775807),
    (INT8, -9223372036854775808),
    (NUMERIC, "123456789012345678901234567890.5"),
    (NUMERIC, "0.000000000000000000000000000001"),
    (NUMERIC, "-42"),
    (NUMERIC, "1.50"),
    (NUMERIC, "100000000000000000000"),
    (NUMERIC_12_2, "-0.01"),
    (NUMERIC_12_2, "0.00"),
    (NUMERIC_12_2, "1234567890.10"),
    (DOUBLE, 1.0000000000000002),
    (DOUBLE, -0.0),
    (DOUBLE, 0.0),
    (DOUBLE, 1e7),
    (DOUBLE, 1234567.0),
    (DOUBLE, 0.001),
    (DOUBLE, 1e-5),
    (DOUBLE, 2.5e-310),
    (DOUBLE, "Infinity"),
    (DOUBLE, "-Infinity"),
    (DOUBLE, "NaN"),
    (TEXT, "plain"),
    (TEXT, ""),
    (TEXT, "Ünïcode ☃ 😀 𝄞"),
    (TEXT, 'quote " and backslash \\ and slash /'),
    (TEXT, "\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f"),
    (TEXT, "line\u2028separator\u2029"),
    (VARCHAR, "abc"),
    (CHAR, "ab   "),
    (CHAR, "     "),
    (BOOL, True),
    (BOOL, False),
    (UUID, A_UUID),
    (UUID, "00000000-0000-0000-0000-000000000000"),
    (DATE, 0),
    (DATE, -165),
    (DATE, 2932896),
    (DATE, -719162),
    (TIME, 0),
    (TIME, 45296789000),
    (TIME, 86399999999),
    (TIMESTAMP, 0),
    (TIMESTAMP, -876544),
    (TIMESTAMP, 253402300799999999),
    (TIMESTAMP, -62135596800000000),
    (TIMESTAMPTZ, "2199-12-31T18:30:00.500000Z"),
    (TIMESTAMPTZ, "0001-01-01T00:00:00.000000Z"),
    (TIMESTAMPTZ, "1970-01-01T00:00:00.000000Z"),
    (TIMESTAMPTZ, "2020-06-01T10:00:00.123456Z"),
    (TIMESTAMPTZ_3, "2020-06-01T10:00:00.123Z"),
    (TIMESTAMPTZ_3, "2020-06-01T10:00:00.000Z"),
    (TIMESTAMPTZ_0, "2020-06-01T10:00:00Z"),
    (TIMESTAMPTZ_0, "0999-01-01T00:00:00Z"),
    (INTERVAL, "P0Y0M0DT0H0M0S"),
    (INTERVAL, "P0Y0M3DT4H5M6S"),
    (INTERVAL, "P0Y0M0DT0H0M0.5S"),
    (INTERVAL, "P0Y0M1DT23H59M59.999999S"),
    (INTERVAL, "P0Y0M10000DT0H0M0.000001S"),
    (BYTEA, "AP8Q"),
    (BYTEA, ""),
    (BYTEA, "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="),
    (MOOD, "happy ☺"),
    (MOOD, "sad"),
]


@pytest.mark.parametrize(("column_type", "json_value"), ROUND_TRIPS)
def test_decoded_value_encodes_to_the_key_connect_wrote(
    column_type: ColumnType, json_value: Any
) -> None:
    codec = _codec(column_type)
    expected = encode_key([("k", json_value)])
    psycopg_value = decode_value(column_type, json_value)
    assert codec.encode({"k": psycopg_value}) == expected
    assert codec.encode([psycopg_value]) == expected
    assert codec.encode_image({"k": json_value}) == expected


def test_round_trip_gives_literal_key_bytes() -> None:
    # A few spelled out, so that the table above cannot agree with itself by accident.
    assert _codec(INT4).encode([42]) == b'{"k":42}'
    assert _codec(NUMERIC).encode([Decimal("1E-3")]) == b'{"k":"0.001"}'
    assert _codec(DOUBLE).encode([1e7]) == b'{"k":1.0E7}'
    assert _codec(TEXT).encode(['a"\\\n😀']) == b'{"k":"a\\"\\\\\\n\\uD83D\\uDE00"}'
    assert _codec(BOOL).encode([False]) == b'{"k":false}'
    assert _codec(DATE).encode([date(1969, 7, 20)]) == b'{"k":-165}'
    assert _codec(TIME).encode([time(12, 34, 56, 789000)]) == b'{"k":45296789000}'
    assert _codec(TIMESTAMP).encode([datetime(1970, 1, 1, 0, 0, 1)]) == b'{"k":1000000}'
    assert _codec(BYTEA).encode([b"\x00\xff\x10"]) == b'{"k":"AP8Q"}'
    assert _codec(INTERVAL).encode([timedelta(days=1, seconds=3661, microseconds=500)]) == (
        b'{"k":"P0Y0M1DT1H1M1.0005S"}'
    )


def test_integers_and_decimals_are_accepted_where_psycopg_would_give_them() -> None:
    assert _codec(NUMERIC).encode([7]) == b'{"k":"7"}'
    assert _codec(NUMERIC).encode([Decimal("-1.2300")]) == b'{"k":"-1.2300"}'
    assert _codec(DOUBLE).encode([3]) == b'{"k":3.0}'
    assert _codec(BYTEA).encode([bytearray(b"\x01")]) == b'{"k":"AQ=="}'
    assert _codec(BYTEA).encode([memoryview(b"\x01")]) == b'{"k":"AQ=="}'


@pytest.mark.parametrize(
    "value",
    [
        uuid.UUID(A_UUID),
        A_UUID,
        A_UUID.upper(),
        A_UUID.replace("-", ""),
        "{" + A_UUID + "}",
    ],
)
def test_uuid_accepts_a_uuid_or_any_spelling_of_one(value: uuid.UUID | str) -> None:
    assert _codec(UUID).encode([value]) == b'{"k":"' + A_UUID.encode() + b'"}'


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        (TIMESTAMPTZ, datetime(2020, 6, 1, 10, 0, tzinfo=UTC), "2020-06-01T10:00:00.000000Z"),
        (
            TIMESTAMPTZ,
            datetime(2020, 6, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
            "2020-06-01T10:00:00.000001Z",
        ),
        (
            TIMESTAMPTZ,
            datetime(2020, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2019-12-31T20:00:00.000000Z",
        ),
        (
            TIMESTAMPTZ,
            datetime(2020, 6, 1, 5, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2020-06-01T10:00:00.000000Z",
        ),
        (TIMESTAMPTZ_3, datetime(2020, 6, 1, 10, 0, 0, 123000, UTC), "2020-06-01T10:00:00.123Z"),
        (TIMESTAMPTZ_3, datetime(2020, 6, 1, 10, 0, 0, 0, UTC), "2020-06-01T10:00:00.000Z"),
        (TIMESTAMPTZ_0, datetime(2020, 6, 1, 10, 0, 0, 0, UTC), "2020-06-01T10:00:00Z"),
        (TIMESTAMPTZ, datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
    ],
)
def test_timestamptz_is_utc_z_with_the_columns_fraction_digits(
    column_type: ColumnType, value: datetime, expected: str
) -> None:
    assert _codec(column_type).encode([value]) == b'{"k":"' + expected.encode() + b'"}'


# --- composite keys ----------------------------------------------------------------------------

ORDERS = TableSchema(
    "shop",
    "order_lines",
    (
        Column("line", INT2, not_null=True),
        Column("note", TEXT),
        Column("tenant", TEXT, not_null=True),
        Column("day", DATE, not_null=True),
    ),
    ("tenant", "day", "line"),
)
ORDER_KEY = b'{"tenant":"acme","day":18321,"line":3}'


def test_composite_key_follows_the_primary_key_order() -> None:
    codec = KeyCodec(ORDERS)
    assert codec.table == "shop.order_lines"
    assert codec.columns == ("tenant", "day", "line")
    assert codec.encode({"line": 3, "day": date(2020, 2, 29), "tenant": "acme"}) == ORDER_KEY
    assert codec.encode({"tenant": "acme", "day": date(2020, 2, 29), "line": 3}) == ORDER_KEY
    assert codec.encode(["acme", date(2020, 2, 29), 3]) == ORDER_KEY
    assert codec.encode(("acme", date(2020, 2, 29), 3)) == ORDER_KEY
    assert encode_key([("tenant", "acme"), ("day", 18321), ("line", 3)]) == ORDER_KEY


def test_image_key_ignores_image_order_and_non_key_columns() -> None:
    image = {"line": 3, "note": "not in the key", "day": 18321, "tenant": "acme"}
    assert KeyCodec(ORDERS).encode_image(image) == ORDER_KEY


def test_image_without_a_key_column_is_malformed() -> None:
    codec = KeyCodec(ORDERS)
    with pytest.raises(MalformedEventError) as caught:
        codec.encode_image({"tenant": "acme", "line": 3})
    assert type(caught.value) is MalformedEventError
    assert caught.value.reason == "shop.order_lines: key column day is missing or null"
    with pytest.raises(MalformedEventError) as caught:
        codec.encode_image({"tenant": "acme", "day": None, "line": 3})
    assert caught.value.reason == "shop.order_lines: key column day is missing or null"


def test_image_with_a_misfit_key_value_is_malformed() -> None:
    with pytest.raises(MalformedEventError) as caught:
        KeyCodec(ORDERS).encode_image({"tenant": "acme", "day": "2020-02-29", "line": 3})
    assert type(caught.value) is MalformedEventError
    assert caught.value.reason == "shop.order_lines.day (date): '2020-02-29' is not a day count"


# --- refused lookups ---------------------------------------------------------------------------


def _invalid(codec: KeyCodec, values: Any) -> InvalidKeyError:
    with pytest.raises(InvalidKeyError) as caught:
        codec.encode(values)
    assert type(caught.value) is InvalidKeyError
    return caught.value


def test_missing_key_column_is_named() -> None:
    error = _invalid(KeyCodec(ORDERS), {"tenant": "acme", "line": 3})
    assert error.column == "day"
    assert str(error) == "shop.order_lines: the key is (tenant, day, line); missing day"


def test_extra_column_is_named() -> None:
    values = {"tenant": "acme", "day": date(2020, 2, 29), "line": 3, "note": "x"}
    error = _invalid(KeyCodec(ORDERS), values)
    assert error.column == "note"
    assert str(error) == "shop.order_lines: the key is (tenant, day, line); note not in the key"


def test_missing_and_extra_columns_are_both_named() -> None:
    error = _invalid(KeyCodec(ORDERS), {"tenant": "acme", "line": 3, "dya": date(2020, 2, 29)})
    assert error.column == "day"
    assert str(error) == (
        "shop.order_lines: the key is (tenant, day, line); missing day; dya not in the key"
    )


@pytest.mark.parametrize("values", [["acme", date(2020, 2, 29)], ["acme", date(2020, 2, 29), 3, 4]])
def test_wrong_number_of_values_is_refused(values: list[Any]) -> None:
    error = _invalid(KeyCodec(ORDERS), values)
    assert error.column is None
    assert str(error) == (
        f"shop.order_lines: the key is (tenant, day, line), 3 value(s); got {len(values)}"
    )


@pytest.mark.parametrize(
    "values",
    [
        {"tenant": "acme", "day": None, "line": 3},
        ["acme", None, 3],
    ],
)
def test_null_key_value_is_refused(values: Any) -> None:
    error = _invalid(KeyCodec(ORDERS), values)
    assert error.column == "day"
    assert str(error) == "shop.order_lines.day: a key value is never NULL"


@pytest.mark.parametrize(
    ("column_type", "value", "message"),
    [
        (INT4, "1", "expected int, got str '1'"),
        (INT4, True, "expected int, got bool True"),
        (INT4, 1.0, "expected int, got float 1.0"),
        (INT8, Decimal(1), "expected int, got Decimal Decimal('1')"),
        (INT2, 32768, "32768 is outside [-32768, 32767]"),
        (INT2, -32769, "-32769 is outside [-32768, 32767]"),
        (INT4, 2**31, "2147483648 is outside [-2147483648, 2147483647]"),
        (INT8, 2**63, f"{2**63} is outside [{-(2**63)}, {2**63 - 1}]"),
        (NUMERIC, 1.5, "expected Decimal or int, got float 1.5"),
        (NUMERIC, "1.5", "expected Decimal or int, got str '1.5'"),
        (NUMERIC, True, "expected Decimal or int, got bool True"),
        (NUMERIC, Decimal("sNaN"), "sNaN is not a Postgres numeric"),
        (DOUBLE, "1.5", "expected float or int, got str '1.5'"),
        (DOUBLE, False, "expected float or int, got bool False"),
        (TEXT, 1, "expected str, got int 1"),
        (TEXT, b"a", "expected str, got bytes b'a'"),
        (MOOD, 1, "expected str, got int 1"),
        (BOOL, 1, "expected bool, got int 1"),
        (BOOL, "true", "expected bool, got str 'true'"),
        (UUID, 1, "expected UUID or str, got int 1"),
        (UUID, "not-a-uuid", "badly formed hexadecimal UUID string"),
        (DATE, datetime(2020, 1, 1), "expected date, got datetime datetime.datetime(2020, 1, 1"),
        (DATE, "2020-01-01", "expected date, got str '2020-01-01'"),
        (TIME, time(1, 0, tzinfo=UTC), "expected a time without time zone"),
        (TIME, datetime(2020, 1, 1), "expected time, got datetime"),
        (TIMESTAMP, datetime(2020, 1, 1, tzinfo=UTC), "expected a naive datetime"),
        (TIMESTAMP, date(2020, 1, 1), "expected datetime, got date"),
        (TIMESTAMPTZ, datetime(2020, 1, 1), "expected an aware datetime"),
        (TIMESTAMPTZ, "2020-01-01T00:00:00Z", "expected datetime, got str"),
        (INTERVAL, 5, "expected timedelta, got int 5"),
        (INTERVAL, timedelta(seconds=-1), "negative intervals are not supported as lookup keys"),
        (INTERVAL, timedelta(days=-1, hours=1), "negative intervals are not supported"),
        (BYTEA, "AP8Q", "expected bytes or bytearray or memoryview, got str 'AP8Q'"),
    ],
)
def test_misfit_value_is_refused_naming_the_column(
    column_type: ColumnType, value: Any, message: str
) -> None:
    codec = _codec(column_type, name="ref")
    for values in ({"ref": value}, [value]):
        error = _invalid(codec, values)
        assert error.column == "ref"
        assert str(error).startswith("public.t.ref: ")
        assert message in str(error)


def test_value_outside_utc_range_is_refused() -> None:
    early = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    error = _invalid(_codec(TIMESTAMPTZ), [early])
    assert error.column == "k"
    assert str(error).startswith("public.t.k: ")


@pytest.mark.parametrize(
    ("column_type", "value", "message"),
    [
        (REAL, 1.5, "real columns are not supported as lookup keys"),
        (JSON, {"a": 1}, "json columns are not supported as lookup keys"),
        (JSONB, {"a": 1}, "jsonb columns are not supported as lookup keys"),
        (INT4_ARRAY, [1, 2], "array columns are not supported as lookup keys"),
        (TEXT_ARRAY, ["a"], "array columns are not supported as lookup keys"),
        (ColumnType("point", "point"), "(1,2)", "point columns are not supported as lookup keys"),
    ],
)
def test_unsupported_key_types_are_refused(
    column_type: ColumnType, value: Any, message: str
) -> None:
    codec = _codec(column_type)
    error = _invalid(codec, [value])
    assert error.column == "k"
    assert str(error) == f"public.t.k: {message}"


@pytest.mark.parametrize(
    ("column_type", "json_value", "message"),
    [
        (REAL, 1.5, "real columns are not supported as lookup keys"),
        (JSONB, '{"a": 1}', "jsonb columns are not supported as lookup keys"),
        (INT4_ARRAY, [1, 2], "array columns are not supported as lookup keys"),
        (INTERVAL, "P0Y0M-1DT0H0M0S", "negative intervals are not supported as lookup keys"),
    ],
)
def test_unsupported_key_types_in_images_are_refused(
    column_type: ColumnType, json_value: Any, message: str
) -> None:
    with pytest.raises(InvalidKeyError) as caught:
        _codec(column_type).encode_image({"k": json_value})
    assert caught.value.column == "k"
    assert str(caught.value) == f"public.t.k: {message}"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (Decimal("NaN"), "NAN"),
        (Decimal("Infinity"), "POSITIVE_INFINITY"),
        (Decimal("-Infinity"), "NEGATIVE_INFINITY"),
    ],
)
def test_numeric_special_values_are_keyed_as_debezium_names_them(
    value: Decimal, written: str
) -> None:
    expected = encode_key([("k", written)])
    assert _codec(NUMERIC).encode([value]) == expected
    assert _codec(NUMERIC).encode_image({"k": written}) == expected


def test_table_without_primary_key_is_refused_at_construction() -> None:
    table = TableSchema("public", "log", (Column("line", TEXT),), ())
    with pytest.raises(InvalidKeyError) as caught:
        KeyCodec(table)
    assert type(caught.value) is InvalidKeyError
    assert str(caught.value) == "table public.log has no primary key to look rows up by"
    assert caught.value.column is None


def test_invalid_key_error_is_a_fabric_error_not_a_malformed_event() -> None:
    error = _invalid(_codec(INT4), ["1"])
    assert not isinstance(error, MalformedEventError)


@pytest.mark.parametrize(
    ("base", "values"),
    [
        ("int2", [0, 7, -1, 2**15 - 1, -(2**15)]),
        ("int4", [123456, 2**31 - 1, -(2**31)]),
        ("int8", [1, 2**63 - 1, -(2**63), 10**12]),
    ],
)
def test_one_integer_column_keys_take_the_short_way_to_the_same_bytes(
    base: str, values: list[int]
) -> None:
    table = TableSchema("shop", "t", (Column('the "id"', ColumnType(base, base)),), ('the "id"',))
    codec = KeyCodec(table)
    assert codec.integer_key
    for value in values:
        assert codec.encode_integer(value) == codec.encode([value])
    for outside in (max(values) + 1, min(values) - 1):
        with pytest.raises(InvalidKeyError) as general:
            codec.encode([outside])
        with pytest.raises(InvalidKeyError) as short:
            codec.encode_integer(outside)
        assert str(short.value) == str(general.value)
        assert short.value.column == general.value.column


def test_other_keys_have_no_short_way() -> None:
    composite = TableSchema(
        "shop", "t", (Column("a", ColumnType("int8", "int8")), Column("b", TEXT)), ("a", "b")
    )
    assert not KeyCodec(composite).integer_key
    text = TableSchema("shop", "t", (Column("a", TEXT),), ("a",))
    assert not KeyCodec(text).integer_key
