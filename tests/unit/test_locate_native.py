"""The native BatchGet locator (fabric/serve/_locate.c) against the Python reference: the record
key KeyCodec.encode_integer writes and Kafka's partition of it; and every lookup it does not take
left to the general path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import encode_key, encode_value
from fabric.serve._locate import locate

if TYPE_CHECKING:
    from fabric.serve._locate import RouteSpec

INT8 = ColumnType("bigint", "int8")
INT2 = ColumnType("smallint", "int2")


def _spec(column_type: ColumnType, partitions: int, table: str = "public.t") -> RouteSpec:
    codec = _codec(column_type)
    assert codec.integer_layout is not None
    head, low, high = codec.integer_layout
    return (head, low, high, b"id", partitions, (table, "topic"))


def _codec(column_type: ColumnType) -> KeyCodec:
    return KeyCodec(
        TableSchema("public", "t", (Column("id", column_type, not_null=True),), ("id",))
    )


def _request(*lookups: pb.GetRequest) -> bytes:
    serialized: bytes = pb.BatchGetRequest(lookups=lookups).SerializeToString()
    return serialized


def _get(value: Any, table: str = "public.t", name: str = "id") -> pb.GetRequest:
    return pb.GetRequest(table=table, key=encode_key([name], [value]))


def _located(
    request: bytes, routes: dict[str, RouteSpec | None]
) -> tuple[dict[int, tuple[int, bytes]], list[int], bool]:
    """Each located lookup's (partition, record key) by index, the others, and the bound flag."""
    answer = locate(request, routes.get)
    assert answer is not None
    groups, unlocated, bounded = answer
    found = {}
    for by_partition in groups.values():
        for partition, (indexes, keys) in by_partition.items():
            for index, key in zip(indexes, keys, strict=True):
                found[index] = (partition, key)
    return found, unlocated, bounded


@settings(max_examples=300)
@given(
    values=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=40),
    partitions=st.integers(1, 64),
)
def test_keys_and_partitions_are_the_python_ones(values: list[int], partitions: int) -> None:
    codec = _codec(INT8)
    found, unlocated, bounded = _located(
        _request(*(_get(v) for v in values)), {"public.t": _spec(INT8, partitions)}
    )
    assert unlocated == [] and not bounded
    for index, value in enumerate(values):
        key = codec.encode_integer(value)
        assert found[index] == (partition_for(key, partitions), key)


def test_an_unnamed_key_field_is_taken_and_lookups_group_by_partition() -> None:
    request = _request(
        *(pb.GetRequest(table="public.t", key=encode_key([""], [v])) for v in range(50))
    )
    answer = locate(request, {"public.t": _spec(INT8, 6)}.get)
    assert answer is not None
    groups, unlocated, _ = answer
    (by_partition,) = groups.values()
    assert unlocated == []
    assert sorted(i for indexes, _ in by_partition.values() for i in indexes) == list(range(50))
    codec = _codec(INT8)
    for partition, (_, keys) in by_partition.items():
        assert all(partition_for(k, 6) == partition for k in keys)
    assert {k for _, keys in by_partition.values() for k in keys} == {
        codec.encode_integer(v) for v in range(50)
    }


def test_every_other_shape_is_left_to_the_general_path() -> None:
    two_fields = pb.GetRequest(table="public.t", key=encode_key(["id", "x"], [1, 2]))
    text = pb.GetRequest(table="public.t", key=pb.Key(fields=[pb.Field(value=encode_value("1"))]))
    no_key = pb.GetRequest(table="public.t")
    lookups = [
        _get(1),  # 0: taken
        _get(1, name="other"),  # another column's name
        two_fields,
        text,
        no_key,
        _get(40_000, table="public.small"),  # outside smallint
        _get(7, table="public.unknown"),  # no route
        pb.GetRequest(key=encode_key(["id"], [1])),  # no table
        _get(2, table="public.small"),  # 8: taken
    ]
    found, unlocated, bounded = _located(
        _request(*lookups), {"public.t": _spec(INT8, 3), "public.small": _spec(INT2, 3)}
    )
    assert sorted(found) == [0, 8]
    assert unlocated == [1, 2, 3, 4, 5, 6, 7]
    assert not bounded


def test_a_bound_marks_the_batch() -> None:
    bounded_get = _get(3)
    bounded_get.bound.min_lsn = 10
    _, _, bounded = _located(_request(_get(1), bounded_get), {"public.t": _spec(INT8, 3)})
    assert bounded


def test_routes_are_asked_once_per_table_name() -> None:
    asked: list[str] = []

    def route_of(name: str) -> RouteSpec | None:
        asked.append(name)
        return _spec(INT8, 4) if name == "public.t" else None

    request = _request(_get(1), _get(2, table="public.u"), _get(3), _get(4, table="public.u"))
    answer = locate(request, route_of)
    assert answer is not None
    assert sorted(asked) == ["public.t", "public.u"]
    assert answer[1] == [1, 3]


def test_an_empty_batch_locates_nothing() -> None:
    assert locate(b"", lambda _: None) == ({}, [], False)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_bytes_that_are_no_request_never_crash_it(data: bytes) -> None:
    answer = locate(data, {"public.t": _spec(INT8, 3)}.get)
    assert answer is None or isinstance(answer[1], list)


@settings(max_examples=1000)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_damaged_requests_never_crash_it(edits: list[tuple[int, int]]) -> None:
    bounded_get = _get(3)
    bounded_get.bound.min_lsn = 10
    request = bytearray(_request(_get(1), _get(-(2**63)), bounded_get, _get(9, table="public.u")))
    for position, byte in edits:
        request[position % len(request)] = byte
    answer = locate(bytes(request), {"public.t": _spec(INT8, 3)}.get)
    assert answer is None or isinstance(answer[1], list)
