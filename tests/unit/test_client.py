"""FabricClient against fake instances served in-process by gRPC: routing, retries, error
translation, streams that break, values, virtualized reads, and the query CLI."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any, NoReturn

import grpc
import pytest
from psycopg.rows import dict_row

from fabric import cli
from fabric.cli.query import parse_keys
from fabric.client import FabricClient, KeyColumn, PartitionInfo, TableInfo
from fabric.core.keyjson import encode_key
from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.errors import (
    FabricClientError,
    FabricError,
    FabricTimeoutError,
    FabricUnavailableError,
    InvalidKeyError,
    UnknownTableError,
    UnsupportedQueryError,
)
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc
from fabric.rpc.values import RowEncoder, decode_key
from fabric.rpc.values import encode_key as encode_key_message

PARTITIONS = 4

USERS = TableSchema(
    "public",
    "users",
    (
        Column("id", ColumnType("bigint", "int8")),
        Column("email", ColumnType("text", "text")),
        Column("rating", ColumnType("numeric(3,2)", "numeric")),
        Column("created_at", ColumnType("timestamp with time zone", "timestamptz")),
        Column("birth_date", ColumnType("date", "date")),
        Column("external_id", ColumnType("uuid", "uuid")),
        Column("tags", ColumnType("text[]", "text", is_array=True)),
        Column("profile", ColumnType("jsonb", "jsonb")),
        Column("photo", ColumnType("bytea", "bytea")),
        Column("wakes_at", ColumnType("time without time zone", "time")),
        Column("ttl", ColumnType("interval", "interval")),
        Column("score", ColumnType("double precision", "float8")),
    ),
    ("id",),
)
BIDS = TableSchema(
    "public",
    "bids",
    (
        Column("bid_no", ColumnType("integer", "int4")),
        Column("item_id", ColumnType("bigint", "int8")),
        Column("amount", ColumnType("numeric(12,2)", "numeric")),
    ),
    ("item_id", "bid_no"),
)
MOODS = TableSchema(
    "shop",
    "moods",
    (
        Column("mood", ColumnType("shop.mood", "shop.mood", enum_labels=("sad", "ok"))),
        Column("code", ColumnType("character(5)", "bpchar")),
        Column("n", ColumnType("integer", "int4")),
    ),
    ("mood", "code"),
)


def a_user(id_: int) -> dict[str, Any]:
    return {
        "id": id_,
        "email": f"u{id_}@example.com",
        "rating": Decimal("4.50"),
        "created_at": datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "birth_date": date(1969, 7, 20),
        "external_id": uuid.UUID(int=id_),
        "tags": ["a,b", None, 'say "hi"'],
        "profile": {"lang": "fr", "links": [1, 2.5, None]},
        "photo": b"\x00\xff",
        "wakes_at": clock(6, 30, 0, 1),
        "ttl": timedelta(days=3, seconds=7, microseconds=5),
        "score": float("inf"),
    }


# -- fake instances ------------------------------------------------------------------------------


@dataclass
class FakeTable:
    schema: TableSchema
    rows: dict[bytes, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.codec = KeyCodec(self.schema)
        self.encoder = RowEncoder(self.schema)

    def put(self, values: dict[str, Any]) -> None:
        self.rows[self.codec.encode({k: values[k] for k in self.schema.primary_key})] = values


class Cluster:
    """What every fake instance shares: the tables, the partition owners and a change log."""

    def __init__(self) -> None:
        self.tables = {t.qualified: FakeTable(t) for t in (USERS, BIDS, MOODS)}
        self.owners: dict[int, str] = {}
        self.endpoints: dict[str, str] = {}
        self.changes: list[pb.WatchEvent] = []

    def partition(self, key: bytes) -> int:
        return partition_for(key, PARTITIONS)

    def topology(self) -> pb.Topology:
        return pb.Topology(
            tables=[
                pb.TableInfo(
                    table=name,
                    topic=f"auction.{name}",
                    primary_key=table.schema.primary_key,
                    key_columns=[
                        pb.KeyColumn(
                            name=c.name,
                            pg_type=c.type.pg_type,
                            base_type=c.type.base,
                            is_enum=c.type.is_enum,
                        )
                        for n in table.schema.primary_key
                        for c in table.schema.columns
                        if c.name == n
                    ],
                    partitions=[
                        pb.PartitionInfo(
                            partition=p,
                            owner=self.owners[p],
                            endpoint=self.endpoints[self.owners[p]],
                            state="ACTIVE",
                        )
                        for p in range(PARTITIONS)
                    ],
                )
                for name, table in self.tables.items()
            ],
            instances=[pb.Instance(instance_id=i, endpoint=e) for i, e in self.endpoints.items()],
        )


class FakeInstance(pb_grpc.FabricServicer):
    """Answers from the shared tables as the partition's owner would (served_by = the owner),
    records what it was asked, and fails on demand."""

    def __init__(self, cluster: Cluster, instance_id: str) -> None:
        self.cluster = cluster
        self.instance_id = instance_id
        self.received: list[tuple[str, int]] = []  # (method, partition)
        self.batch_sizes: list[int] = []
        self.faults: list[grpc.StatusCode] = []  # the next calls fail with these
        self.lookup_status: dict[bytes, tuple[str, str]] = {}  # BatchGet per key, once
        self.break_stream_after: int | None = None  # Scan/Watch fail once after this many
        self.tokens: list[str] = []
        self.lock = threading.Lock()

    def _fault(self, context: grpc.ServicerContext) -> None:
        with self.lock:
            code = self.faults.pop(0) if self.faults else None
        if code is not None:
            context.abort(code, f"injected {code.name}")

    def _locate(
        self, context: grpc.ServicerContext, name: str, key: pb.Key
    ) -> tuple[FakeTable, bytes, int]:
        table = self.cluster.tables.get(name if "." in name else f"public.{name}")
        if table is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"table {name} is not captured")
        try:
            raw = table.codec.encode(decode_key(key, table.schema.primary_key, name))
        except FabricError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return table, raw, self.cluster.partition(raw)

    def _answer(self, table: FakeTable, raw: bytes, partition: int) -> pb.GetResponse:
        row = table.rows.get(raw)
        freshness = pb.Freshness(partition=partition, served_by=self.cluster.owners[partition])
        if row is None:
            return pb.GetResponse(found=False, freshness=freshness)
        return pb.GetResponse(found=True, row=table.encoder.row(row), freshness=freshness)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:  # noqa: N802
        self._fault(context)
        table, raw, partition = self._locate(context, request.table, request.key)
        self.received.append(("Get", partition))
        return self._answer(table, raw, partition)

    def BatchGet(  # noqa: N802
        self, request: pb.BatchGetRequest, context: grpc.ServicerContext
    ) -> pb.BatchGetResponse:
        self._fault(context)
        self.batch_sizes.append(len(request.lookups))
        results = []
        for lookup in request.lookups:
            table, raw, partition = self._locate(context, lookup.table, lookup.key)
            self.received.append(("BatchGet", partition))
            status = self.lookup_status.pop(raw, None)
            if status is not None:
                results.append(pb.LookupResult(status=status[0], message=status[1]))
                continue
            answer = self._answer(table, raw, partition)
            results.append(
                pb.LookupResult(
                    status="OK", found=answer.found, row=answer.row, freshness=answer.freshness
                )
            )
        return pb.BatchGetResponse(results=results)

    def Scan(  # noqa: N802
        self, request: pb.ScanRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ScanResponse]:
        self._fault(context)
        self.tokens.append(request.resume_token)
        table = self.cluster.tables[request.table]
        after = tuple(request.resume_token.split(":")) if request.resume_token else ("-1", "")
        wanted = [request.partition] if request.HasField("partition") else range(PARTITIONS)
        sent = 0
        for raw in sorted(table.rows, key=lambda k: (self.cluster.partition(k), k)):
            partition = self.cluster.partition(raw)
            if partition not in wanted or (partition, raw.hex()) <= (int(after[0]), after[1]):
                continue
            if sent == self.break_stream_after:
                self.break_stream_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "the stream broke")
            self.received.append(("Scan", partition))
            sent += 1
            yield pb.ScanResponse(
                row=table.encoder.row(table.rows[raw]),
                freshness=pb.Freshness(
                    partition=partition, served_by=self.cluster.owners[partition]
                ),
                resume_token=f"{partition}:{raw.hex()}",
            )
            if request.limit and sent == request.limit:
                return

    def GetTopology(  # noqa: N802
        self, request: pb.GetTopologyRequest, context: grpc.ServicerContext
    ) -> pb.Topology:
        self._fault(context)
        return self.cluster.topology()

    def Watch(  # noqa: N802
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchEvent]:
        self._fault(context)
        self.tokens.append(request.resume_token)
        start = int(request.resume_token or 0)
        for sent, event in enumerate(self.cluster.changes[start:]):
            if sent == self.break_stream_after:
                self.break_stream_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "the instance is stopping")
            yield event
        while context.is_active():
            time.sleep(0.01)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("abort returns only by raising")


@dataclass
class Fabric:
    cluster: Cluster
    instances: dict[str, FakeInstance]
    servers: dict[str, grpc.Server]

    @property
    def endpoints(self) -> list[str]:
        return [self.cluster.endpoints[i] for i in self.instances]

    def client(self, **options: Any) -> FabricClient:
        return FabricClient(self.endpoints, timeout_s=options.pop("timeout_s", 2.0), **options)

    def owner_of(self, table: str, key: dict[str, Any]) -> FakeInstance:
        raw = self.cluster.tables[table].codec.encode(key)
        return self.instances[self.cluster.owners[self.cluster.partition(raw)]]


@pytest.fixture
def fabric() -> Iterator[Fabric]:
    """Two fake instances, "a" owning the even partitions and "b" the odd ones."""
    cluster = Cluster()
    instances: dict[str, FakeInstance] = {}
    servers: dict[str, grpc.Server] = {}
    for instance_id in ("a", "b"):
        instance = FakeInstance(cluster, instance_id)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_FabricServicer_to_server(instance, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        cluster.endpoints[instance_id] = f"127.0.0.1:{port}"
        instances[instance_id], servers[instance_id] = instance, server
    cluster.owners = {p: "ab"[p % 2] for p in range(PARTITIONS)}
    users = cluster.tables["public.users"]
    for id_ in range(1, 41):
        users.put(a_user(id_))
    for item_id in range(1, 6):
        for bid_no in range(1, 4):
            cluster.tables["public.bids"].put(
                {"bid_no": bid_no, "item_id": item_id, "amount": Decimal(f"{item_id}.{bid_no}0")}
            )
    cluster.tables["shop.moods"].put({"mood": "ok", "code": "ab   ", "n": 1})
    try:
        yield Fabric(cluster, instances, servers)
    finally:
        for server in servers.values():
            server.stop(0)


# -- routing -----------------------------------------------------------------------------------


def test_a_key_routes_to_the_partition_of_its_record_key_bytes(fabric: Fabric) -> None:
    with fabric.client() as client:
        for id_ in (1, 2, 3, 2**40, -7):
            expected = partition_for(encode_key([("id", id_)]), PARTITIONS)
            assert client.partition_of("users", id_).partition == expected
            assert client.partition_of("public.users", {"id": id_}).partition == expected
        composite = partition_for(encode_key([("item_id", 7), ("bid_no", 2)]), PARTITIONS)
        assert client.partition_of("bids", {"bid_no": 2, "item_id": 7}).partition == composite
        assert client.partition_of("bids", (7, 2)).partition == composite
        # An enum routes as its label; char(5) is padded as Postgres stores it.
        padded = partition_for(encode_key([("mood", "ok"), ("code", "ab   ")]), PARTITIONS)
        assert client.partition_of("shop.moods", ("ok", "ab")).partition == padded
        target = client.partition_of("users", 1)
        assert target == PartitionInfo(
            target.partition,
            fabric.cluster.owners[target.partition],
            fabric.cluster.endpoints[fabric.cluster.owners[target.partition]],
            "ACTIVE",
            0,
        )


def test_the_smart_client_calls_every_owner_directly(fabric: Fabric) -> None:
    with fabric.client() as client:
        for id_ in range(1, 41):
            assert client.get("users", id_) == a_user(id_)
        rows = client.get_many("users", list(range(1, 41)))
        assert rows == [a_user(i) for i in range(1, 41)]
        assert len(list(client.scan("users"))) == 40
        assert client.stats.forwarded == 0
        assert client.stats.topology_reads == 1
    for instance in fabric.instances.values():
        owned = {p for p, owner in fabric.cluster.owners.items() if owner == instance.instance_id}
        assert {partition for _, partition in instance.received} <= owned
        assert {method for method, _ in instance.received} == {"Get", "BatchGet", "Scan"}


def test_a_client_that_does_not_route_takes_turns_and_gets_forwarded(fabric: Fabric) -> None:
    with fabric.client(smart=False) as client:
        for id_ in range(1, 41):
            assert client.get("users", id_) == a_user(id_)
        assert client.stats.calls == 40
        assert 0 < client.stats.forwarded < 40
    assert len(fabric.instances["a"].received) == len(fabric.instances["b"].received) == 20


def test_an_answer_from_another_owner_makes_the_client_read_the_topology_again(
    fabric: Fabric,
) -> None:
    with fabric.client() as client:
        assert client.get("users", 1) is not None
        old = fabric.owner_of("public.users", {"id": 1})
        fabric.cluster.owners = {p: "ba"[p % 2] for p in range(PARTITIONS)}  # a rebalance
        new = fabric.owner_of("public.users", {"id": 1})
        assert client.get("users", 1) is not None  # the old owner forwards: served by the new
        assert client.stats.topology_reads == 1
        old.received.clear()
        assert client.get("users", 1) is not None
        assert client.stats.topology_reads == 2
        assert old.received == [] and new.received[-1][0] == "Get"


def test_the_topology_is_read_again_when_it_is_old(
    fabric: Fabric, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fabric.client.topology.TOPOLOGY_MAX_AGE_S", -1.0)  # always too old
    with fabric.client() as client:
        client.get("users", 1)
        client.get("users", 1)
        assert client.stats.topology_reads == 2
        # When it cannot be read again, the last one still routes.
        for instance in fabric.instances.values():
            instance.faults = [grpc.StatusCode.UNAVAILABLE] * 2
        assert client.get("users", 1) == a_user(1)
        assert client.stats.topology_reads == 2


# -- failures ------------------------------------------------------------------------------------


def test_unavailable_owner_falls_back_to_another_instance(fabric: Fabric) -> None:
    with fabric.client() as client:
        client.topology()
        owner = fabric.owner_of("public.users", {"id": 3})
        owner.faults = [grpc.StatusCode.UNAVAILABLE]
        assert client.get("users", 3) == a_user(3)
        assert client.stats.retries == 1
        assert client.stats.forwarded == 1  # the other instance answered for the owner
        client.get("users", 3)
        assert client.stats.topology_reads == 2  # read again after the UNAVAILABLE


def test_a_stopped_instance_is_routed_around(fabric: Fabric) -> None:
    with fabric.client() as client:
        client.topology()
        fabric.servers["a"].stop(0)
        for id_ in range(1, 11):
            assert client.get("users", id_) == a_user(id_)
        assert client.get_many("users", [1, 2, 3]) == [a_user(1), a_user(2), a_user(3)]
        assert len(list(client.scan("users"))) == 40


def test_unavailable_everywhere_raises_with_the_service_message(fabric: Fabric) -> None:
    for instance in fabric.instances.values():
        instance.faults = [grpc.StatusCode.UNAVAILABLE] * 10
    with fabric.client(retries=2) as client, pytest.raises(FabricUnavailableError) as caught:
        client.get("users", 1)
    assert "injected UNAVAILABLE" in str(caught.value)
    assert str(caught.value).startswith("reading the topology: no instance answered within 2s")


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.NOT_FOUND, UnknownTableError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidKeyError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, FabricTimeoutError),
        (grpc.StatusCode.INTERNAL, FabricClientError),
    ],
)
def test_errors_are_translated_once_with_the_service_message(
    fabric: Fabric, code: grpc.StatusCode, error: type[FabricError]
) -> None:
    with fabric.client() as client:
        client.topology()
        fabric.owner_of("public.users", {"id": 1}).faults = [code]
        with pytest.raises(error) as caught:
            client.get("users", 1)
    assert type(caught.value) is error
    suffix = f" ({code.name})" if error is FabricClientError else ""
    assert str(caught.value) == f"public.users key 1: injected {code.name}{suffix}"


def test_keys_are_checked_before_any_call(fabric: Fabric) -> None:
    with fabric.client() as client:
        with pytest.raises(InvalidKeyError) as caught:
            client.get("bids", 7)
        assert str(caught.value) == (
            "public.bids: the key is (item_id, bid_no): pass a mapping or a sequence"
        )
        with pytest.raises(InvalidKeyError) as caught:
            client.get("bids", {"item_id": 7, "bid": 2})
        assert (
            str(caught.value) == "public.bids: the key is (item_id, bid_no); missing bid_no; "
            "bid not in the key"
        )
        with pytest.raises(InvalidKeyError) as caught:
            client.get("users", "7")
        assert str(caught.value) == "public.users.id: expected int, got str '7'"
        with pytest.raises(UnknownTableError) as unknown:
            client.get("nope", 1)
        assert str(unknown.value) == (
            "table public.nope is not materialized by the fabric (it serves public.users, "
            "public.bids, shop.moods)"
        )
        assert client.get("users", 999) is None
        assert sum(len(i.received) for i in fabric.instances.values()) == 1


# -- many keys, scans, watches ---------------------------------------------------------------------


def test_get_many_batches_per_owner_at_most_a_thousand_keys(fabric: Fabric) -> None:
    users = fabric.cluster.tables["public.users"]
    for id_ in range(100, 3100):
        users.put({**a_user(id_), "profile": None})
    keys = [*range(3099, 99, -1), 0, 1]
    with fabric.client() as client:
        rows = client.get_many("users", keys)
    assert [r["id"] if r else None for r in rows] == [*range(3099, 99, -1), None, 1]
    sizes = [s for i in fabric.instances.values() for s in i.batch_sizes]
    assert max(sizes) == 1000 and sum(sizes) == len(keys)


def test_get_many_retries_lookups_whose_partition_moves_and_names_failing_keys(
    fabric: Fabric,
) -> None:
    codec = fabric.cluster.tables["public.users"].codec
    with fabric.client() as client:
        fabric.owner_of("public.users", {"id": 4}).lookup_status[codec.encode([4])] = (
            "UNAVAILABLE",
            "public.users: partition 1 is moving or restoring; retry",
        )
        assert client.get_many("users", [4, 5]) == [a_user(4), a_user(5)]
        fabric.owner_of("public.users", {"id": 6}).lookup_status[codec.encode([6])] = (
            "INVALID_ARGUMENT",
            "bad",
        )
        with pytest.raises(InvalidKeyError) as caught:
            client.get_many("users", [5, 6])
    assert str(caught.value) == "public.users key 6: bad"


def test_scan_prefix_limit_and_a_broken_stream_resumed_once(fabric: Fabric) -> None:
    with fabric.client() as client:
        client.topology()
        for instance in fabric.instances.values():
            instance.break_stream_after = 2
        ids = sorted(row["id"] for row in client.scan("users"))
        assert ids == list(range(1, 41))
        assert client.stats.retries == 2
        resumed = [t for i in fabric.instances.values() for t in i.tokens if t]
        assert len(resumed) == 2
        assert len(list(client.scan("users", limit=7))) == 7
        bids = list(client.scan("bids", prefix={"item_id": 2}))
        # The fake ignores the prefix; the request carries it as a named key prefix.
        assert len(bids) == 15


def test_watch_follows_changes_and_resumes_on_another_instance(fabric: Fabric) -> None:
    encoder = fabric.cluster.tables["public.users"].encoder
    for n in range(1, 6):
        fabric.cluster.changes.append(
            pb.WatchEvent(
                kind=pb.WatchEvent.UPSERT,
                key=encode_key_message(["id"], [n]),
                row=encoder.row(a_user(n)),
                freshness=pb.Freshness(lsn=100 + n, commit_time_ms=1000 + n),
                resume_token=str(n),
            )
        )
    fabric.cluster.changes.append(
        pb.WatchEvent(
            kind=pb.WatchEvent.DELETE, key=encode_key_message(["id"], [1]), resume_token="6"
        )
    )
    fabric.cluster.changes.append(pb.WatchEvent(kind=pb.WatchEvent.TRUNCATE, resume_token="7"))
    for instance in fabric.instances.values():
        instance.break_stream_after = 2
    with fabric.client() as client:
        changes = list(client.watch("users", idle_timeout_s=0.5))
    assert [(c.kind, c.key, c.resume_token) for c in changes] == [
        *(("upsert", {"id": n}, str(n)) for n in range(1, 6)),
        ("delete", {"id": 1}, "6"),
        ("truncate", {}, "7"),
    ]
    assert changes[0].row == a_user(1) and changes[0].lsn == 101
    assert changes[0].commit_time_ms == 1001 and changes[5].row is None
    tokens = sorted(t for i in fabric.instances.values() for t in i.tokens)
    assert tokens == ["", "2", "4"]


def test_closing_the_client_ends_a_watch_quietly_and_refuses_calls(fabric: Fabric) -> None:
    client = fabric.client()
    changes: list[Any] = []
    watching = threading.Thread(target=lambda: changes.extend(client.watch("users")))
    watching.start()
    deadline = time.monotonic() + 5
    while not any(i.tokens for i in fabric.instances.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    client.close()
    watching.join(timeout=5)
    assert not watching.is_alive() and changes == []
    with pytest.raises(FabricClientError) as caught:
        client.get("users", 1)
    assert str(caught.value) == "the client is closed"


# -- values ----------------------------------------------------------------------------------------


def test_rows_carry_psycopg_types_and_freshness(fabric: Fabric) -> None:
    with fabric.client() as client:
        row = client.get_row("users", {"id": 5})
    assert row is not None
    expected = a_user(5)
    assert row.values == expected
    assert list(row.values) == list(expected)
    assert [type(v) for v in row.values.values()] == [type(v) for v in expected.values()]
    assert row.freshness.served_by == fabric.owner_of("public.users", {"id": 5}).instance_id


# -- virtualized reads -----------------------------------------------------------------------------


def test_query_answers_key_reads_like_a_cursor(fabric: Fabric) -> None:
    with fabric.client() as client:
        sql = "SELECT id, email FROM users WHERE id = ANY(%s) ORDER BY id DESC"
        assert client.query(sql, [[3, 1, 3, 999, None]]) == [
            (3, "u3@example.com"),
            (1, "u1@example.com"),
        ]
        sql = "SELECT amount FROM bids WHERE bid_no = %(no)s AND item_id IN (2, 1)"
        assert client.query(sql, {"no": 3}, row_factory=dict_row) == [
            {"amount": Decimal("1.30")},
            {"amount": Decimal("2.30")},
        ]
        assert client.query("SELECT * FROM users WHERE id = 999", row_factory="dict") == []
        assert client.stats.forwarded == 0


@dataclass
class FakeConnection:
    """Records what the fallback ran; answers one fixed row."""

    ran: list[tuple[str, Any, Any]] = field(default_factory=list)

    def cursor(self, row_factory: Any) -> FakeConnection:
        self._factory = row_factory
        return self

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, params: Any) -> None:
        self.ran.append((sql, params, self._factory))

    def fetchall(self) -> list[Any]:
        return [("from postgres",)]


def test_query_refuses_or_falls_back_to_postgres(fabric: Fabric) -> None:
    conn = FakeConnection()
    with fabric.client() as client:
        sql = "SELECT * FROM users WHERE email = %s"
        with pytest.raises(UnsupportedQueryError):
            client.query(sql, ["x"])
        assert client.query(sql, ["x"], fallback=conn) == [("from postgres",)]  # type: ignore[arg-type]
        other = "SELECT * FROM orders WHERE id = 1"
        with pytest.raises(UnknownTableError):
            client.query(other)
        client.query(other, row_factory="dict", fallback=conn)  # type: ignore[arg-type]
        with pytest.raises(UnsupportedQueryError):
            client.query("SELECT * FROM users WHERE id = 1", row_factory=tuple)
    assert conn.ran == [(sql, ["x"], conn.ran[0][2]), (other, None, dict_row)]


def test_query_checks_column_names_even_without_rows(fabric: Fabric) -> None:
    with fabric.client() as client:
        with pytest.raises(FabricError) as caught:
            client.query("SELECT id, nickname FROM users WHERE id = 999")
        assert str(caught.value) == "column nickname does not exist in public.users"
        assert client.query("SELECT id, email FROM users WHERE id = 999") == []


# -- the query CLI -------------------------------------------------------------------------------


def test_cli_keys_from_words() -> None:
    info = TableInfo(
        "public.bids",
        "t",
        ("item_id", "bid_no"),
        (
            KeyColumn("item_id", "bigint", "int8", False),
            KeyColumn("bid_no", "integer", "int4", False),
        ),
        (),
    )
    words = ["item_id=1", "bid_no=2", "bid_no=3", "item_id=4"]
    assert list(parse_keys(info, words)) == [
        {"item_id": 1, "bid_no": 2},
        {"bid_no": 3, "item_id": 4},
    ]
    with pytest.raises(InvalidKeyError) as caught:
        list(parse_keys(info, ["item_id=1", "item_id=2", "bid_no=1"]))
    assert str(caught.value) == "public.bids: a key misses bid_no"
    text = TableInfo("public.t", "t", ("k",), (KeyColumn("k", "text", "text", False),), ())
    assert list(parse_keys(text, ["42", '"x"', "k=a=b", "x=y"])) == [
        {"k": "42"},
        {"k": "x"},
        {"k": "a=b"},
        {"k": "x=y"},
    ]


def test_cli_prints_json_lines_and_errors(
    fabric: Fabric, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ["--endpoint", fabric.endpoints[0]]
    assert cli.main(["get", "users", "1", "999", *endpoint], environ={}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0]) == {
        "id": 1,
        "email": "u1@example.com",
        "rating": "4.50",
        "created_at": "2025-01-02T03:04:05.678901+00:00",
        "birth_date": "1969-07-20",
        "external_id": "00000000-0000-0000-0000-000000000001",
        "tags": ["a,b", None, 'say "hi"'],
        "profile": {"lang": "fr", "links": [1, 2.5, None]},
        "photo": "AP8=",
        "wakes_at": "06:30:00.000001",
        "ttl": "P3DT0H0M7.000005S",
        "score": "inf",
    }
    assert lines[1:] == ["null"]
    assert cli.main(["get", "bids", "item_id=2", "bid_no=1", *endpoint], environ={}) == 0
    assert json.loads(capsys.readouterr().out) == {"bid_no": 1, "item_id": 2, "amount": "2.10"}
    assert (
        cli.main(["scan", "bids", "--prefix", "item_id=2", "--limit", "2", *endpoint], environ={})
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert cli.main(["topology", *endpoint], environ={}) == 0
    topology = json.loads(capsys.readouterr().out)
    assert [t["table"] for t in topology["tables"]] == ["public.users", "public.bids", "shop.moods"]
    assert cli.main(["get", "nope", "1", *endpoint], environ={}) == 1
    assert capsys.readouterr().err.startswith("fabric: table public.nope is not materialized")
    assert cli.main(["get", "users", "x", *endpoint], environ={}) == 1
    assert capsys.readouterr().err == "fabric: id: 'x' is not a bigint\n"


def test_cli_watch_stops_after_max_changes(
    fabric: Fabric, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in (1, 2, 3):
        fabric.cluster.changes.append(
            pb.WatchEvent(
                kind=pb.WatchEvent.DELETE, key=encode_key_message(["id"], [n]), resume_token=str(n)
            )
        )
    argv = ["watch", "users", "--max", "2", "--endpoint", fabric.endpoints[0]]
    assert cli.main(argv, environ={}) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {
            "kind": "delete",
            "key": {"id": n},
            "row": None,
            "lsn": 0,
            "commit_time_ms": 0,
            "resume_token": str(n),
        }
        for n in (1, 2)
    ]
    argv = ["watch", "users", "--resume", "2", "--idle-timeout", "0.3", "--key", "id=3"]
    assert cli.main([*argv, "--endpoint", fabric.endpoints[0]], environ={}) == 0
    assert [json.loads(x)["resume_token"] for x in capsys.readouterr().out.splitlines()] == ["3"]
