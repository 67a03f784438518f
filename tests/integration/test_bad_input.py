"""Bad input, for real: garbage written straight into a captured table topic, and every RPC fuzzed
with malformed, oversized and wrong-typed requests, against two `fabric serve` processes.

Garbage records must each reach the dead-letter topic with a reason, change no stored row, show
as no change to a watch, and leave lookups and `fabric verify` exact. Fuzzed calls must each end,
within their deadline, with a status that names the problem (never UNKNOWN or INTERNAL), and leave
both instances SERVING with every store's content unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric import cli
from fabric.core.partitioner import partition_for
from fabric.materialize import deadletters
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import decode_row
from fabric.stack.ports import free_ports
from tests.integration.test_query_service import (
    PARTITIONS,
    SERVICE,
    TABLES,
    Capture,
    Cluster,
    Instance,
    WatchStream,
    capture,
    code_of,
    rename,
    sweep,
    wait_until,
)

# Hypothesis warns that a megabyte example has a large repr: that example is the point.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
__all__ = ["capture"]  # the module's captured sample tables, shared with test_query_service

CALL_S = 10.0  # every fuzzed call's deadline
WATCH_S = 1.0  # a fuzzed Watch that starts streaming is cancelled after this long
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
}
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def pair(
    capture: Capture, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Two instances of one group, settled and holding every source row."""
    root = tmp_path_factory.mktemp("bad-input")
    env = {**stack_env, "FABRIC_TOPIC_PREFIX": capture.prefix, "FABRIC_HANDOVER_TIMEOUT_S": "5"}
    processes: list[subprocess.Popen[bytes]] = []
    ports = free_ports(4)  # a gRPC and a forwarding port each
    instances = [
        Instance(
            instance_id=f"{capture.prefix}-bad-{name}",
            port=port,
            peer_port=peer_port,
            state_dir=root / name,
            log_dir=root,
            env=env,
            group=f"{capture.prefix}-bad",
            channel=grpc.insecure_channel(f"127.0.0.1:{port}"),
            processes=processes,
        )
        for name, port, peer_port in zip("ab", ports[:2], ports[2:], strict=True)
    ]
    cluster = Cluster(capture, instances)
    try:
        for instance in instances:
            instance.start()
        wait_until("two settled instances", lambda: cluster.problem(instances))
        wait_until("every source row materialized", lambda: sweep(instances[0], capture.rows()))
        yield cluster
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for instance in instances:
            instance.channel.close()


def digests(instance: Instance) -> dict[str, str]:
    """Per table, a digest of every stored row and the record that wrote it, read by Scan."""
    found = {}
    for table in TABLES:
        rows = sorted(
            r.row.SerializeToString() + b"@%d/%d" % (r.freshness.partition, r.freshness.offset)
            for r in instance.stub.Scan(pb.ScanRequest(table=table), timeout=CALL_S)
        )
        found[table] = hashlib.sha256(b"\n".join(rows)).hexdigest()
    return found


def still_sound(cluster: Cluster, before: dict[str, str]) -> None:
    """Both instances alive, SERVING, settled, finding every source row, and storing exactly
    what they stored ``before``."""
    for instance in cluster.instances:
        assert instance.running, f"{instance.instance_id} exited:\n{instance.log_text()[-3000:]}"
        assert instance.health() == health_pb2.HealthCheckResponse.SERVING
        assert instance.health(SERVICE) == health_pb2.HealthCheckResponse.SERVING
    assert cluster.problem(cluster.instances) is None
    for instance in cluster.instances:
        assert digests(instance) == before, instance.instance_id
    assert sweep(cluster.instances[1], cluster.capture.rows()) is None


# -- 1. garbage in a CDC topic -------------------------------------------------------------------


def first_record(bootstrap: str, topic: str, key: bytes) -> dict[str, Any]:
    """The value of the first record of ``key`` on ``topic``, as Debezium wrote it."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bad-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition_for(key, PARTITIONS), 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None and msg.key() == key and msg.value():
                value: dict[str, Any] = json.loads(msg.value() or b"")
                return value
    finally:
        consumer.close()
    pytest.fail(f"no record of {key!r} on {topic}")


def garbage(real: dict[str, Any], user: int, other: int) -> list[tuple[str, bytes, bytes | None]]:
    """(what, record key, value) of every kind of bad record; keys of row ``user`` unless the
    case is about the key."""
    rng = random.Random(20261128)

    def event(**changes: Any) -> bytes:
        doc = json.loads(json.dumps(real))
        for path, value in changes.items():
            *parents, leaf = path.split("__")
            target = doc
            for parent in parents:
                target = target[parent]
            if value is _DROP:
                target.pop(leaf, None)
            else:
                target[leaf] = value
        return json.dumps(doc).encode()

    key = b'{"id":%d}' % user
    return [
        ("random bytes", key, rng.randbytes(200)),
        ("random key and bytes", rng.randbytes(12), rng.randbytes(300)),
        ("empty value, garbage key", rng.randbytes(8), b""),
        ("tombstone, garbage key", b"\xff\xfegarbage", None),
        ("tombstone, null key field", b'{"id":null}', None),
        ("JSON array", key, b"[1, 2, 3]"),
        ("JSON string", key, b'"payload"'),
        ("JSON null", key, b"null"),
        ("empty object", key, b"{}"),
        ("schema envelope without payload", key, b'{"schema": {"type": "struct"}}'),
        ("no op", key, event(op=_DROP)),
        ("unknown op", key, event(op="x")),
        ("op of the wrong type", key, event(op=5)),
        ("no source", key, event(source=_DROP)),
        ("lsn as text", key, event(source__lsn="0/16B3748")),
        ("ts_ms as text", key, event(ts_ms="now")),
        ("create without after", key, event(after=None)),
        ("after as a list", key, event(after=[1, 2])),
        ("delete without before", key, event(op="d", before=None)),
        ("before as a string", key, event(op="d", before="row")),
        ("foreign logical message", key, event(op="m", message={"prefix": "other"})),
        ("after without the key column", key, event(after__id=_DROP)),
        ("key column null", key, event(after__id=None)),
        ("key column as text", b'{"id":"abc"}', event(after__id="abc")),
        ("key of another row", key, event(after__id=other)),
        ("key as text, row as number", b'{"id":"%d"}' % user, event()),
        ("empty key", b"", event()),
        ("table that does not exist", key, event(source__table="no_such_table")),
        ("huge random bytes", key, rng.randbytes(900_000)),
        ("huge JSON", key, event(after=["x" * 1000] * 800)),
        ("deeply nested JSON", key, b"[" * 200_000 + b"]" * 200_000),
    ]


class _Drop:
    pass


_DROP = _Drop()


def dead_letters(
    bootstrap: str, topic: str, want: set[tuple[int, int]]
) -> dict[tuple[int, int], Any]:
    """The dead letters of the source (partition, offset) pairs in ``want``, waited for."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bad-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    found: dict[tuple[int, int], Any] = {}
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 60
        while not want <= set(found) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            headers: dict[str, Any] = dict(msg.headers() or [])
            origin = (
                int(headers[deadletters.SOURCE_PARTITION]),
                int(headers[deadletters.SOURCE_OFFSET]),
            )
            found[origin] = (msg.key(), msg.value(), headers)
    finally:
        consumer.close()
    assert want <= set(found), f"no dead letter for {sorted(want - set(found))}"
    return found


def test_garbage_in_a_table_topic_goes_to_dead_letters_and_changes_nothing(
    capture: Capture, pair: Cluster, stack_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = capture.cfg.endpoints.kafka_bootstrap
    topic = f"{capture.prefix}.public.users"
    ids = sorted(k[0] for k in capture.rows()["public.users"])
    user, other, renamed = ids[0], ids[1], ids[2]
    real = first_record(bootstrap, topic, b'{"id":%d}' % user)
    before = digests(pair.instances[0])
    watch = WatchStream(pair.instances[1], pb.WatchRequest(table="public.users"), timeout=180)

    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    rng = random.Random(7)
    sent: dict[tuple[int, int], tuple[str, bytes, bytes | None]] = {}

    def delivered(case: tuple[str, bytes, bytes | None]) -> Callable[[Any, Any], None]:
        def record(err: Any, msg: Any) -> None:
            assert err is None, err
            sent[(msg.partition(), msg.offset())] = case

        return record

    cases = garbage(real, user, other)
    for case in cases:
        what, key, value = case
        # Placed as Connect would place its key, except the garbage keys: a random partition.
        garbled = "random" in what or "garbage" in what
        partition = rng.randrange(PARTITIONS) if garbled else partition_for(key, PARTITIONS)
        producer.produce(
            topic, key=key, value=value, partition=partition, on_delivery=delivered(case)
        )
    assert producer.flush(30) == 0
    assert len(sent) == len(cases)

    letters = dead_letters(bootstrap, f"{capture.prefix}-bad.dead-letters", set(sent))
    for origin, (what, key, value) in sent.items():
        dead_key, dead_value, headers = letters[origin]
        assert (dead_key, dead_value) == (key, value), what
        assert headers[deadletters.SOURCE_TOPIC] == topic.encode(), what
        assert headers[deadletters.REASON], what
    # Each owner dead-lettered its records before committing past them: the stores are final.
    for instance in pair.instances:
        assert digests(instance) == before, instance.instance_id

    # The instances applied past the garbage: a real change after it is seen, and is the first
    # thing the watch saw.
    row = rename(capture, renamed, f"after garbage {uuid.uuid4().hex[:6]}")
    (event,) = watch.take(1)
    watch.close()
    assert pb.WatchEvent.Kind.Name(event.kind) == "UPSERT"
    assert decode_row(event.row)["display_name"] == row["display_name"]
    wait_until("the change materialized", lambda: sweep(pair.instances[0], capture.rows()))

    changed = digests(pair.instances[0])
    assert {t: d for t, d in changed.items() if t != "public.users"} == {
        t: d for t, d in before.items() if t != "public.users"
    }
    still_sound(pair, changed)
    scanned = [
        decode_row(r.row)["id"]
        for r in pair.instances[0].stub.Scan(pb.ScanRequest(table="users"), timeout=CALL_S)
    ]
    assert sorted(scanned) == sorted(k[0] for k in capture.rows()["public.users"])

    endpoints = [arg for i in pair.instances for arg in ("--endpoint", i.endpoint)]
    capsys.readouterr()
    code = cli.main(["verify", *endpoints, "--recheck", "10"], environ=stack_env)
    out = capsys.readouterr().out
    assert code == 0, out
    assert sorted(line.split(":")[:2] for line in out.splitlines()) == [
        [t, " ok"] for t in sorted(TABLES)
    ]


# -- 2. every RPC fuzzed -------------------------------------------------------------------------


MEGABYTE = "x" * (1 << 20)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", "abc", "00000000-0000-0000-0000-00000000000g", "NaN", "1e999999", MEGABYTE]
    ),
)
tables = st.one_of(
    st.sampled_from(
        [
            "users",
            "public.users",
            "items",
            "public.bids",
            "bids",
            "",
            "public.nope",
            "a.b.c",
            ".",
            "pg_catalog.pg_class",
            "users\x00",
            "public." + "t" * 64,
            MEGABYTE,
        ]
    ),
    st.text(max_size=20),
)
scalars = st.one_of(
    st.builds(pb.Value),
    st.builds(lambda: pb.Value(null=pb.NULL_VALUE)),
    st.builds(lambda b: pb.Value(boolean=b), st.booleans()),
    st.builds(lambda i: pb.Value(int=i), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda t: pb.Value(decimal=t), texts),
    st.builds(lambda d: pb.Value(double=d), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda t: pb.Value(text=t), texts),
    st.builds(lambda b: pb.Value(bytes=b), st.binary(max_size=64)),
    st.builds(lambda t: pb.Value(uuid=t), texts),
    st.builds(lambda d: pb.Value(date=d), st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda t: pb.Value(time=t), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda t: pb.Value(timestamp=t), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda t: pb.Value(timestamptz=t), st.integers(-(2**63), 2**63 - 1)),
    st.builds(
        lambda m, d, u: pb.Value(interval=pb.Interval(months=m, days=d, micros=u)),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**63), 2**63 - 1),
    ),
    st.builds(lambda t: pb.Value(json=t), st.one_of(texts, st.just("[" * 100_000))),
)
values = st.recursive(
    scalars,
    lambda inner: st.builds(
        lambda vs: pb.Value(array=pb.ValueList(values=vs)), st.lists(inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.one_of(st.sampled_from(["", "id", "item_id", "bid_no", "nope"]), st.text(max_size=10))
keys = st.builds(
    lambda fields: pb.Key(fields=[pb.Field(name=n, value=v) for n, v in fields]),
    st.lists(st.tuples(names, values), max_size=4),
)
optional_keys = st.one_of(st.none(), keys)
tokens = st.one_of(
    texts,
    st.builds(lambda raw: base64.urlsafe_b64encode(raw).decode(), st.binary(max_size=40)),
    st.sampled_from(
        ["LTE6", "OTk5Og==", "MTox", "eyIwIjogLTV9", "eyIwIjogMTAwMDAwMDAwMDAwMDAwMDAwMDAwMDB9"]
    ),
)
gets = st.builds(pb.GetRequest, table=tables, key=optional_keys)


@st.composite
def scans(draw: st.DrawFn) -> pb.ScanRequest:
    request = pb.ScanRequest(
        table=draw(tables),
        limit=draw(st.integers(0, 2**32 - 1)),
        resume_token=draw(tokens),
    )
    for field in ("prefix", "range_start", "range_end"):
        key = draw(optional_keys)
        if key is not None:
            getattr(request, field).CopyFrom(key)
    partition = draw(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)))
    if partition is not None:
        request.partition = partition
    return request


@st.composite
def watches(draw: st.DrawFn) -> pb.WatchRequest:
    request = pb.WatchRequest(table=draw(tables), resume_token=draw(tokens))
    for field in ("key", "prefix"):
        key = draw(optional_keys)
        if key is not None:
            getattr(request, field).CopyFrom(key)
    return request


def outcome(
    channel: grpc.Channel, method: str, body: bytes, *, stream: bool
) -> tuple[grpc.StatusCode, str, list[bytes]]:
    """The status, details and answers of one call with a raw request body."""
    path = f"/{SERVICE}/{method}"
    try:
        if not stream:
            call: Any = channel.unary_unary(
                path, request_serializer=None, response_deserializer=None
            )
            return grpc.StatusCode.OK, "", [call(body, timeout=CALL_S)]
        streaming: Any = channel.unary_stream(
            path, request_serializer=None, response_deserializer=None
        )
        answers = streaming(body, timeout=CALL_S)
        timer = threading.Timer(WATCH_S, answers.cancel) if method == "Watch" else None
        if timer is not None:
            timer.start()
        try:
            return grpc.StatusCode.OK, "", list(answers)
        finally:
            if timer is not None:
                timer.cancel()
    except grpc.RpcError as exc:
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return code_of(exc), details or "", []


def assert_clear(
    method: str, request: Any, result: tuple[grpc.StatusCode, str, list[bytes]]
) -> None:
    code, details, answers = result
    shown = f"{method}({str(request)[:300]!r})"
    if code is grpc.StatusCode.CANCELLED and method == "Watch":
        return  # a watch that started streaming, cancelled by the test
    if code is grpc.StatusCode.OK:
        if method == "BatchGet":
            for lookup in pb.BatchGetResponse.FromString(answers[0]).results:
                if lookup.status != "OK":
                    assert grpc.StatusCode[lookup.status] in CLEAR, (shown, lookup)
                    assert lookup.message, (shown, lookup)
        return
    assert code in CLEAR, f"{shown}: {code.name} {details!r}"
    assert details and "Exception" not in details, f"{shown}: {code.name} {details!r}"


METHODS: dict[str, tuple[Any, bool, int]] = {
    # strategy of structured requests, streaming, examples
    "Get": (gets, False, 150),
    "BatchGet": (
        st.builds(pb.BatchGetRequest, lookups=st.lists(gets, max_size=8)),
        False,
        60,
    ),
    "Scan": (scans(), True, 100),
    "GetTopology": (st.just(pb.GetTopologyRequest()), False, 3),
    "Watch": (watches(), True, 40),
}


def fuzz(instances: list[Instance], method: str, requests: Any, stream: bool, count: int) -> None:
    @settings(FUZZ, max_examples=count)
    @given(request=requests, via=st.sampled_from(instances))
    def structured(request: Any, via: Instance) -> None:
        body = request.SerializeToString()
        assert_clear(method, request, outcome(via.channel, method, body, stream=stream))

    @settings(FUZZ, max_examples=40)
    @given(body=st.binary(max_size=512), via=st.sampled_from(instances))
    def raw(body: bytes, via: Instance) -> None:
        assert_clear(method, body, outcome(via.channel, method, body, stream=stream))

    structured()
    raw()


@pytest.mark.parametrize("method", list(METHODS))
def test_fuzzed_requests_get_clear_statuses_and_change_nothing(pair: Cluster, method: str) -> None:
    before = digests(pair.instances[0])
    requests, stream, count = METHODS[method]
    fuzz(pair.instances, method, requests, stream, count)
    still_sound(pair, before)


def test_oversized_requests_get_clear_statuses(pair: Cluster) -> None:
    before = digests(pair.instances[0])
    lookup = pb.GetRequest(table="users", key=pb.Key(fields=[pb.Field(value=pb.Value(int=1))]))
    cases: list[tuple[str, Any, Callable[[grpc.StatusCode, str], bool]]] = [
        (
            "BatchGet",
            pb.BatchGetRequest(lookups=[lookup] * 1001),
            lambda code, details: code is grpc.StatusCode.RESOURCE_EXHAUSTED and "1000" in details,
        ),
        (
            "Get",
            pb.GetRequest(
                table="users", key=pb.Key(fields=[pb.Field(value=pb.Value(text="x" * (5 << 20)))])
            ),
            lambda code, details: code is grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        (
            "Scan",
            pb.ScanRequest(table="users", partition=PARTITIONS),
            lambda code, details: (
                code is grpc.StatusCode.INVALID_ARGUMENT and "partition" in details
            ),
        ),
        (
            "Scan",
            pb.ScanRequest(table="users", partition=-1),
            lambda code, details: (
                code is grpc.StatusCode.INVALID_ARGUMENT and "partition" in details
            ),
        ),
    ]
    for instance in pair.instances:
        for method, request, wanted in cases:
            started = time.monotonic()
            code, details, _ = outcome(
                instance.channel, method, request.SerializeToString(), stream=method == "Scan"
            )
            assert wanted(code, details), (method, code, details)
            assert time.monotonic() - started < 5.0, (method, "answered too late")
    still_sound(pair, before)
