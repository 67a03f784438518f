"""Malformed requests and records rejected at their boundary, each with a message naming the
problem: request bodies, table names, key values, scan and watch tokens, and records that are not
a change of the topic's table."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from fabric.core.admission import foreign_table, key_mismatch, tombstone_key_problem
from fabric.core.events import ChangeEvent, Op, Source, TruncateMarker
from fabric.errors import InvalidKeyError, MalformedEventError, UnknownTableError
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc
from fabric.rpc.values import decode_key, decode_table, decode_value
from fabric.serve import watch
from fabric.serve._locate import GetPath
from fabric.serve.handlers import SERVICE_NAME, Refusal, add_fabric_service
from fabric.serve.scanning import parse_scan_token, scan_partitions, scan_token

USERS = Source("public", "users", 100, 7, 1_764_000_000_000, snapshot=False)


# -- request bodies --------------------------------------------------------------------------


class _Answering:
    """Stands in for FabricService: answers every well-formed request."""

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> bytes:  # noqa: N802
        return pb.GetResponse(found=False).SerializeToString()

    def Scan(self, request: pb.ScanRequest, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802
        yield pb.ScanResponse().SerializeToString()

    BatchGet = GetTopology = Watch = Get

    def get_handler(
        self, refusal: object, general: Callable[[bytes, grpc.ServicerContext], bytes]
    ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        """The native Get handler, with no route: it hands every request to ``general``."""
        return GetPath({}, lambda topic, partition: None, b"instance").handling(refusal, general)


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_fabric_service(_Answering(), server, Refusal())  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            yield opened
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("Get", b"\xff\xff\xff"),  # a truncated varint
        ("Get", b"\x0a\x02\xc3\x28"),  # table: invalid UTF-8
        ("Scan", b"\x0a\x05ab"),  # a string longer than the body
        ("Get", b"\x12" + b"\x0a\x02" * 200),  # nested deeper than protobuf parses
    ],
)
def test_an_undecodable_request_is_invalid_argument(
    channel: grpc.Channel, method: str, body: bytes
) -> None:
    path = f"/{SERVICE_NAME}/{method}"
    if method == "Scan":
        call: Any = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
    else:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        answer = call(body, timeout=5)
        list(answer) if method == "Scan" else None
    error: Any = info.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    name = "ScanRequest" if method == "Scan" else "GetRequest"
    assert error.details().startswith(f"the request is not a serialized fabric.rpc.v1.{name} (")


def test_a_decodable_request_reaches_the_service(channel: grpc.Channel) -> None:
    call: Any = channel.unary_unary(
        f"/{SERVICE_NAME}/Get", request_serializer=None, response_deserializer=None
    )
    assert call(pb.GetRequest(table="users").SerializeToString(), timeout=5) == b""


# -- table names and key values ----------------------------------------------------------------


def test_table_names() -> None:
    assert decode_table("users") == "public.users"
    assert decode_table("auction.bids") == "auction.bids"
    assert decode_table("public." + "t" * 63) == "public." + "t" * 63
    with pytest.raises(InvalidKeyError, match="no table named"):
        decode_table("")
    with pytest.raises(InvalidKeyError, match="contains a NUL character"):
        decode_table("users\x00")
    with pytest.raises(UnknownTableError, match="Postgres names are at most 63 bytes") as info:
        decode_table("x" * (1 << 20))
    assert len(str(info.value)) < 200


def _key(*fields: tuple[str, pb.Value]) -> pb.Key:
    return pb.Key(fields=[pb.Field(name=n, value=v) for n, v in fields])


def test_a_key_naming_a_column_twice_is_refused() -> None:
    key = _key(("id", pb.Value(int=1)), ("id", pb.Value(int=2)))
    with pytest.raises(InvalidKeyError, match="the key names id more than once") as info:
        decode_key(key, ["id"], "public.users")
    assert info.value.column == "id"


def test_a_huge_field_name_is_refused_without_being_echoed() -> None:
    key = _key(("n" * (1 << 20), pb.Value(int=1)))
    with pytest.raises(InvalidKeyError, match=r"public\.users has no column 'nnn") as info:
        decode_key(key, ["id"], "public.users")
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (pb.Value(json="[" * 100_000), "JSON text nested too deeply"),
        (pb.Value(decimal="x" * (1 << 20)), "is not a decimal"),
        (pb.Value(date=2**31 - 1), "must have magnitude"),
        (pb.Value(interval=pb.Interval(months=2**31 - 1)), "too large"),
        (pb.Value(uuid="00000000-0000-0000-0000-00000000000g"), "base 16"),
        (pb.Value(), "the value has no kind set"),
    ],
)
def test_malformed_values_raise_value_errors_of_bounded_size(value: pb.Value, message: str) -> None:
    with pytest.raises((ValueError, OverflowError), match=message) as info:
        decode_value(value)
    assert len(str(info.value)) < 200


# -- scan and watch tokens ---------------------------------------------------------------------


def test_scan_tokens_name_a_partition_of_the_table() -> None:
    assert parse_scan_token(scan_token(2, b'{"id":1}'), 3) == (2, b'{"id":1}')
    assert parse_scan_token("", 3) == (0, None)
    for token in (scan_token(3, b"k"), scan_token(-1, b"k"), "OTk5", "garbage!", "%%%"):
        with pytest.raises(InvalidKeyError, match="is not one this service issued"):
            parse_scan_token(token, 3)


@pytest.mark.parametrize("partition", [-1, 3, 2**31 - 1])
def test_a_scan_of_a_partition_the_table_lacks_is_refused(partition: int) -> None:
    request = pb.ScanRequest(table="users", partition=partition)
    with pytest.raises(InvalidKeyError, match=f"partition {partition} is not one"):
        scan_partitions(request, 0, 3, "public.users")
    assert scan_partitions(pb.ScanRequest(table="users", partition=1), 0, 3, "t") == [1]
    assert scan_partitions(pb.ScanRequest(table="users"), 1, 3, "t") == [1, 2]


def _watch_token(positions: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(positions).encode()).decode()


@pytest.mark.parametrize(
    "positions",
    [{"0": -5}, {"0": 2**64}, {"0": True}, {"x": 1}, {"0": 1.5}, [1, 2]],
)
def test_watch_tokens_hold_offsets_of_partitions(positions: Any) -> None:
    with pytest.raises(InvalidKeyError, match="is not one this service issued"):
        watch._parse_token(_watch_token(positions))


def test_a_watch_token_it_issued_parses() -> None:
    assert watch._parse_token(watch._token({"0": 5, "m": 0})) == {"0": 5, "m": 0}


# -- records that are not a change of the topic's table ----------------------------------------


def test_an_event_names_its_table() -> None:
    assert foreign_table(USERS, "public", "users") is None
    assert foreign_table(USERS, "public", "items") == (
        "event of table public.users on the topic of public.items"
    )


@pytest.mark.parametrize(
    ("record_key", "problem"),
    [
        (b'{"id":7}', None),
        (b'{"id": 7}', None),  # spelled otherwise, same value
        (b'{"id":8}', "record key has id=8, the row id=7"),
        (b'{"id":"7"}', "record key has id='7', the row id=7"),
        (b'{"id":7.0}', "record key has id=7.0, the row id=7"),
        (b'{"nope":7}', "record key field nope is not a column of the row"),
        (b'{"id":null}', "record key field id is null"),
        (b"{}", "record key is not a JSON object of key columns"),
        (b"\xff\xfe", "record key is not JSON"),
    ],
)
def test_a_record_key_must_be_its_rows(record_key: bytes, problem: str | None) -> None:
    assert key_mismatch(record_key, {"id": 7, "name": "x"}) == problem


def test_a_tombstone_key_must_be_a_key_object() -> None:
    assert tombstone_key_problem(b'{"id":7}') is None
    assert tombstone_key_problem(b"garbage") == "record key is not JSON"


def _watched(record_key: bytes | None, value: bytes, *, at_marker_topic: bool = False) -> Any:
    def decode(image: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(image.get("id"), int):
            raise MalformedEventError("public.users.id (bigint): not an integer")
        return image

    def no_encoder() -> Any:
        raise AssertionError("no row expected")

    return watch._event(
        record_key,
        value,
        at_marker_topic=at_marker_topic,
        table="public.users",
        key=None,
        prefix=[],
        primary_key=["id"],
        decode_image=decode,
        encoder=no_encoder,
    )


def _value(event: ChangeEvent | TruncateMarker) -> bytes:
    if isinstance(event, TruncateMarker):
        return json.dumps(
            {
                "op": "m",
                "source": {"lsn": event.lsn},
                "message": {"prefix": f"cdc-fabric.truncate.{event.table}"},
            }
        ).encode()
    source = {"schema": event.source.schema, "table": event.source.table, "lsn": 5}
    doc = {"op": event.op.value, "before": event.before, "after": event.after, "source": source}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("record_key", "event"),
    [
        (b'{"id":8}', ChangeEvent(Op.CREATE, None, {"id": 7}, USERS, None)),
        (b"garbage", ChangeEvent(Op.CREATE, None, {"id": 7}, USERS, None)),
        (b'{"id":7}', ChangeEvent(Op.CREATE, None, {"id": 7}, USERS._replace(table="x"), None)),
        (b'{"id":"a"}', ChangeEvent(Op.CREATE, None, {"id": "a"}, USERS, None)),
        (b'{"p":1}', TruncateMarker("public.users", 10, None)),  # on the table topic
    ],
)
def test_watch_skips_what_the_materializer_dead_letters(
    record_key: bytes, event: ChangeEvent | TruncateMarker
) -> None:
    assert _watched(record_key, _value(event)) is None


def test_watch_shows_a_truncate_marker_from_the_marker_topic() -> None:
    value = _value(TruncateMarker("public.users", 10, None))
    shown = _watched(b'{"p":1}', value, at_marker_topic=True)
    assert shown is not None and shown.kind == pb.WatchEvent.TRUNCATE


def test_a_stopping_server_refuses_every_call_as_unavailable() -> None:
    from concurrent.futures import ThreadPoolExecutor

    refusal = Refusal()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_fabric_service(_Answering(), server, refusal)  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            stub = pb_grpc.FabricStub(opened)  # type: ignore[no-untyped-call]
            assert not stub.Get(pb.GetRequest(table="t"), timeout=5).found
            refusal.on = True
            with pytest.raises(grpc.RpcError) as refused:
                stub.Get(pb.GetRequest(table="t"), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "stopping" in (refused.value.details() or "")
    finally:
        server.stop(grace=None)
