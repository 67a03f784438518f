"""The client's native reader of BatchGet answers (fabric/client/_rows.c) against the Python
decoders: the same values, freshness and statuses for every kind of value, and errors, never a
crash, for bytes that are not an answer."""

from __future__ import annotations

import contextlib
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.client.messages import decode_fabric_row, decode_lookup_results
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import encode_value

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, places=3),
    st.text(),
    st.binary(),
    st.uuids(),
    st.dates(),
    st.times(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.timedeltas(min_value=timedelta(days=-(10**6)), max_value=timedelta(days=10**6)),
)
VALUES = st.one_of(SCALARS, st.lists(st.one_of(st.none(), st.integers(-1000, 1000)), max_size=4))
ROWS = st.dictionaries(st.text(min_size=1, max_size=12), VALUES, max_size=8)


def _row(values: dict[str, Any]) -> pb.Row:
    return pb.Row(fields=[pb.Field(name=k, value=encode_value(v)) for k, v in values.items()])


def _freshness(n: int) -> pb.Freshness:
    return pb.Freshness(
        lsn=2**63 + n,
        commit_time_ms=-n,
        partition=n % 7,
        offset=n,
        applied_offset=n * 3,
        lag_records=n % 2,
        served_by=f"instance-{n % 3}" if n % 5 else "",
    )


def _answer(*results: pb.LookupResult) -> bytes:
    serialized: bytes = pb.BatchGetResponse(results=results).SerializeToString()
    return serialized


@settings(max_examples=200)
@given(rows=st.lists(ROWS, min_size=1, max_size=6))
def test_rows_and_freshness_are_the_python_ones(rows: list[dict[str, Any]]) -> None:
    results = [
        pb.LookupResult(status="OK", found=True, row=_row(r), freshness=_freshness(n))
        for n, r in enumerate(rows)
    ]
    for (status, message, row, served_by), result in zip(
        decode_lookup_results(_answer(*results)), results, strict=True
    ):
        expected = decode_fabric_row(result.row, result.freshness)
        assert (status, message, served_by) == ("OK", "", result.freshness.served_by)
        assert row is not None
        assert row.freshness == expected.freshness
        assert list(row.values) == list(expected.values)  # column order kept
        assert row.values == expected.values


def test_each_kind_is_the_python_value() -> None:
    values = {
        "null": None,
        "yes": True,
        "small": -5,
        "big": 2**63 - 1,
        "double": 1.5,
        "nan": math.nan,
        "decimal": Decimal("-12.50"),
        "text": "naïve ☺",
        "bytes": b"\x00\xff",
        "uuid": uuid.UUID(int=7),
        "date": date(1969, 12, 31),
        "time": time(23, 59, 59, 999999),
        "timestamp": datetime(1900, 1, 1, 0, 0, 1),
        "timestamptz": datetime(2030, 6, 1, 12, tzinfo=UTC),
        "interval": timedelta(days=-40, microseconds=5),
        "array": [1, None, 3],
    }
    json_row = pb.Row(fields=[pb.Field(name="json", value=pb.Value(json='{"a": [1, 2.5]}'))])
    answer = _answer(
        pb.LookupResult(status="OK", found=True, row=_row(values)),
        pb.LookupResult(status="OK", found=True, row=json_row),
    )
    (_, _, first, _), (_, _, second, _) = decode_lookup_results(answer)
    assert first is not None and second is not None
    got = dict(first.values)
    assert math.isnan(got.pop("nan"))
    assert got == {k: v for k, v in values.items() if k != "nan"}
    assert type(got["yes"]) is bool
    assert second.values == {"json": {"a": [1, 2.5]}}


def test_missing_keys_and_failures_keep_their_status_and_message() -> None:
    answer = _answer(
        pb.LookupResult(status="OK", found=False, freshness=pb.Freshness(served_by="a")),
        pb.LookupResult(status="UNAVAILABLE", message="partition 3 is moving; retry"),
        pb.LookupResult(status="INVALID_ARGUMENT", message="public.t.id: not an integer"),
        pb.LookupResult(status="OK", found=True),  # a row of no columns
    )
    assert [(s, m, r.values if r else None, b) for s, m, r, b in decode_lookup_results(answer)] == [
        ("OK", "", None, "a"),
        ("UNAVAILABLE", "partition 3 is moving; retry", None, ""),
        ("INVALID_ARGUMENT", "public.t.id: not an integer", None, ""),
        ("OK", "", {}, ""),
    ]
    assert decode_lookup_results(b"") == []


def test_a_value_of_no_kind_is_refused_as_the_python_decoder_refuses_it() -> None:
    row = pb.Row(fields=[pb.Field(name="x", value=pb.Value())])
    with pytest.raises(ValueError, match="no kind"):
        decode_lookup_results(_answer(pb.LookupResult(status="OK", found=True, row=row)))


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_bytes_that_are_no_answer_raise_or_read_never_crash(data: bytes) -> None:
    with contextlib.suppress(ValueError, OverflowError):  # UnicodeDecodeError is a ValueError
        decode_lookup_results(data)


def _length_delimited(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_a_value_of_the_wrong_wire_type_is_refused() -> None:
    text_as_varint = b"\x30\x05"  # field 6 (text) written as a varint
    field = _length_delimited(1, b"x") + _length_delimited(2, text_as_varint)
    result = (
        _length_delimited(1, b"OK")
        + b"\x18\x01"
        + _length_delimited(4, _length_delimited(1, field))
    )
    with pytest.raises(ValueError, match="not a serialized BatchGetResponse"):
        decode_lookup_results(_length_delimited(1, result))


@settings(max_examples=1000)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_damaged_answers_raise_or_read_never_crash(edits: list[tuple[int, int]]) -> None:
    values = {
        "id": 7,
        "name": "naïve",
        "price": Decimal("1.50"),
        "at": datetime(2020, 1, 1, tzinfo=UTC),
    }
    answer = bytearray(
        _answer(pb.LookupResult(status="OK", found=True, row=_row(values), freshness=_freshness(3)))
    )
    for position, byte in edits:
        answer[position % len(answer)] = byte
    with contextlib.suppress(ValueError, OverflowError):
        decode_lookup_results(bytes(answer))


def test_text_that_is_not_utf8_raises_a_decode_error() -> None:
    result = _length_delimited(1, b"\xe5K") + _length_delimited(2, b"\xe5m")
    with pytest.raises(UnicodeDecodeError):
        decode_lookup_results(_length_delimited(1, result))
