"""The native Get path (fabric/serve/_locate.c, GetPath): the answer it writes is the one the
Python path writes for the same stored row and position; every request it does not take, and
every step that fails, is left to the general path; as a gRPC handler it hands those, and every
call once the server refuses, to the general handler."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.errors import StoreError
from fabric.materialize.partition import PartitionPosition, PartitionState
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import encode_key
from fabric.rpc.wire import AnswerWriter, RowWriter
from fabric.serve._locate import GetPath
from fabric.state.row import StoredRow

if TYPE_CHECKING:
    from fabric.serve._locate import PublishedRoute

_TABLE = TableSchema(
    "public",
    "t",
    (
        Column("id", ColumnType("bigint", "int8"), not_null=True),
        Column("name", ColumnType("text", "text")),
    ),
    ("id",),
)
_CODEC = KeyCodec(_TABLE)
_PARTITIONS = 6
_WRITER = RowWriter(_TABLE)
_ANSWERS = AnswerWriter("instance-3")
_POSITION = PartitionPosition(PartitionState.ACTIVE, position=120, end_offset=125)


class _Store:
    def __init__(self, rows: dict[bytes, bytes], fails: bool = False) -> None:
        self.rows = rows
        self.fails = fails
        self.asked: list[bytes] = []

    def get_stored(self, key: bytes) -> bytes | None:
        self.asked.append(key)
        if self.fails:
            raise StoreError("the store is closed")
        return self.rows.get(key)


class _Refusal:
    on = False


def _route(check_in_s: float = 60.0, partitions: int = _PARTITIONS) -> PublishedRoute:
    assert _CODEC.integer_layout is not None
    head, low, high = _CODEC.integer_layout
    spec = (head, low, high, b"id", partitions, ("public.t", "topic.t"))
    return spec, _WRITER.plan, time.monotonic() + check_in_s


def _stored(key: int, name: str | None = "row") -> bytes:
    image = orjson.dumps({"id": key, "name": name})
    return StoredRow(900, 1_750_000_000_000, abs(key) % 1000, image).encode()


def _request(value: Any = 42, table: str = "public.t", name: str = "id", **fields: Any) -> bytes:
    request: bytes = pb.GetRequest(
        table=table, key=encode_key([name], [value]), **fields
    ).SerializeToString()
    return request


def _path(
    store: _Store | None = None,
    routes: dict[bytes, PublishedRoute] | None = None,
    served: list[tuple[str, int]] | None = None,
) -> GetPath:
    store = store if store is not None else _Store({_CODEC.encode_integer(42): _stored(42)})
    asked = served if served is not None else []

    def serving(topic: str, partition: int) -> tuple[_Store, int, int] | None:
        asked.append((topic, partition))
        return store, _POSITION.position, _POSITION.end_offset

    return GetPath(
        routes if routes is not None else {b"public.t": _route()}, serving, b"instance-3"
    )


@pytest.mark.parametrize("key", [42, 7, 0, -(2**63), 2**63 - 1])
def test_an_answer_is_the_python_paths(key: int) -> None:
    record_key = _CODEC.encode_integer(key)
    stored = {record_key: _stored(key)} if key != 7 else {}  # 7: not found
    served: list[tuple[str, int]] = []
    answer = _path(_Store(stored), served=served).answer(_request(key))
    partition = partition_for(record_key, _PARTITIONS)
    expected = _ANSWERS.get_response(
        _WRITER, stored.get(record_key), partition=partition, applied_offset=119, lag_records=5
    )
    assert answer is not None
    assert answer == expected
    assert served == [("topic.t", partition)]
    assert pb.GetResponse.FromString(answer).found is (key != 7)


def test_an_end_offset_behind_the_position_reads_as_no_lag() -> None:
    store = _Store({_CODEC.encode_integer(42): _stored(42)})
    path = GetPath({b"public.t": _route()}, lambda topic, partition: (store, 130, 125), b"i")
    answer = path.answer(_request())
    assert answer is not None
    freshness = pb.GetResponse.FromString(answer).freshness
    assert (freshness.applied_offset, freshness.lag_records) == (129, 0)


def test_an_unnamed_key_field_is_taken() -> None:
    assert _path().answer(_request(name="")) is not None


@pytest.mark.parametrize(
    "request_bytes",
    [
        _request(name="other"),  # not the key column
        _request("42"),  # not an integer
        _request(table="public.unknown"),  # no published route
        _request(table=""),
        _request(bound=pb.PositionBound(min_lsn=5)),  # a bound: the general path waits for it
        pb.GetRequest(table="public.t").SerializeToString(),  # no key
        pb.GetRequest(table="public.t", key=encode_key(["id", "id"], [1, 2])).SerializeToString(),
        b"",
        b"\xff\xff\xff",  # not a message
        _request() + b"\x22\x00",  # a field GetRequest does not have
    ],
)
def test_requests_it_does_not_take_are_left_to_the_general_path(request_bytes: bytes) -> None:
    assert _path().answer(request_bytes) is None


def test_a_key_outside_the_column_type_is_left_to_the_general_path() -> None:
    small = TableSchema(
        "public", "t", (Column("id", ColumnType("smallint", "int2"), not_null=True),), ("id",)
    )
    codec = KeyCodec(small)
    assert codec.integer_layout is not None
    head, low, high = codec.integer_layout
    route = ((head, low, high, b"id", _PARTITIONS, ("public.t", "topic.t")), _WRITER.plan, 1e12)
    assert _path(routes={b"public.t": route}).answer(_request(40_000)) is None


def test_a_route_past_its_check_time_is_left_to_the_general_path() -> None:
    assert _path(routes={b"public.t": _route(check_in_s=-0.001)}).answer(_request()) is None


def test_a_partition_not_served_here_is_left_to_the_general_path() -> None:
    path = GetPath({b"public.t": _route()}, lambda topic, partition: None, b"instance-3")
    assert path.answer(_request()) is None


def test_a_failing_store_is_left_to_the_general_path() -> None:
    store = _Store({}, fails=True)
    assert _path(store).answer(_request()) is None
    assert store.asked == [_CODEC.encode_integer(42)]


def test_a_row_the_writer_declines_is_left_to_the_general_path() -> None:
    damaged = _Store({_CODEC.encode_integer(42): b"\x07not a stored row"})
    assert _path(damaged).answer(_request()) is None


def test_a_bad_published_route_is_an_error() -> None:
    with pytest.raises(TypeError):
        _path(routes={b"public.t": ("not", "a route")}).answer(_request())  # type: ignore[dict-item]


@settings(max_examples=1000)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_damaged_requests_never_crash_it(edits: list[tuple[int, int]]) -> None:
    request = bytearray(_request())
    for position, byte in edits:
        request[position % len(request)] = byte
    answer = _path().answer(bytes(request))
    assert answer is None or pb.GetResponse.FromString(answer).freshness.partition >= 0


class TestAsAHandler:
    def _handler(self, refusal: _Refusal, calls: list[tuple[bytes, object]]) -> Any:
        def general(request: bytes, context: object) -> str:
            calls.append((request, context))
            return "general"

        return _path().handling(refusal, general)

    def test_a_key_it_answers_never_reaches_the_general_handler(self) -> None:
        calls: list[tuple[bytes, object]] = []
        answer = self._handler(_Refusal(), calls)(_request(), "context")
        assert isinstance(answer, bytes)
        assert pb.GetResponse.FromString(answer).found
        assert calls == []

    def test_what_it_leaves_goes_to_the_general_handler_as_sent(self) -> None:
        calls: list[tuple[bytes, object]] = []
        request = _request(table="public.unknown")
        assert self._handler(_Refusal(), calls)(request, "context") == "general"
        assert calls == [(request, "context")]

    def test_once_the_server_refuses_every_call_goes_to_the_general_handler(self) -> None:
        calls: list[tuple[bytes, object]] = []
        refusal = _Refusal()
        handler = self._handler(refusal, calls)
        refusal.on = True
        assert handler(_request(), "context") == "general"
        assert calls == [(_request(), "context")]

    def test_a_path_not_made_for_handling_is_not_callable_as_one(self) -> None:
        with pytest.raises(TypeError):
            _path()(_request(), "context")
