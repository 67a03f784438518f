"""Lookups: a primary-key read through the fabric, beside the same read elsewhere, in one run.

Setup, done once and reused by later runs: the table ``bench.lookup_rows`` in the stack's
Postgres (``--rows`` rows of about 300 bytes: bigint key, text, numeric(12,2), boolean,
timestamptz, jsonb; loaded with COPY), captured by a connector of its own into
``lookupbench.bench.lookup_rows``. Once the snapshot is in Kafka the connector is retired (an
idle slot would hold WAL on the shared stack); the topic stays. Two fabric instances serve it as
separate ``fabric serve`` processes of their own group, with their stores under
``<state>/instances/lookup-bench-<n>``, so a re-run restores nothing.

Measured on the same random keys, each as p50/p99 of sequential calls after a warm-up and
throughput, medians over ``--runs``; a target is checked on the median of the runs' ratios, each
run's figure against its baseline of the same run:

(a) baseline: a bare gRPC ``Fabric`` service on a thread pool of the fabric's size, whose ``Get``
    returns a ready-made answer of a real row's shape and size, run as one process per instance
    and called as (b) calls the instances (each key's call to the echo standing in for its
    owner); and, for reference, the same calls all to one of those processes. Calls spread over
    two server processes take ~12% longer than calls to one, with nothing but echoes answering
    them (docs/performance.md): the fabric's two instances pay that too, so (b) is held to the
    echo of the same shape;
(b) ``Get`` sent to the owner of the key's partition;
(c) ``Get`` sent to the other instance (one forward; with ``--standby-replicas 1``, read from
    that instance's standby replica instead);
(d) psycopg: a prepared primary-key SELECT on one connection;
(e) ``BatchGet`` of 100 keys sent to one instance (which forwards the other instance's keys, or
    with standby replicas reads them itself); the same keys split by owner as a smart caller
    routes them, one ``BatchGet`` per owner sent at once; and ``FabricClient.get_many`` of them
    (that split, rows decoded to Python values), vs psycopg ``WHERE id = ANY(%s)`` of the same
    keys: keys/s;
(f) ``fabric.client.FabricClient``, smart vs plain, under 1, 4 and 16 concurrent callers
    sharing one client, with the calls it saw answered by another instance than the one it
    called (``stats.forwarded``, warm-up included).

(a)-(c) and (e)'s ``BatchGet`` to one instance time a stub call with the request built
beforehand (and psycopg's (e) a call with its list of keys ready) and the answer parsed into its
protobuf message; psycopg's figures and the client's include turning values into Python ones.
(a), (b) and (c) take turns, 50 calls each at a time, and so do (e)'s four sides, 5 batches at a
time, going over the batches four times: load from elsewhere on the machine then falls on a
figure and its baseline alike.
Before timing, answers are checked: owners serve their keys, non-owners forward them, and rows
decode to what psycopg returns. Instance logs and the instances' ports are kept in
``/var/tmp/cdc-fabric-bench-lookup``; ``--keep`` leaves the instances running, and a later run
uses them as they are.

With ``--standby-replicas 1`` every instance also keeps a standby replica of the other's
partitions (``FABRIC_STANDBY_REPLICAS``), and timing starts once those are ACTIVE too; instances a
``--keep`` run left are reused with the setting they were started with.

    .venv/bin/python -m bench.lookup [--rows 1000000] [--calls 5000] [--runs 3] [--keep]
        [--standby-replicas 1]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg.rows import dict_row

from bench.connectors import bench_spec
from fabric import cli, db
from fabric.catalog import read_table_schemas
from fabric.client import FabricClient
from fabric.config import FabricConfig, load
from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.materialize.status import read_statuses
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc
from fabric.rpc.values import decode_row, encode_key
from fabric.stack.ports import free_ports

PREFIX = "lookupbench"
TABLE = "bench.lookup_rows"
TOPIC = f"{PREFIX}.{TABLE}"
CONNECTOR = "lookup-bench"
GROUP = "lookup-bench"
INSTANCE_IDS = ("lookup-bench-1", "lookup-bench-2")
# Instance logs, and the ports chosen on the first run: an instance keeps its endpoint.
WORK_DIR = Path("/var/tmp/cdc-fabric-bench-lookup")
BATCH = 100
# (e) goes over its batches this many times: --calls keys make only calls/BATCH batches, too few
# for a steady figure.
BATCH_PASSES = 4
WARMUP = 500
THREADS = (1, 4, 16)
SEED = 20251101
CALL_TIMEOUT_S = 10.0
SNAPSHOT_TIMEOUT_S = 3600.0
READY_TIMEOUT_S = 1800.0
STOP_GRACE_S = 30.0
SELECT_ONE = "SELECT * FROM bench.lookup_rows WHERE id = %s"
SELECT_MANY = "SELECT * FROM bench.lookup_rows WHERE id = ANY(%s)"

DDL = """
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.lookup_rows;
CREATE TABLE bench.lookup_rows (
  id bigint NOT NULL,
  name text NOT NULL,
  balance numeric(12,2) NOT NULL,
  active boolean NOT NULL,
  updated_at timestamptz NOT NULL,
  attrs jsonb NOT NULL
);
"""

T = TypeVar("T")

# -- the data ----------------------------------------------------------------------------------

_REGIONS = ("eu-west-1", "us-east-1", "ap-south-1", "sa-east-1", "ca-central-1")
_TIERS = ("free", "silver", "gold", "platinum")
_T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _copy_line(i: int) -> str:
    """Row ``i`` in COPY's text format (no tabs, newlines or backslashes in any value)."""
    region = _REGIONS[i % len(_REGIONS)]
    tier = _TIERS[i % len(_TIERS)]
    updated = (_T0 + timedelta(seconds=i * 7, microseconds=i % 1_000_000)).isoformat()
    attrs = (
        f'{{"tier": "{tier}", "region": "{region}", "score": {i % 9973 / 9973:.4f}, '
        f'"tags": ["t{i % 17}", "t{i % 31}", "t{i % 53}"], "visits": {i * 31 % 10007}, '
        f'"note": "account {i * 7919 % 1000003:07d} opened in {region} on the {tier} plan"}}'
    )
    return (
        f"{i}\tCustomer {i:07d} of the {region} region, account {i * 7919 % 1000003:07d}\t"
        f"{i * 37 % 10_000_000}.{i % 100:02d}\t{'t' if i % 3 else 'f'}\t{updated}\t{attrs}\n"
    )


def _table_rows(cfg: FabricConfig) -> int:
    with db.connect(cfg.endpoints) as conn:
        exists = conn.execute("SELECT to_regclass('bench.lookup_rows') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return -1
        counted = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM bench.lookup_rows")
        count, highest = cast("tuple[int, int]", counted.fetchone())
        return count if count == highest else -1


def load_table(cfg: FabricConfig, rows: int) -> None:
    t0 = time.monotonic()
    with db.connect(cfg.endpoints) as conn:
        conn.execute(DDL)
        with conn.cursor().copy("COPY bench.lookup_rows FROM STDIN") as copy:
            for first in range(1, rows + 1, 10_000):
                copy.write(
                    "".join(_copy_line(i) for i in range(first, min(first + 10_000, rows + 1)))
                )
        conn.execute("ALTER TABLE bench.lookup_rows ADD PRIMARY KEY (id)")
        conn.execute("VACUUM ANALYZE bench.lookup_rows")
        size = conn.execute("SELECT pg_table_size('bench.lookup_rows') / %s", [rows]).fetchone()
    print(
        f"loaded {rows:,} rows with COPY in {time.monotonic() - t0:.1f}s "
        f"({size[0] if size else '?'} bytes/row on disk)"
    )


# -- capture -----------------------------------------------------------------------------------


def _topic_records(bootstrap: str) -> int:
    """The sum of the topic's end offsets; 0 when there is no such topic."""
    topic = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics.get(TOPIC)
    if topic is None or topic.error is not None:
        return 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{GROUP}-probe"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
            for p in topic.partitions
        )
    finally:
        consumer.close()


def _delete_topic(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if TOPIC not in admin.list_topics(timeout=10).topics:
        return
    admin.delete_topics([TOPIC])[TOPIC].result(timeout=30)
    deadline = time.monotonic() + 60
    while TOPIC in admin.list_topics(timeout=10).topics:
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {TOPIC} still listed a minute after its deletion")
        time.sleep(0.5)


def capture(bootstrap: str, spec: Path, rows: int) -> None:
    """Snapshot the table through Debezium into its topic, then retire the connector."""
    t0 = time.monotonic()
    if cli.main(["connectors", "apply", str(spec)]) != 0:
        raise RuntimeError(f"fabric connectors apply {spec} failed")
    last_report = time.monotonic()
    while (records := _topic_records(bootstrap)) < rows:
        if time.monotonic() - t0 > SNAPSHOT_TIMEOUT_S:
            raise RuntimeError(f"snapshot incomplete after {SNAPSHOT_TIMEOUT_S:.0f}s: {records:,}")
        if time.monotonic() - last_report > 15:
            print(f"  snapshot: {records:,} of {rows:,} records in {TOPIC}", flush=True)
            last_report = time.monotonic()
        time.sleep(2)
    print(f"snapshot of {rows:,} rows through Debezium in {time.monotonic() - t0:.0f}s")
    cli.main(["connectors", "delete", "--drop-slot", str(spec)])


def prepare_data(cfg: FabricConfig, rows: int, ports: dict[str, tuple[int, int]]) -> None:
    """The table with ``rows`` rows and its complete topic, reused when both are there."""
    bootstrap = cfg.endpoints.kafka_bootstrap
    table_ok = _table_rows(cfg) == rows
    if table_ok and _topic_records(bootstrap) >= rows:
        print(f"reusing {TABLE} ({rows:,} rows) and its topic {TOPIC}")
        return
    serving = [i for i, (port, _) in ports.items() if _serving_as(_endpoint(cfg, port), i)]
    if serving:
        raise RuntimeError(
            f"the data must be rebuilt but {', '.join(serving)} still serve it (left by --keep):"
            " stop them (SIGTERM to their pid) first"
        )
    with tempfile.TemporaryDirectory(prefix="lookup-bench-") as folder:
        spec = bench_spec(Path(folder), name=CONNECTOR, prefix=PREFIX, table=TABLE)
        cli.main(["connectors", "delete", "--drop-slot", str(spec)])
        _delete_topic(bootstrap)
        for instance_id in INSTANCE_IDS:
            shutil.rmtree(cfg.materializer.instances_dir / instance_id, ignore_errors=True)
        if not table_ok:
            load_table(cfg, rows)
        capture(bootstrap, spec, rows)


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Instance:
    instance_id: str
    endpoint: str
    process: subprocess.Popen[bytes] | None  # None: found serving, not ours to stop
    log: Path


def _endpoint(cfg: FabricConfig, port: int) -> str:
    return f"{cfg.serve.host}:{port}"


def instance_ports(cfg: FabricConfig) -> dict[str, tuple[int, int]]:
    """Each instance's gRPC and forwarding ports: the ones it had last time unless something
    else took them (an instance keeps both, as the group remembers them)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    path = WORK_DIR / "ports.json"
    try:
        saved = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    ports: dict[str, tuple[int, int]] = {}
    for instance_id in INSTANCE_IDS:
        pair = saved.get(instance_id)
        if isinstance(pair, list) and len(pair) == 2:
            port, peer_port = int(pair[0]), int(pair[1])
            host = cfg.serve.host
            if _serving_as(_endpoint(cfg, port), instance_id) or (
                _bindable(host, port) and _bindable(host, peer_port)
            ):
                ports[instance_id] = (port, peer_port)
                continue
        grpc_port, peer_port = free_ports(2, cfg.serve.host)
        ports[instance_id] = (grpc_port, peer_port)
    path.write_text(json.dumps(ports))
    return ports


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _serving_as(endpoint: str, instance_id: str) -> bool:
    """Whether a fabric instance ``instance_id`` of the bench already answers on ``endpoint``."""
    with grpc.insecure_channel(endpoint) as channel:
        try:
            topology = pb_grpc.FabricStub(channel).GetTopology(pb.GetTopologyRequest(), timeout=3)  # type: ignore[no-untyped-call]
        except grpc.RpcError:
            return False
    return any(h.instance_id == instance_id and h.endpoint == endpoint for h in topology.instances)


def start_instances(
    cfg: FabricConfig,
    ports: dict[str, tuple[int, int]],
    instances: list[Instance],
    standby_replicas: int,
) -> None:
    """Start an instance on each port (appended to ``instances`` at once, so that the caller
    stops it whatever fails next), or reuse the one a ``--keep`` run left there."""
    # Both instances stop together: neither has anyone to hand its partitions over to.
    env = {
        **os.environ,
        "FABRIC_TOPIC_PREFIX": PREFIX,
        "FABRIC_HANDOVER_TIMEOUT_S": "5",
        "FABRIC_STANDBY_REPLICAS": str(standby_replicas),
    }
    fabric = Path(sys.executable).with_name("fabric")
    for instance_id, (port, peer_port) in ports.items():
        endpoint = _endpoint(cfg, port)
        log = WORK_DIR / f"{instance_id}.log"
        if _serving_as(endpoint, instance_id):
            print(f"{instance_id} already serving on {endpoint} (left by --keep): reused")
            instances.append(Instance(instance_id, endpoint, None, log))
            continue
        argv = [str(fabric), "serve", "--instance-id", instance_id, "--port", str(port)]
        argv += ["--peer-port", str(peer_port)]
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*argv, "--group", GROUP],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench, which stops them itself
            )
        instances.append(Instance(instance_id, endpoint, process, log))
        print(f"started {instance_id} on {endpoint}, pid {process.pid}, log {log}")


def stop_processes(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, wait for a graceful stop, then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(
    cfg: FabricConfig, instances: Sequence[Instance], stub: pb_grpc.FabricStub, standbys: bool
) -> pb.TableInfo:
    """The table's topology once every partition has an owner among ``instances``, each of them
    owns some, and all are ACTIVE with no lag; with ``standbys``, once each instance also holds
    an ACTIVE standby replica, with no lag, of every partition the other owns."""
    endpoints = {i.instance_id: i.endpoint for i in instances}
    t0 = last_report = time.monotonic()
    while True:
        for instance in instances:
            if instance.process is not None and instance.process.poll() is not None:
                raise RuntimeError(f"{instance.instance_id} exited; see {instance.log}")
        topology: pb.Topology
        try:
            topology = stub.GetTopology(pb.GetTopologyRequest(), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError:
            topology = pb.Topology()
        info: pb.TableInfo | None = next((t for t in topology.tables if t.topic == TOPIC), None)
        parts = list(info.partitions) if info else []
        if (
            info
            and parts
            and {p.owner for p in parts} == set(endpoints)
            and all(p.endpoint == endpoints[p.owner] for p in parts)
            and all(p.state == "ACTIVE" and p.lag_records == 0 for p in parts)
            and (not standbys or _standbys_ready(cfg, instances, parts))
        ):
            print(f"every partition ACTIVE, lag 0, after {time.monotonic() - t0:.1f}s")
            return info
        if time.monotonic() - t0 > READY_TIMEOUT_S:
            raise RuntimeError(f"partitions not ACTIVE after {READY_TIMEOUT_S:.0f}s: {parts}")
        if time.monotonic() - last_report > 15:
            states = ", ".join(
                f"{p.partition}:{p.owner or '-'}:{p.state}:{p.lag_records}" for p in parts
            )
            print(f"  waiting for ACTIVE partitions: {states or 'no topology yet'}", flush=True)
            last_report = time.monotonic()
        time.sleep(1)


class _Echo(pb_grpc.FabricServicer):
    def __init__(self, answer: pb.GetResponse) -> None:
        self._answer = answer

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:  # noqa: N802
        return self._answer


def _echo_process(answer: bytes, workers: int, report: Connection) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_FabricServicer_to_server(_Echo(pb.GetResponse.FromString(answer)), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    report.send(port)
    server.wait_for_termination()


@contextmanager
def echo_server(answer: pb.GetResponse, workers: int) -> Iterator[str]:
    """A bare ``Fabric`` gRPC service in a process of its own answering every ``Get`` with
    ``answer``; yields its endpoint."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(
        target=_echo_process, args=(answer.SerializeToString(), workers, theirs), daemon=True
    )
    child.start()
    try:
        deadline = time.monotonic() + 30
        while not ours.poll(0.1):
            if not child.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the echo server did not start (exit code {child.exitcode})")
        yield f"127.0.0.1:{ours.recv()}"
    finally:
        child.terminate()
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    p50_us: float
    p99_us: float
    rate: float  # calls/s; keys/s for batches


def _figure(latencies_ns: Sequence[int], done: int, elapsed_ns: int) -> Figure:
    quantiles = statistics.quantiles(latencies_ns, n=100, method="inclusive")
    return Figure(quantiles[49] / 1000, quantiles[98] / 1000, done / (elapsed_ns / 1e9))


def sequential(
    call: Callable[[T], object], items: Sequence[T], warmup: Sequence[T], per_call: int = 1
) -> Figure:
    """p50/p99 of ``call`` over ``items`` one after the other, after ``warmup``."""
    for item in warmup:
        call(item)
    clock = time.perf_counter_ns
    latencies = []
    start = clock()
    for item in items:
        t0 = clock()
        call(item)
        latencies.append(clock() - t0)
    return _figure(latencies, len(items) * per_call, clock() - start)


@dataclass(frozen=True)
class Measured:
    """One of several measurements taken :func:`interleaved`."""

    call: Callable[[Any], object]
    items: Sequence[Any]
    warmup: Sequence[Any]
    per_call: int = 1


def interleaved(measured: dict[str, Measured], block: int = 50) -> dict[str, Figure]:
    """:func:`sequential` for several measurements at once, taking turns ``block`` calls at a
    time: a shared, noisy machine then loads every one of them alike, and their ratios hold."""
    for m in measured.values():
        for item in m.warmup:
            m.call(item)
    clock = time.perf_counter_ns
    latencies: dict[str, list[int]] = {label: [] for label in measured}
    spent = dict.fromkeys(measured, 0)
    longest = max(len(m.items) for m in measured.values())
    for start in range(0, longest, block):
        for label, m in measured.items():
            times = latencies[label]
            begun = clock()
            for item in m.items[start : start + block]:
                t0 = clock()
                m.call(item)
                times.append(clock() - t0)
            spent[label] += clock() - begun
    return {
        label: _figure(latencies[label], len(m.items) * m.per_call, spent[label])
        for label, m in measured.items()
    }


def concurrent(
    call: Callable[[T], object], items: Sequence[T], warmup: Sequence[T], callers: int
) -> Figure:
    """``items`` shared out between ``callers`` threads calling at once, after ``warmup``."""
    for item in warmup:
        call(item)
    clock = time.perf_counter_ns
    latencies: list[list[int]] = [[] for _ in range(callers)]
    failures: list[BaseException] = []
    gate = threading.Barrier(callers + 1)

    def caller(n: int) -> None:
        gate.wait()
        mine = latencies[n]
        try:
            for item in items[n::callers]:
                t0 = clock()
                call(item)
                mine.append(clock() - t0)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = clock()
    for thread in threads:
        thread.join()
    elapsed = clock() - start
    if failures:
        raise failures[0]
    return _figure([ns for mine in latencies for ns in mine], len(items), elapsed)


@dataclass(frozen=True)
class Workload:
    """The same random keys for every measurement, with their requests and owners."""

    keys: list[int]
    warmup_keys: list[int]
    requests: list[pb.GetRequest]
    warmup_requests: list[pb.GetRequest]
    owners: list[int]  # per key: the index of the instance that owns its partition
    warmup_owners: list[int]
    owner_ids: list[str]  # per key: that instance's id


def build_workload(
    cfg: FabricConfig, info: pb.TableInfo, instances: Sequence[Instance], rows: int, calls: int
) -> Workload:
    with db.connect(cfg.endpoints) as conn:
        codec = KeyCodec(read_table_schemas(conn, [TABLE])[TABLE])
    owner_of: dict[int, str] = {p.partition: p.owner for p in info.partitions}
    index = {instance.instance_id: n for n, instance in enumerate(instances)}

    def owner(key: int) -> str:
        return owner_of[partition_for(codec.encode([key]), len(owner_of))]

    keys = random.Random(SEED).sample(range(1, rows + 1), calls)
    warmup = random.Random(SEED + 1).sample(range(1, rows + 1), WARMUP)

    def request(key: int) -> pb.GetRequest:
        return pb.GetRequest(table=TABLE, key=encode_key(["id"], [key]))

    return Workload(
        keys=keys,
        warmup_keys=warmup,
        requests=[request(k) for k in keys],
        warmup_requests=[request(k) for k in warmup],
        owners=[index[owner(k)] for k in keys],
        warmup_owners=[index[owner(k)] for k in warmup],
        owner_ids=[owner(k) for k in keys],
    )


def check_answers(
    work: Workload,
    instances: Sequence[Instance],
    stubs: Sequence[pb_grpc.FabricStub],
    conn: psycopg.Connection[Any],
    standbys: bool,
) -> None:
    """Before timing anything: owners answer themselves, non-owners forward once (or with
    standbys, answer from theirs), and the rows are the ones Postgres has."""
    for n in range(20):
        key, request, owner = work.keys[n], work.requests[n], work.owners[n]
        direct = stubs[owner].Get(request, timeout=CALL_TIMEOUT_S)
        other = stubs[1 - owner].Get(request, timeout=CALL_TIMEOUT_S)
        expected = conn.cursor(row_factory=dict_row).execute(SELECT_ONE, [key]).fetchone()
        if not direct.found or decode_row(direct.row) != expected:
            raise RuntimeError(f"key {key}: the fabric answered {direct}, Postgres {expected}")
        answered_by = instances[1 - owner].instance_id if standbys else work.owner_ids[n]
        if (
            direct.freshness.served_by != work.owner_ids[n]
            or other.row != direct.row
            or other.freshness.served_by != answered_by
        ):
            raise RuntimeError(f"key {key}: owner {direct}, non-owner {other}")
    batch = stubs[0].BatchGet(pb.BatchGetRequest(lookups=work.requests[:BATCH]), timeout=10)
    if any(r.status != "OK" or not r.found for r in batch.results):
        raise RuntimeError(f"BatchGet answered {batch}")


# -- one run -----------------------------------------------------------------------------------

A = "(a) baseline: bare gRPC echo Get"
A_ONE = "(a) echo Get, all to one process"
B = "(b) Get to the partition's owner"
C = "(c) Get to the non-owner"
D = "(d) psycopg prepared SELECT by id"
E_FABRIC = f"(e) BatchGet of {BATCH} (one instance)"
E_OWNERS = f"(e) BatchGet of {BATCH} split by owner"
E_CLIENT = f"(e) FabricClient.get_many of {BATCH}"
E_PG = f"(e) psycopg id = ANY({BATCH} keys)"


def _client_label(smart: bool, callers: int) -> str:
    return f"(f) FabricClient {'smart' if smart else 'plain'}, {callers} caller(s)"


@dataclass
class Results:
    figures: dict[str, list[Figure]]
    forwarded: dict[str, list[int]]

    def add(self, label: str, figure: Figure, forwarded: int | None = None) -> None:
        self.figures.setdefault(label, []).append(figure)
        if forwarded is not None:
            self.forwarded.setdefault(label, []).append(forwarded)
        unit = "keys/s" if label.startswith("(e)") else "calls/s"
        extra = "" if forwarded is None else f", forwarded {forwarded}"
        print(
            f"  {label:<42} p50 {figure.p50_us:8.0f} µs  p99 {figure.p99_us:8.0f} µs"
            f"  {figure.rate:10,.0f} {unit}{extra}",
            flush=True,
        )


def measure_gets(
    work: Workload,
    stubs: Sequence[pb_grpc.FabricStub],
    echoes: Sequence[pb_grpc.FabricStub],
    out: Results,
) -> None:
    """(a) the echo baseline, each key to its owner's echo, and all keys to one echo; (b) every
    key to its owner; (c) every key to the other instance."""

    def get(target: tuple[pb_grpc.FabricStub, pb.GetRequest]) -> None:
        target[0].Get(target[1], timeout=CALL_TIMEOUT_S)

    def to(
        pick: Callable[[int], pb_grpc.FabricStub], owners: list[int], requests: list[pb.GetRequest]
    ) -> list[tuple[pb_grpc.FabricStub, pb.GetRequest]]:
        return [(pick(o), r) for o, r in zip(owners, requests, strict=True)]

    targets: list[tuple[str, Callable[[int], pb_grpc.FabricStub]]] = [
        (A, lambda owner: echoes[owner]),
        (A_ONE, lambda _: echoes[0]),
        (B, lambda owner: stubs[owner]),
        (C, lambda owner: stubs[1 - owner]),  # two instances: the one not owning the partition
    ]
    figures = interleaved(
        {
            label: Measured(
                get,
                to(pick, work.owners, work.requests),
                to(pick, work.warmup_owners, work.warmup_requests),
            )
            for label, pick in targets
        }
    )
    for label, figure in figures.items():
        out.add(label, figure)


def measure_postgres_gets(cur: psycopg.Cursor[Any], work: Workload, out: Results) -> None:
    """(d) one prepared primary-key SELECT per key, on one connection."""

    def one(key: int) -> None:
        cur.execute(SELECT_ONE, [key], prepare=True)
        cur.fetchone()

    out.add(D, sequential(one, work.keys, work.warmup_keys))


def measure_batches(
    stubs: Sequence[pb_grpc.FabricStub],
    endpoints: list[str],
    cur: psycopg.Cursor[Any],
    work: Workload,
    out: Results,
) -> None:
    """(e) the keys BATCH at a time: BatchGet to one instance; split by owner, as a smart caller
    routes them, one BatchGet per owner sent at once; ``FabricClient.get_many`` (the same split,
    rows decoded to Python values); and ``id = ANY(%s)``."""
    client = FabricClient(endpoints, timeout_s=CALL_TIMEOUT_S)
    stub_at = dict(zip(endpoints, stubs, strict=True))
    fan_out = futures.ThreadPoolExecutor(max_workers=len(stubs))

    def chunked(items: Sequence[T]) -> list[Sequence[T]]:
        return [items[i : i + BATCH] for i in range(0, len(items), BATCH)] * BATCH_PASSES

    def requests(batches: list[Sequence[pb.GetRequest]]) -> list[pb.BatchGetRequest]:
        return [pb.BatchGetRequest(lookups=lookups) for lookups in batches]

    def batch_get(request: pb.BatchGetRequest) -> None:
        stubs[0].BatchGet(request, timeout=CALL_TIMEOUT_S)

    def batch_to_owners(lookups: Sequence[tuple[int, pb.GetRequest]]) -> None:
        # Routed as FabricClient routes: each key's partition and owner from the topology; the
        # last owner's batch on this thread, the others on the pool, as FabricClient sends them.
        split: dict[str, list[pb.GetRequest]] = {}
        for key, request in lookups:
            split.setdefault(client.partition_of(TABLE, key).endpoint, []).append(request)
        calls = [
            functools.partial(
                stub_at[endpoint].BatchGet,
                pb.BatchGetRequest(lookups=part),
                timeout=CALL_TIMEOUT_S,
            )
            for endpoint, part in split.items()
        ]
        started = [fan_out.submit(call) for call in calls[:-1]]
        calls[-1]()
        for call in started:
            call.result()

    def select_many(keys: list[int]) -> None:
        cur.execute(SELECT_MANY, [keys], prepare=True)
        cur.fetchall()

    def get_many(keys: Sequence[int]) -> None:
        client.get_many(TABLE, keys)

    keyed = list(zip(work.keys, work.requests, strict=True))
    warmup_keyed = list(zip(work.warmup_keys, work.warmup_requests, strict=True))
    figures = interleaved(
        {
            # Each side's call made with its arguments ready, as (a)-(c) are: a BatchGetRequest
            # (building one of 100 GetRequests costs the caller ~60 µs) and a list of keys.
            E_FABRIC: Measured(
                batch_get,
                requests(chunked(work.requests)),
                requests(chunked(work.warmup_requests)),
                BATCH,
            ),
            E_OWNERS: Measured(batch_to_owners, chunked(keyed), chunked(warmup_keyed), BATCH),
            E_CLIENT: Measured(get_many, chunked(work.keys), chunked(work.warmup_keys), BATCH),
            E_PG: Measured(
                select_many,
                [list(keys) for keys in chunked(work.keys)],
                [list(keys) for keys in chunked(work.warmup_keys)],
                BATCH,
            ),
        },
        block=5,
    )
    fan_out.shutdown()
    client.close()
    for label, figure in figures.items():
        out.add(label, figure)


def measure_clients(endpoints: list[str], work: Workload, out: Results) -> None:
    """(f) FabricClient, smart and plain, under concurrent callers."""
    for smart in (True, False):
        with FabricClient(endpoints, timeout_s=CALL_TIMEOUT_S, smart=smart) as client:
            for callers in THREADS:
                before = client.stats.forwarded
                figure = concurrent(
                    functools.partial(client.get, TABLE), work.keys, work.warmup_keys, callers
                )
                out.add(_client_label(smart, callers), figure, client.stats.forwarded - before)


# -- summary -----------------------------------------------------------------------------------


def _median(figures: list[Figure]) -> Figure:
    return Figure(
        statistics.median(f.p50_us for f in figures),
        statistics.median(f.p99_us for f in figures),
        statistics.median(f.rate for f in figures),
    )


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _standbys_ready(
    cfg: FabricConfig, instances: Sequence[Instance], parts: Sequence[pb.PartitionInfo]
) -> bool:
    statuses = {s.instance_id: s for s in read_statuses(cfg.materializer.instances_dir)}
    for instance in instances:
        status = statuses.get(instance.instance_id)
        others = {p.partition for p in parts if p.owner != instance.instance_id}
        held = (
            {s.partition for s in status.standbys if s.state == "ACTIVE" and s.lag == 0}
            if status is not None
            else set()
        )
        if held != others:
            return False
    return True


def _per_run(
    figures: dict[str, list[Figure]], label: str, base: str, value: Callable[[Figure], float]
) -> tuple[float, str]:
    """The median over runs of ``label``'s figure against ``base``'s measured in the same run,
    and each run's ratio: a run's load falls on both alike, which medians taken apart would mix
    up (one run's slow baseline against another run's cold figure)."""
    ratios = [
        value(figure) / value(baseline)
        for figure, baseline in zip(figures[label], figures[base], strict=True)
    ]
    return statistics.median(ratios), ", ".join(f"{r:.2f}" for r in ratios)


def _notes(out: Results) -> dict[str, str]:
    figures, notes = out.figures, {}
    if A in figures and B in figures:
        ratio, runs = _per_run(figures, B, A, lambda f: f.p50_us)
        extra = statistics.median(
            b.p50_us - a.p50_us for b, a in zip(figures[B], figures[A], strict=True)
        )
        notes[B] = (
            f"p50 {ratio:.2f}x (a) (runs {runs}), +{extra:,.0f} µs; target <= 1.25x:"
            f" {_verdict(ratio <= 1.25)}"
        )
        if A_ONE in figures:
            ratio, runs = _per_run(figures, B, A_ONE, lambda f: f.p50_us)
            notes[B] += f"; {ratio:.2f}x the echo of one process (runs {runs})"
            ratio, runs = _per_run(figures, A, A_ONE, lambda f: f.p50_us)
            notes[A] = f"p50 {ratio:.2f}x the echo of one process (runs {runs})"
        if C in figures:
            ratio, runs = _per_run(figures, C, A, lambda f: f.p50_us)
            notes[C] = f"p50 {ratio:.2f}x (a) (runs {runs})"
    for label in (E_FABRIC, E_OWNERS, E_CLIENT):
        if label in figures and E_PG in figures:
            ratio, runs = _per_run(figures, label, E_PG, lambda f: f.rate)
            notes[label] = (
                f"target keys/s >= psycopg: {ratio:.2f}x (runs {runs}), {_verdict(ratio >= 1)}"
            )
    for label, counts in out.forwarded.items():
        if "smart" in label:
            notes[label] = f"forwarded {max(counts)}; target 0: {_verdict(max(counts) == 0)}"
        else:
            notes[label] = f"forwarded {max(counts)}"
    return notes


def print_summary(
    out: Results, args: argparse.Namespace, cfg: FabricConfig, partitions: int
) -> None:
    medians = {label: _median(figures) for label, figures in out.figures.items()}
    notes = _notes(out)
    print()
    print(
        f"lookups on {TABLE}: {args.rows:,} rows, {args.calls:,} random keys (the same for every "
        f"measurement), medians of {args.runs} run(s); 2 instances, {partitions} partitions, "
        f"{args.standby_replicas} standby replica(s) each, {cfg.serve.workers} server threads; "
        f"{os.cpu_count()} cores"
    )
    print(f"{'':<42} {'p50 µs':>9} {'p99 µs':>9} {'throughput':>18}  notes")
    for label, figure in medians.items():
        unit = "keys/s" if label.startswith("(e)") else "calls/s"
        print(
            f"{label:<42} {figure.p50_us:>9,.0f} {figure.p99_us:>9,.0f} "
            f"{figure.rate:>10,.0f} {unit:<7}  {notes.get(label, '')}"
        )


# -- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace, cfg: FabricConfig, instances: list[Instance]) -> None:
    ports = instance_ports(cfg)
    prepare_data(cfg, args.rows, ports)
    standbys = args.standby_replicas > 0
    start_instances(cfg, ports, instances, args.standby_replicas)
    with ExitStack() as stack:
        channels = [stack.enter_context(grpc.insecure_channel(i.endpoint)) for i in instances]
        stubs = [pb_grpc.FabricStub(channel) for channel in channels]  # type: ignore[no-untyped-call]
        info = wait_ready(cfg, instances, stubs[0], standbys)
        work = build_workload(cfg, info, instances, args.rows, args.calls)
        with db.connect(cfg.endpoints) as conn:
            check_answers(work, instances, stubs, conn, standbys)
        answer = stubs[work.owners[0]].Get(work.requests[0], timeout=CALL_TIMEOUT_S)
        echoes = [
            pb_grpc.FabricStub(  # type: ignore[no-untyped-call]
                stack.enter_context(
                    grpc.insecure_channel(
                        stack.enter_context(echo_server(answer, cfg.serve.workers))
                    )
                )
            )
            for _ in instances
        ]
        out = Results({}, {})
        with db.connect(cfg.endpoints) as conn:
            cur = conn.cursor()
            for number in range(1, args.runs + 1):
                print(f"run {number}:")
                measure_gets(work, stubs, echoes, out)
                measure_postgres_gets(cur, work, out)
                measure_batches(stubs, [i.endpoint for i in instances], cur, work, out)
                measure_clients([i.endpoint for i in instances], work, out)
        print_summary(out, args, cfg, len(info.partitions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the instances running")
    parser.add_argument(
        "--standby-replicas",
        type=int,
        default=0,
        choices=(0, 1),
        help="each instance also keeps the other's partitions as standby replicas",
    )
    args = parser.parse_args()
    if args.calls < BATCH or args.rows < args.calls + WARMUP:
        parser.error(f"--calls must be at least {BATCH} and --rows at least --calls + {WARMUP}")
    cfg = load()
    instances: list[Instance] = []
    try:
        run(args, cfg, instances)
    finally:
        ours = [i.process for i in instances if i.process is not None]
        if args.keep:
            for instance in instances:
                pid = instance.process.pid if instance.process else "not ours"
                print(f"kept {instance.instance_id} on {instance.endpoint} (pid {pid})")
        else:
            stop_processes(ours)


if __name__ == "__main__":
    main()
