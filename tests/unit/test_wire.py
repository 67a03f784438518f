"""Answers written straight to the wire parse to the messages the value encoders build."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fabric.core.types import (
    UNAVAILABLE_VALUE,
    Column,
    ColumnType,
    TableSchema,
    UnavailableValueError,
    UnknownColumnsError,
    decode_row,
)
from fabric.errors import MalformedEventError
from fabric.rpc import values
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.wire import (
    AnswerWriter,
    RowWriter,
    batch_get_response,
    get_response,
    lookup_result,
    varint,
)
from tests.unit.test_types import CASES, INT4, INT8, JSON, JSONB, TEXT

ID = Column("id", INT8, not_null=True)


def _table(*columns: Column) -> TableSchema:
    return TableSchema("wire", "t", (ID, *columns), ("id",))


@pytest.mark.parametrize(("column_type", "json_value", "expected"), CASES)
def test_a_written_row_parses_to_what_the_encoder_builds(
    column_type: ColumnType, json_value: Any, expected: Any
) -> None:
    table = _table(Column("v", column_type))
    image = {"id": 7, "v": json_value}
    written = pb.Row.FromString(RowWriter(table).row(orjson.dumps(image)))
    built = values.RowEncoder(table).row(decode_row(table, image))
    kind = written.fields[1].value.WhichOneof("kind")
    if kind in ("json", "decimal"):
        # Postgres's own text, not a reprint of its value: the same value once decoded (a
        # decimal with the same digits and exponent).
        assert getattr(written.fields[1].value, kind) == json_value or kind == "decimal"
        assert repr(values.decode_row(written)) == repr(values.decode_row(built))
    else:
        assert written == built
    assert values.decode_row(written)["v"] == values.decode_row(built)["v"]


@pytest.mark.parametrize("column_type", [INT4, TEXT, JSON, JSONB])
def test_null_and_a_column_the_image_lacks(column_type: ColumnType) -> None:
    table = _table(Column("v", column_type), Column("w", INT4, missing=42))
    written = pb.Row.FromString(RowWriter(table).row({"id": 1, "v": None}))
    assert values.decode_row(written) == {"id": 1, "v": None, "w": 42}
    assert written.fields[1].value.WhichOneof("kind") == "null"


def test_columns_come_in_table_order_whatever_the_image_order() -> None:
    table = _table(Column("a", TEXT), Column("b", INT4))
    written = pb.Row.FromString(RowWriter(table).row(b'{"b":2,"a":"x","id":1}'))
    assert [f.name for f in written.fields] == ["id", "a", "b"]


def test_an_unknown_column_raises_unless_ignored() -> None:
    table = _table(Column("a", TEXT))
    writer = RowWriter(table)
    with pytest.raises(UnknownColumnsError):
        writer.row({"id": 1, "a": "x", "dropped": 3})
    row = pb.Row.FromString(writer.row({"id": 1, "a": "x", "dropped": 3}, ignore_unknown=True))
    assert values.decode_row(row) == {"id": 1, "a": "x"}


def test_a_toast_placeholder_raises() -> None:
    table = _table(Column("a", TEXT))
    with pytest.raises(UnavailableValueError):
        RowWriter(table).row({"id": 1, "a": UNAVAILABLE_VALUE})


@pytest.mark.parametrize(
    ("column_type", "json_value"),
    [
        (INT4, 2**31),
        (INT4, "1"),
        (TEXT, 5),
        (JSON, "{"),
        (JSONB, 3),
        (ColumnType("bytea", "bytea"), "AP8"),
        (ColumnType("uuid", "uuid"), "not-a-uuid"),
        (ColumnType("boolean", "bool"), 1),
        (ColumnType("date", "date"), 10**9),
        (ColumnType("time without time zone", "time"), -1),
        (ColumnType("timestamp with time zone", "timestamptz"), "yesterday"),
    ],
)
def test_misfit_values_raise_naming_the_column(column_type: ColumnType, json_value: Any) -> None:
    with pytest.raises(MalformedEventError) as caught:
        RowWriter(_table(Column("v", column_type))).row({"id": 1, "v": json_value})
    assert caught.value.reason.startswith(f"wire.t.v ({column_type.pg_type}): ")


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**35, 2**63 - 1, -1, -(2**63)])
def test_varint_matches_protobuf(n: int) -> None:
    assert b"\x18" + varint(n) == pb.Value(int=n).SerializeToString()


@pytest.mark.parametrize(
    "position",
    [
        {"lsn": 0, "commit_time_ms": 0, "partition": 0, "offset": -1},
        {"lsn": 2**64 - 1, "commit_time_ms": 1_700_000_000_000, "partition": 5, "offset": 9},
    ],
)
def test_answers_parse_to_their_messages(position: dict[str, int]) -> None:
    fresh = {**position, "applied_offset": 41, "lag_records": 0}
    freshness = AnswerWriter("inst-1").freshness(**fresh)
    expected_freshness = pb.Freshness(**fresh, served_by="inst-1")
    assert pb.Freshness.FromString(freshness) == expected_freshness
    row = RowWriter(_table()).row({"id": 3})
    expected_row = pb.Row.FromString(row)
    assert pb.GetResponse.FromString(get_response(row, freshness)) == pb.GetResponse(
        found=True, row=expected_row, freshness=expected_freshness
    )
    assert pb.GetResponse.FromString(get_response(None, freshness)) == pb.GetResponse(
        found=False, freshness=expected_freshness
    )
    results = [lookup_result(row, freshness), lookup_result(None, freshness)]
    failed = pb.LookupResult(status="NOT_FOUND", message="no table").SerializeToString()
    assert pb.BatchGetResponse.FromString(
        batch_get_response([*results, failed])
    ) == pb.BatchGetResponse(
        results=[
            pb.LookupResult(
                status="OK", found=True, row=expected_row, freshness=expected_freshness
            ),
            pb.LookupResult(status="OK", found=False, freshness=expected_freshness),
            pb.LookupResult(status="NOT_FOUND", message="no table"),
        ]
    )
