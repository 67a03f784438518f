"""The gRPC query service for real: three `fabric serve` processes on loopback, answering Get,
BatchGet, Scan, GetTopology and Watch for the sample tables, through any of them, while one of
them stops gracefully or is killed.

The module captures the sample tables through a connector of its own (a per-run topic prefix, so
a kept stack never shows a previous run's records) and runs its instances in a group of its own.
The instances are OS processes: a test stops one with SIGTERM or SIGKILL as an operator would,
and every process started is stopped at the end.
"""

from __future__ import annotations

import json
import math
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka.admin import AdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fabric import cli, db
from fabric.config import REPO_ROOT, FabricConfig
from fabric.core.partitioner import partition_for
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc
from fabric.rpc.values import decode_row, decode_value, encode_key, encode_value
from fabric.serve.forwarding import (
    BATCH_GET_LOCATED,
    ForwardError,
    ForwardLinks,
    LocatedKeys,
    located_batch,
)
from fabric.stack.ports import free_ports

PARTITIONS = 3  # FABRIC_TOPIC_PARTITIONS in the session's environment
KEYS = {
    "public.users": ("id",),
    "public.items": ("id",),
    "public.bids": ("item_id", "bid_no"),  # the constraint's order, not the columns'
}
TABLES = tuple(KEYS)
SAMPLE = ("--users", "200", "--items", "300", "--bids", "1200")
MISSING = (
    ("public.users", (10**12,)),
    ("public.items", (999_999,)),
    ("public.bids", (1, 99_999)),
    ("public.bids", (999_999, 1)),
)
SERVICE = "fabric.rpc.v1.Fabric"
TIMEOUT_S = 90.0  # waiting for a state of the cluster
CALL_S = 10.0  # every unary call's deadline
STOP_WAIT_S = 90.0  # a graceful stop may wait for the handover
RECOVERY_BOUND_S = 60.0  # kill -9: every key served again within this
# The kill -9 load's deadline: short, so that each thread samples the outage every few seconds
# (a 10 s deadline, the session timeout, would let each thread see one failure at most).
KILL_CALL_S = 2.0

Key = tuple[Any, ...]
Rows = dict[str, dict[Key, dict[str, Any]]]  # table → key → column → psycopg value
Lookup = tuple[str, Key]


# -- waiting and comparing ---------------------------------------------------------------------


def wait_until(what: str, problem: Callable[[], str | None], timeout: float = TIMEOUT_S) -> float:
    """Poll ``problem`` until it returns None; returns the seconds that took, or fails after
    ``timeout`` with the last problem seen."""
    started = time.monotonic()
    while True:
        last = problem()
        if last is None:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last}")
        time.sleep(0.25)


def same(a: Any, b: Any) -> bool:
    """Equal type and value: a Decimal keeps its scale, NaN equals NaN, lists and JSON compare
    element by element."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Decimal):
        return bool(a.is_nan() and b.is_nan()) or a.as_tuple() == b.as_tuple()
    return bool(a == b)


def row_difference(got: Mapping[str, Any], want: Mapping[str, Any]) -> str | None:
    """None when ``got`` has exactly ``want``'s columns with the same values."""
    if list(got) != list(want):
        return f"columns {list(got)} != {list(want)}"
    wrong = [f"{k}: {got[k]!r} != {want[k]!r}" for k in want if not same(got[k], want[k])]
    return "; ".join(wrong) if wrong else None


def key_of(table: str, row: Mapping[str, Any]) -> Key:
    return tuple(row[c] for c in KEYS[table])


def lookup(table: str, key: Key, *, named: bool = True) -> pb.GetRequest:
    message = encode_key(KEYS[table], key)
    if not named:
        for f in message.fields:
            f.name = ""
    return pb.GetRequest(table=table, key=message)


def rpc_error(method: Callable[..., Any], request: Any) -> grpc.Call:
    """The error ``method(request)`` fails with; a stream is read until it fails."""
    with pytest.raises(grpc.RpcError) as info:
        answer = method(request, timeout=CALL_S)
        if isinstance(answer, Iterator):
            list(answer)
    error = info.value
    assert isinstance(error, grpc.Call)
    return error


def code_of(exc: grpc.RpcError) -> grpc.StatusCode:
    return exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN


# -- the captured source -----------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    cfg: FabricConfig
    prefix: str

    def rows(self) -> Rows:
        """Every row of the sample tables as psycopg returns them (``SELECT *``)."""
        rows: Rows = {}
        with db.connect(self.cfg.endpoints) as conn:
            for table in TABLES:
                cur = conn.execute(f"SELECT * FROM {table}")
                assert cur.description is not None
                names = [d.name for d in cur.description]
                found = (dict(zip(names, r, strict=True)) for r in cur.fetchall())
                rows[table] = {key_of(table, r): r for r in found}
        return rows

    def change(self, sql: str, *params: Any) -> dict[str, Any] | None:
        """One statement in a transaction of its own; the row it RETURNs, if any."""
        with db.connect(self.cfg.endpoints) as conn:
            cur = conn.execute(sql, params)
            if cur.description is None:
                return None
            names = [d.name for d in cur.description]
            row = cur.fetchone()
            return None if row is None else dict(zip(names, row, strict=True))


@pytest.fixture(scope="module")
def capture(
    stack_env: dict[str, str], stack_config: FabricConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Capture]:
    """The sample tables loaded and captured under a topic prefix of this run; the connector is
    retired and its topics deleted at the end."""
    prefix = f"qs{uuid.uuid4().hex[:6]}"
    assert cli.main(["sample", "load", *SAMPLE, "--reset"], environ=stack_env) == 0
    spec = json.loads((REPO_ROOT / "connectors" / "auction.json").read_text())
    spec["name"] = prefix
    spec["config"].update(
        {
            "topic.prefix": prefix,
            "slot.name": f"cdc_fabric_{prefix}",
            "publication.name": f"cdc_fabric_{prefix}",
            "table.include.list": ",".join(TABLES),
            "message.prefix.include.list": "cdc-fabric\\.truncate\\.public\\..*",
        }
    )
    path: Path = tmp_path_factory.mktemp("qs") / f"{prefix}.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["connectors", "apply", str(path)], environ=stack_env) == 0
    try:
        yield Capture(stack_config, prefix)
    finally:
        cli.main(["connectors", "delete", "--drop-slot", str(path)], environ=stack_env)
        admin = AdminClient({"bootstrap.servers": stack_config.endpoints.kafka_bootstrap})
        ours = [t for t in admin.list_topics(timeout=10).topics if prefix in t]
        for future in admin.delete_topics(ours).values() if ours else ():
            future.result(timeout=30)


# -- instance processes ------------------------------------------------------------------------


@dataclass
class Instance:
    """One `fabric serve` instance: its id, port and state survive restarts, its process not."""

    instance_id: str
    port: int
    peer_port: int  # kept across restarts, like the gRPC port
    state_dir: Path
    log_dir: Path
    env: dict[str, str]
    group: str
    channel: grpc.Channel
    processes: list[subprocess.Popen[bytes]]  # every process of the module, for the teardown
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    stub: pb_grpc.FabricStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = pb_grpc.FabricStub(self.channel)  # type: ignore[no-untyped-call]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running
        self.log = self.log_dir / f"{self.instance_id}.{len(self.processes)}.log"
        command = [sys.executable, "-m", "fabric", "-v", "serve"]
        args = ["--instance-id", self.instance_id, "--group", self.group]
        args += ["--port", str(self.port), "--peer-port", str(self.peer_port)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*command, *args, "--state-dir", str(self.state_dir)],
                env=self.env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(self.proc)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = STOP_WAIT_S) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.instance_id} still running {timeout:.0f}s after SIGTERM")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def health(self, service: str = "") -> Any:
        stub = health_pb2_grpc.HealthStub(self.channel)
        request = health_pb2.HealthCheckRequest(service=service)
        return stub.Check(request, timeout=CALL_S).status

    def topology(self) -> pb.Topology:
        topology: pb.Topology = self.stub.GetTopology(pb.GetTopologyRequest(), timeout=CALL_S)
        return topology


def log_seconds(log: str, start: str, end: str) -> float | None:
    """Seconds between the first log line containing ``start`` and the next containing ``end``."""
    began = None
    for line in log.splitlines():
        if began is None and start in line:
            began = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        elif began is not None and end in line:
            return (datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") - began).total_seconds()
    return None


@dataclass
class Cluster:
    capture: Capture
    instances: list[Instance]

    def ids(self, members: Sequence[Instance] | None = None) -> set[str]:
        return {i.instance_id for i in (self.instances if members is None else members)}

    def problem(self, members: Sequence[Instance]) -> str | None:
        """Why ``members`` are not yet a settled cluster: each alive and SERVING, each owning a
        partition, every partition of every table ACTIVE with lag 0 in every member's view."""
        for instance in members:
            if not instance.running:
                assert instance.proc is not None
                pytest.fail(
                    f"{instance.instance_id} exited with {instance.proc.returncode}:\n"
                    f"{instance.log_text()[-3000:]}"
                )
        ids, owners = self.ids(members), set[str]()
        try:
            for instance in members:
                if instance.health() != health_pb2.HealthCheckResponse.SERVING:
                    return f"{instance.instance_id} is not SERVING"
                tables = {t.table: t for t in instance.topology().tables}
                if sorted(tables) != sorted(TABLES):
                    return f"{instance.instance_id} knows tables {sorted(tables)}"
                for table in tables.values():
                    parts = [(p.owner, p.state, p.lag_records) for p in table.partitions]
                    if len(parts) != PARTITIONS or any(
                        o not in ids or s != "ACTIVE" or lag != 0 for o, s, lag in parts
                    ):
                        return f"{instance.instance_id}: {table.table} {parts}"
                    owners.update(o for o, _, _ in parts)
        except grpc.RpcError as exc:
            return f"{code_of(exc).name}: {exc}"
        return None if owners == ids else f"owners {sorted(owners)}, members {sorted(ids)}"

    def ensure_ready(self) -> None:
        """Start what is not running, then wait until the three instances are settled."""
        for instance in self.instances:
            if not instance.running:
                instance.start()
        wait_until("three settled instances", lambda: self.problem(self.instances))

    def owners(self) -> dict[tuple[str, int], str]:
        """(table, partition) → owning instance, as the first instance sees it."""
        return {
            (t.table, p.partition): p.owner
            for t in self.instances[0].topology().tables
            for p in t.partitions
        }


@pytest.fixture(scope="module")
def cluster(
    capture: Capture, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three instances of one group on loopback, settled and holding every source row."""
    root = tmp_path_factory.mktemp("instances")
    instances = new_instances(capture, stack_env, root, "abc", group="group")
    cluster = Cluster(capture, instances)
    try:
        cluster.ensure_ready()
        source = capture.rows()
        wait_until("every source row materialized", lambda: sweep(instances[0], source))
        yield cluster
    finally:
        stop_instances(instances)


def new_instances(
    capture: Capture,
    stack_env: Mapping[str, str],
    root: Path,
    names: str,
    *,
    group: str,
    settings: Mapping[str, str] | None = None,
) -> list[Instance]:
    """Instances ``<prefix>-<name>`` (not started) of the group ``<prefix>-<group>``, each on a
    free loopback port with its state under ``root``, reading the capture's topics; ``settings``
    add to their environment."""
    env = {
        **stack_env,
        "FABRIC_TOPIC_PREFIX": capture.prefix,
        "FABRIC_HANDOVER_TIMEOUT_S": "60",
        **(settings or {}),
    }
    processes: list[subprocess.Popen[bytes]] = []
    return [
        Instance(
            instance_id=f"{capture.prefix}-{name}",
            port=port,
            peer_port=peer_port,
            state_dir=root / name,
            log_dir=root,
            env=env,
            group=f"{capture.prefix}-{group}",
            channel=grpc.insecure_channel(f"127.0.0.1:{port}"),
            processes=processes,
        )
        for name, (port, peer_port) in zip(names, _port_pairs(len(names)), strict=True)
    ]


def _port_pairs(count: int) -> list[tuple[int, int]]:
    """A gRPC and a forwarding port for each of ``count`` instances."""
    ports = free_ports(2 * count)
    return list(zip(ports[:count], ports[count:], strict=True))


def stop_instances(instances: Sequence[Instance]) -> None:
    """SIGTERM every process the instances ran, SIGKILL what is still running after
    STOP_WAIT_S, and close their channels."""
    processes = {id(p): p for i in instances for p in i.processes}.values()
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    for proc in processes:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for instance in instances:
        instance.channel.close()


# -- lookups -----------------------------------------------------------------------------------


def get_all(
    instance: Instance, lookups: Sequence[Lookup], window: int = 64
) -> list[pb.GetResponse | grpc.RpcError]:
    """``Get`` of every lookup through ``instance``, ``window`` calls in flight at a time."""
    answers: list[pb.GetResponse | grpc.RpcError] = []
    for start in range(0, len(lookups), window):
        calls = [
            instance.stub.Get.future(lookup(table, key), timeout=CALL_S)
            for table, key in lookups[start : start + window]
        ]
        for call in calls:
            try:
                answers.append(call.result())
            except grpc.RpcError as exc:
                answers.append(exc)
    return answers


def sweep(instance: Instance, source: Rows) -> str | None:
    """None when ``Get`` through ``instance`` finds every source row with its values."""
    lookups = [(t, k) for t in TABLES for k in source[t]]
    problems = []
    for (table, key), answer in zip(lookups, get_all(instance, lookups), strict=True):
        if isinstance(answer, grpc.RpcError):
            problems.append(f"{table}{key}: {code_of(answer).name}")
        elif not answer.found:
            problems.append(f"{table}{key}: not found")
        elif (diff := row_difference(decode_row(answer.row), source[table][key])) is not None:
            problems.append(f"{table}{key}: {diff}")
    return f"{len(problems)} wrong, e.g. {problems[:3]}" if problems else None


def freshness_problem(freshness: pb.Freshness, owner: str, *, found: bool) -> str | None:
    if not 0 <= freshness.partition < PARTITIONS:
        return f"partition {freshness.partition}"
    if freshness.served_by != owner:
        return f"served by {freshness.served_by!r}, the owner is {owner}"
    if found and (freshness.lsn <= 0 or freshness.commit_time_ms <= 0 or freshness.offset < 0):
        return f"no source position: {freshness}"
    if freshness.lag_records < 0:
        return f"lag {freshness.lag_records}"
    return None


# -- 1. Get --------------------------------------------------------------------------------------


def test_get_finds_every_row_through_every_instance(capture: Capture, cluster: Cluster) -> None:
    cluster.ensure_ready()
    source = capture.rows()
    owners = cluster.owners()
    lookups = [(t, k) for t in TABLES for k in source[t]] + list(MISSING)
    started = time.monotonic()
    for instance in cluster.instances:
        problems = []
        for (table, key), answer in zip(lookups, get_all(instance, lookups), strict=True):
            where = f"{table}{key} via {instance.instance_id}"
            assert isinstance(answer, pb.GetResponse), f"{where}: {answer}"
            owner = owners[(table, answer.freshness.partition)]
            row = source[table].get(key)
            if row is None:
                assert not answer.found and not answer.row.fields, where
            else:
                assert answer.found, f"{where}: not found"
                if (diff := row_difference(decode_row(answer.row), row)) is not None:
                    problems.append(f"{where}: {diff}")
            problem = freshness_problem(answer.freshness, owner, found=row is not None)
            assert problem is None, f"{where}: {problem}"
        assert problems == []
    count = len(lookups) * len(cluster.instances)
    print(f"\nget: {count} lookups in {time.monotonic() - started:.1f}s, every row equal")


# -- 2. BatchGet ---------------------------------------------------------------------------------


def test_batch_get_answers_in_request_order_with_per_lookup_status(
    capture: Capture, cluster: Cluster
) -> None:
    cluster.ensure_ready()
    source = capture.rows()
    owners = cluster.owners()
    lookups = [(t, k) for t in TABLES for k in source[t]] + list(MISSING)
    random.Random(5).shuffle(lookups)
    for instance in cluster.instances:
        for start in range(0, len(lookups), 1000):
            chunk = lookups[start : start + 1000]
            request = pb.BatchGetRequest(
                lookups=[lookup(t, k, named=n % 2 == 0) for n, (t, k) in enumerate(chunk)]
            )
            answer = instance.stub.BatchGet(request, timeout=CALL_S)
            assert len(answer.results) == len(chunk)
            assert len({t for t, _ in chunk}) == len(TABLES)
            for (table, key), result in zip(chunk, answer.results, strict=True):
                where = f"{table}{key} via {instance.instance_id}"
                assert (result.status, result.message) == ("OK", ""), where
                row = source[table].get(key)
                assert result.found is (row is not None), where
                if row is not None:
                    assert row_difference(decode_row(result.row), row) is None, where
                owner = owners[(table, result.freshness.partition)]
                problem = freshness_problem(result.freshness, owner, found=row is not None)
                assert problem is None, f"{where}: {problem}"

    user, bid = next(iter(source["public.users"])), next(iter(source["public.bids"]))
    mixed = [
        lookup("public.users", user),
        pb.GetRequest(table="public.no_such_table", key=encode_key(["id"], [1])),
        lookup("public.bids", bid),
        pb.GetRequest(table="", key=encode_key(["id"], [1])),
        pb.GetRequest(table="public.users", key=encode_key(["id"], ["one"])),
        lookup("public.users", (10**12,)),
    ]
    for instance in cluster.instances:
        results = instance.stub.BatchGet(pb.BatchGetRequest(lookups=mixed), timeout=CALL_S).results
        statuses = [r.status for r in results]
        assert statuses == ["OK", "NOT_FOUND", "OK", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "OK"]
        assert [r.found for r in results] == [True, False, True, False, False, False]
        assert "public.no_such_table" in results[1].message
        assert "public.users.id" in results[4].message
        assert row_difference(decode_row(results[0].row), source["public.users"][user]) is None
        assert row_difference(decode_row(results[2].row), source["public.bids"][bid]) is None


def test_a_located_batch_is_answered_for_the_partitions_served_there(
    capture: Capture, cluster: Cluster
) -> None:
    """What an instance forwards over the link: keys already located. The owner answers those of
    its partitions with their rows and those of a partition it does not serve (moved since the
    forwarder looked) UNAVAILABLE, which the forwarder retries."""
    cluster.ensure_ready()
    owners = cluster.owners()
    # A table of one integer key with partitions on this instance and elsewhere.
    candidates = [
        (t, i)
        for t in ("public.users", "public.items")
        for i in cluster.instances
        if len({owners[(t, p)] == i.instance_id for p in range(PARTITIONS)}) == 2
    ]
    assert candidates, f"no instance owns some partitions of a table but not all: {owners}"
    table, instance = candidates[0]
    source = capture.rows()[table]
    topic = f"{capture.prefix}.{table}"
    keys: dict[int, list[tuple[Key, bytes]]] = {}
    for key in source:
        record_key = b'{"id":%d}' % key[0]
        keys.setdefault(partition_for(record_key, PARTITIONS), []).append((key, record_key))
    mine = next(p for p in keys if owners[(table, p)] == instance.instance_id)
    theirs = next(p for p in keys if owners[(table, p)] != instance.instance_id)
    asked = [*keys[mine][:3], *keys[theirs][:2], ((10**12,), b'{"id":1000000000000}')]
    parts: list[LocatedKeys] = [
        (table, topic, mine, [k for _, k in asked[:3]]),
        (table, topic, theirs, [k for _, k in asked[3:5]]),
        (table, topic, partition_for(asked[5][1], PARTITIONS), [asked[5][1]]),
    ]
    links = ForwardLinks()
    peer = f"127.0.0.1:{instance.peer_port}"
    try:
        body = links.call(peer, BATCH_GET_LOCATED, located_batch(parts), CALL_S)
        with pytest.raises(ForwardError) as cut:
            links.call(peer, BATCH_GET_LOCATED, located_batch(parts)[:-3], CALL_S)
    finally:
        links.close()
    assert cut.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "a forwarded request does not parse: not a located batch" in cut.value.message
    results = pb.BatchGetResponse.FromString(body).results
    missing_here = owners[(table, parts[2][2])] == instance.instance_id
    assert [r.status for r in results] == ["OK"] * 3 + ["UNAVAILABLE"] * 2 + [
        "OK" if missing_here else "UNAVAILABLE"
    ]
    for (key, _), result in zip(asked[:3], results, strict=False):
        assert result.found and row_difference(decode_row(result.row), source[key]) is None
        assert result.freshness.served_by == instance.instance_id
    assert f"{table}: partition {theirs} is not served here; retry" in results[3].message
    assert not results[5].found


# -- 3. Scan -------------------------------------------------------------------------------------


def scan(instance: Instance, request: pb.ScanRequest) -> list[pb.ScanResponse]:
    return list(instance.stub.Scan(request, timeout=CALL_S * 3))


def scanned_rows(table: str, responses: Sequence[pb.ScanResponse]) -> dict[Key, dict[str, Any]]:
    """Rows by key; fails on a key seen twice."""
    rows: dict[Key, dict[str, Any]] = {}
    for response in responses:
        row = decode_row(response.row)
        key = key_of(table, row)
        assert key not in rows, f"{table}{key} scanned twice"
        assert 0 <= response.freshness.partition < PARTITIONS
        assert response.freshness.served_by and response.resume_token
        rows[key] = row
    return rows


def assert_rows(
    got: Mapping[Key, Mapping[str, Any]], want: Mapping[Key, Mapping[str, Any]]
) -> None:
    assert sorted(got) == sorted(want)
    wrong = {k: d for k in want if (d := row_difference(got[k], want[k])) is not None}
    assert wrong == {}


def test_scan_whole_tables_pages_prefixes_and_ranges(capture: Capture, cluster: Cluster) -> None:
    cluster.ensure_ready()
    source = capture.rows()
    instances = cluster.instances
    for n, table in enumerate(TABLES):
        assert_rows(
            scanned_rows(table, scan(instances[n], pb.ScanRequest(table=table))), source[table]
        )

        # Pages of 97 rows, each asked of the next instance: every row exactly once.
        pages: list[pb.ScanResponse] = []
        token = ""
        for page in range(len(source[table]) // 97 + 2):
            request = pb.ScanRequest(table=table, limit=97, resume_token=token)
            rows = scan(instances[(n + page) % len(instances)], request)
            assert len(rows) <= 97
            pages.extend(rows)
            if len(rows) < 97:
                break
            token = rows[-1].resume_token
        assert_rows(scanned_rows(table, pages), source[table])

    bids_by_item: dict[int, int] = {}
    for item_id, _ in source["public.bids"]:
        bids_by_item[item_id] = bids_by_item.get(item_id, 0) + 1
    busiest = max(bids_by_item, key=lambda i: bids_by_item[i])
    for item_id in (busiest, min(bids_by_item), 999_999):
        want = {k: r for k, r in source["public.bids"].items() if k[0] == item_id}
        prefix = pb.Key(fields=[pb.Field(name="item_id", value=encode_value(item_id))])
        got = scan(instances[1], pb.ScanRequest(table="public.bids", prefix=prefix))
        assert_rows(scanned_rows("public.bids", got), want)
    assert bids_by_item[busiest] > 5

    low, high = 50, 120
    want = {k: r for k, r in source["public.users"].items() if low <= k[0] < high}
    request = pb.ScanRequest(
        table="users",  # a bare name means public
        range_start=encode_key(["id"], [low]),
        range_end=encode_key(["id"], [high]),
    )
    assert_rows(scanned_rows("public.users", scan(instances[2], request)), want)
    assert len(want) == high - low


# -- 4. GetTopology ------------------------------------------------------------------------------


def test_topology_from_any_instance(capture: Capture, cluster: Cluster) -> None:
    cluster.ensure_ready()
    endpoints = {i.instance_id: i.endpoint for i in cluster.instances}
    key_types = {
        "public.users": [("id", "bigint", "int8")],
        "public.items": [("id", "bigint", "int8")],
        "public.bids": [("item_id", "bigint", "int8"), ("bid_no", "integer", "int4")],
    }
    for instance in cluster.instances:
        topology = instance.topology()
        assert {i.instance_id: i.endpoint for i in topology.instances} == endpoints
        tables = {t.table: t for t in topology.tables}
        assert sorted(tables) == sorted(TABLES)
        for name, table in tables.items():
            assert table.topic == f"{capture.prefix}.{name}"
            assert list(table.primary_key) == list(KEYS[name])
            columns = [(c.name, c.pg_type, c.base_type, c.is_enum) for c in table.key_columns]
            assert columns == [(*c, False) for c in key_types[name]]
            assert [p.partition for p in table.partitions] == list(range(PARTITIONS))
            for part in table.partitions:
                assert part.owner in endpoints, f"{name}[{part.partition}]"
                assert part.endpoint == endpoints[part.owner]
                assert (part.state, part.lag_records) == ("ACTIVE", 0)
    assert len({str(i.topology()) for i in cluster.instances}) == 1, "views differ"


# -- 5. Watch ------------------------------------------------------------------------------------


class WatchStream:
    """A ``Watch`` call read by a thread of its own, so that a test waits for events with a
    deadline; the call ends by itself after ``timeout``."""

    def __init__(self, instance: Instance, request: pb.WatchRequest, timeout: float = 180) -> None:
        self.served_by = instance.instance_id
        self._call = instance.stub.Watch(request, timeout=timeout)
        self._events: queue.Queue[pb.WatchEvent] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._read, name="watch", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._call:
                self._events.put(event)
        except grpc.RpcError as exc:
            if code_of(exc) is not grpc.StatusCode.CANCELLED:
                self.error = exc

    def next(self, timeout: float) -> pb.WatchEvent | None:
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            assert self.error is None, f"the watch failed: {self.error}"
            return None

    def take(self, count: int, timeout: float = TIMEOUT_S) -> list[pb.WatchEvent]:
        deadline = time.monotonic() + timeout
        events: list[pb.WatchEvent] = []
        while len(events) < count:
            event = self.next(max(0.01, deadline - time.monotonic()))
            if event is None:
                pytest.fail(f"{len(events)} of {count} events after {timeout:.0f}s: {events}")
            events.append(event)
        return events

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(10)


def arm(stream: WatchStream, change: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    """Make ``change(0)``, ``change(1)``, … until the watch delivers its first event, and return
    the rows of the changes the watch is still to deliver after it.

    A watch without a resume token starts at the topic's end once its consumer is assigned, a
    moment the client cannot observe: changes made before may or may not be delivered."""
    made: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        made.append(change(len(made)))
        first = stream.next(timeout=1.0)
        if first is not None:
            seen = decode_row(first.row)
            index = next(i for i, row in enumerate(made) if row_difference(seen, row) is None)
            assert first.freshness.served_by == stream.served_by
            return made[index + 1 :]
    pytest.fail(f"the watch delivered nothing for {len(made)} changes")


Change = tuple[str, Key, dict[str, Any] | None]  # kind, key, row (UPSERT only)


def view(table: str, event: pb.WatchEvent) -> Change:
    kind = pb.WatchEvent.Kind.Name(event.kind)
    key = tuple(decode_value(f.value) for f in event.key.fields)
    assert [f.name for f in event.key.fields] == list(KEYS[table])
    return kind, key, decode_row(event.row) if kind == "UPSERT" else None


def assert_changes(table: str, events: Sequence[pb.WatchEvent], want: Sequence[Change]) -> None:
    """Per key, the events are exactly the changes of ``want``, in order (keys on different
    partitions interleave freely)."""
    got_by_key: dict[Key, list[Change]] = {}
    for event in events:
        change = view(table, event)
        assert event.freshness.lsn > 0 and event.freshness.commit_time_ms > 0, event
        assert 0 <= event.freshness.partition < PARTITIONS and event.resume_token
        got_by_key.setdefault(change[1], []).append(change)
    want_by_key: dict[Key, list[Change]] = {}
    for change in want:
        want_by_key.setdefault(change[1], []).append(change)
    assert sorted(got_by_key) == sorted(want_by_key)
    for key, wanted in want_by_key.items():
        got = got_by_key[key]
        assert [c[0] for c in got] == [c[0] for c in wanted], key
        for (_, _, row), (_, _, want_row) in zip(got, wanted, strict=True):
            if want_row is not None:
                assert row is not None and row_difference(row, want_row) is None, key


def upsert(row: dict[str, Any] | None) -> Change:
    assert row is not None
    return "UPSERT", (row["id"],), row


def rename(capture: Capture, user_id: int, name: str) -> dict[str, Any]:
    row = capture.change(
        "UPDATE users SET display_name = %s WHERE id = %s RETURNING *", name, user_id
    )
    assert row is not None
    return row


def new_user(capture: Capture, user_id: int, name: str) -> dict[str, Any]:
    row = capture.change(
        "INSERT INTO users (id, email, display_name, external_id) VALUES (%s, %s, %s, %s)"
        " RETURNING *",
        user_id,
        f"qs-{user_id}@example.com",
        name,
        uuid.uuid4(),
    )
    assert row is not None
    return row


def test_watch_a_key_delivers_its_changes_in_order(capture: Capture, cluster: Cluster) -> None:
    cluster.ensure_ready()
    user_id = 1_000_001
    capture.change("DELETE FROM users WHERE id = %s", user_id)
    key = encode_key(["id"], [user_id])
    stream = WatchStream(cluster.instances[1], pb.WatchRequest(table="public.users", key=key))
    try:

        def warm_up(n: int) -> dict[str, Any]:
            if n == 0:
                return new_user(capture, user_id, "warm-up 0")
            return rename(capture, user_id, f"warm-up {n}")

        want = [upsert(row) for row in arm(stream, warm_up)]
        partition = cluster.instances[0].stub.Get(
            lookup("public.users", (user_id,)), timeout=CALL_S
        )
        neighbour = next(
            i
            for i in range(1, 100)
            if cluster.instances[0]
            .stub.Get(lookup("public.users", (i,)), timeout=CALL_S)
            .freshness.partition
            == partition.freshness.partition
        )
        for n in range(5):
            want.append(upsert(rename(capture, user_id, f"version {n} ☃")))
            rename(capture, neighbour, f"neighbour {n}")  # same partition, another key
        capture.change("DELETE FROM users WHERE id = %s", user_id)
        want.append(("DELETE", (user_id,), None))
        events = stream.take(len(want))
        assert [view("public.users", e) for e in events][-1] == want[-1]
        assert_changes("public.users", events, want)
        lsns = [e.freshness.lsn for e in events]
        assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns)
        assert {e.freshness.served_by for e in events} == {cluster.instances[1].instance_id}
        assert stream.next(timeout=2.0) is None, "an event of another key, or a duplicate"
    finally:
        stream.close()


def test_watch_a_table_and_resume_on_another_instance_after_a_restart(
    capture: Capture, cluster: Cluster
) -> None:
    cluster.ensure_ready()
    a, b = cluster.instances[0], cluster.instances[1]
    ids = [1_000_010 + n for n in range(4)]
    capture.change("DELETE FROM users WHERE id = ANY(%s)", ids)
    stream = WatchStream(a, pb.WatchRequest(table="public.users"))
    try:
        want = [upsert(r) for r in arm(stream, lambda n: rename(capture, 1, f"table warm-up {n}"))]
        # Changes of one key only: the token must still hold every partition's position.
        want += [upsert(rename(capture, 1, f"before the restart {n}")) for n in range(3)]
        events = stream.take(len(want))
        assert_changes("public.users", events, want)
        token = events[-1].resume_token
    finally:
        stream.close()

    # Changes while `a` stops (handing its partitions over), is down, and starts again.
    between: list[Change] = []
    a.terminate()
    for user_id in range(2, 12):
        between.append(upsert(rename(capture, user_id, f"while {a.instance_id} stops")))
    between.append(upsert(new_user(capture, ids[0], "inserted while stopping")))
    assert a.wait_exit() == 0
    between.append(upsert(rename(capture, ids[0], "updated while down")))
    between.append(upsert(new_user(capture, ids[1], "inserted while down")))
    capture.change("DELETE FROM users WHERE id = %s", ids[0])
    between.append(("DELETE", (ids[0],), None))
    a.start()
    between += [upsert(rename(capture, i, f"while {a.instance_id} starts")) for i in (2, 3, 4)]
    cluster.ensure_ready()
    between.append(upsert(rename(capture, 1, "after the restart")))

    resumed = WatchStream(b, pb.WatchRequest(table="public.users", resume_token=token))
    try:
        events = resumed.take(len(between))
        assert_changes("public.users", events, between)
        assert {e.freshness.served_by for e in events} == {b.instance_id}
        assert resumed.next(timeout=2.0) is None, "more events than changes"
    finally:
        resumed.close()
        capture.change("DELETE FROM users WHERE id = ANY(%s)", ids)


# -- 6. health and reflection --------------------------------------------------------------------


def test_health_and_reflection(cluster: Cluster) -> None:
    cluster.ensure_ready()
    serving = health_pb2.HealthCheckResponse.SERVING
    for instance in cluster.instances:
        assert instance.health("") == serving
        assert instance.health(SERVICE) == serving
        stub = reflection_pb2_grpc.ServerReflectionStub(instance.channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
        ]
        listed, described = stub.ServerReflectionInfo(iter(requests), timeout=CALL_S)
        names = {s.name for s in listed.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= names
        files = described.file_descriptor_response.file_descriptor_proto
        assert any(b"fabric/rpc/v1/fabric.proto" in f for f in files)


def test_a_forwarding_port_in_use_is_named_and_the_instance_exits(
    cluster: Cluster, tmp_path: Path
) -> None:
    model = cluster.instances[0]
    (grpc_port,) = free_ports(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        peer_port = taken.getsockname()[1]
        args = ["serve", "--instance-id", "port-clash", "--group", f"{model.group}-port-clash"]
        args += ["--port", str(grpc_port), "--peer-port", str(peer_port)]
        done = subprocess.run(
            [sys.executable, "-m", "fabric", *args, "--state-dir", str(tmp_path / "state")],
            env=model.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert (
        f"fabric: cannot listen for forwarded lookups on 127.0.0.1:{peer_port} (Address already"
        " in use)" in done.stderr
    )
    assert "FABRIC_PEER_PORT" in done.stderr and "Traceback" not in done.stderr


# -- 7. bad requests -----------------------------------------------------------------------------


def test_bad_requests_get_exact_statuses_and_nothing_breaks(
    capture: Capture, cluster: Cluster
) -> None:
    cluster.ensure_ready()

    def key(*fields: tuple[str, Any]) -> pb.Key:
        return pb.Key(fields=[pb.Field(name=n, value=encode_value(v)) for n, v in fields])

    malformed = [
        ("public.users", key(("user_id", 1)), "user_id"),  # a field of another name
        ("public.users", key(("id", "one")), "public.users.id"),  # text for a bigint
        ("public.users", key(("id", 1.5)), "public.users.id"),  # a double for a bigint
        ("public.bids", key(("item_id", 1)), "bid_no"),  # half a composite key
        ("public.bids", key(("item_id", 1), ("bid_no", "x")), "public.bids.bid_no"),
        ("public.users", key(("", 1), ("", 2)), "(id)"),  # one value too many
        ("public.users", key(("id", 1), ("", 2)), "name every key field or none"),
    ]
    for instance in cluster.instances:
        stub = instance.stub
        unknown = pb.GetRequest(table="public.nope", key=encode_key(["id"], [1]))
        error = rpc_error(stub.Get, unknown)
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert "public.nope" in (error.details() or "")
        error = rpc_error(stub.Scan, pb.ScanRequest(table="public.nope"))
        assert error.code() is grpc.StatusCode.NOT_FOUND
        for table, bad_key, named in malformed:
            error = rpc_error(stub.Get, pb.GetRequest(table=table, key=bad_key))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (table, bad_key)
            assert named in (error.details() or ""), error.details()

        oversized = [lookup("public.users", (i,)) for i in range(1001)]
        error = rpc_error(stub.BatchGet, pb.BatchGetRequest(lookups=oversized))
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == (
            "a BatchGet holds at most 1000 lookups, got 1001; split it into several calls"
        )

        # Bytes that are not a BatchGetRequest are refused whole, lookups that would locate
        # well included.
        located = pb.BatchGetRequest(
            lookups=[lookup("public.users", (i,)) for i in range(1, 40)]
        ).SerializeToString()
        with grpc.insecure_channel(f"127.0.0.1:{instance.port}") as channel:
            raw: Any = channel.unary_unary(
                f"/{SERVICE}/BatchGet", request_serializer=None, response_deserializer=None
            )
            for body in (
                b"\xff\xff\xff",  # a truncated varint
                b"\x0a\x04\x0a\x02\xc3\x28",  # a lookup's table: invalid UTF-8
                located + b"\x0a\x04\x0a\x02\xc3\x28",
                located + b"\x0f",  # a field of wire type 7, which does not exist
            ):
                error = rpc_error(raw, body)
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, body
                assert (error.details() or "").startswith(
                    "the request is not a serialized fabric.rpc.v1.BatchGetRequest ("
                ), error.details()

        error = rpc_error(stub.Get, pb.GetRequest(table="", key=key(("id", 1))))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "no table named" in (error.details() or "")

        for token in ("garbage!", "bm90IGEgdG9rZW4=", "%%%"):
            for method, request in (
                (stub.Scan, pb.ScanRequest(table="public.users", resume_token=token)),
                (stub.Watch, pb.WatchRequest(table="public.users", resume_token=token)),
            ):
                error = rpc_error(method, request)
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (request, error)
                assert "resume token" in (error.details() or "")

    source = capture.rows()
    for instance in cluster.instances:
        assert instance.running, f"{instance.instance_id} exited"
        assert (
            sweep(instance, {t: dict(list(rows.items())[:20]) for t, rows in source.items()})
            is None
        )
    assert cluster.problem(cluster.instances) is None


# -- 8 and 9. an instance leaving under load -----------------------------------------------------


SLOW_S = 1.0  # an answer this late counts as held up by the partition's move


@dataclass
class Failure:
    started: float  # monotonic
    ended: float
    instance: str
    code: str  # the gRPC status, or WRONG for a wrong answer
    what: str


class LookupLoad(threading.Thread):
    """``Get`` of random keys against ``targets`` until stopped (or ``limit_s``), checking every
    answer. With ``rotate``, an UNAVAILABLE answer sends the lookup to the next target, as a
    client with several endpoints does; only a lookup no target answered is a failure."""

    def __init__(
        self,
        name: str,
        targets: Sequence[Instance],
        source: Rows,
        stop: threading.Event,
        *,
        rotate: bool = False,
        call_s: float = CALL_S,
        limit_s: float = 180.0,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._targets = list(targets)
        self._lookups = [(t, k, row) for t, rows in source.items() for k, row in rows.items()]
        self._halt = stop
        self._rotate = rotate
        self._call_s = call_s
        self._limit_s = limit_s
        self._rng = random.Random(name)
        self.ok = 0
        self.switches = 0
        self.failures: list[Failure] = []
        self.slow: list[tuple[float, float]] = []  # (started, seconds) of late answers

    def run(self) -> None:
        current = 0
        until = time.monotonic() + self._limit_s
        while not self._halt.is_set() and time.monotonic() < until:
            table, key, row = self._rng.choice(self._lookups)
            for _ in range(len(self._targets) if self._rotate else 1):
                target = self._targets[current]
                started = time.monotonic()
                code, what = self._ask(target, table, key, row, self._call_s)
                ended = time.monotonic()
                if code == "OK":
                    self.ok += 1
                    if ended - started >= SLOW_S:
                        self.slow.append((started, ended - started))
                    break
                if code == "UNAVAILABLE" and self._rotate:
                    current = (current + 1) % len(self._targets)
                    self.switches += 1
                    continue
                self.failures.append(Failure(started, ended, target.instance_id, code, what))
                break
            else:
                self.failures.append(Failure(started, ended, "all", code, f"{table}{key}: {what}"))

    @staticmethod
    def _ask(
        target: Instance, table: str, key: Key, row: Mapping[str, Any], call_s: float
    ) -> tuple[str, str]:
        """(the status, or WRONG for a wrong answer; what happened)."""
        try:
            answer = target.stub.Get(lookup(table, key), timeout=call_s)
        except grpc.RpcError as exc:
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            return code_of(exc).name, f"{table}{key}: {details}"
        diff = row_difference(decode_row(answer.row), row) if answer.found else "not found"
        return ("OK", "") if diff is None else ("WRONG", f"{table}{key}: {diff}")


def start_load(
    name: str,
    assignments: Sequence[tuple[Sequence[Instance], bool]],
    source: Rows,
    call_s: float = CALL_S,
) -> tuple[threading.Event, list[LookupLoad]]:
    stop = threading.Event()
    threads = [
        LookupLoad(f"{name}-{n}", targets, source, stop, rotate=rotate, call_s=call_s)
        for n, (targets, rotate) in enumerate(assignments)
    ]
    for thread in threads:
        thread.start()
    return stop, threads


def stop_load(stop: threading.Event, threads: Sequence[LookupLoad]) -> None:
    stop.set()
    for thread in threads:
        thread.join(CALL_S * 3)
        assert not thread.is_alive(), f"{thread.name} did not stop"


def holds_everything(cluster: Cluster, members: Sequence[Instance]) -> str | None:
    """Like :meth:`Cluster.problem`, without asking that every member owns a partition."""
    problem = cluster.problem(members)
    return None if problem is None or problem.startswith("owners") else problem


def test_graceful_stop_under_load_fails_no_lookup(capture: Capture, cluster: Cluster) -> None:
    cluster.ensure_ready()
    source = capture.rows()
    wait_until("every row current", lambda: sweep(cluster.instances[0], source))
    a, b, c = cluster.instances
    stop, threads = start_load(
        "graceful", [([a], False), ([c], False), ([a], False), ([b, c, a], True)], source
    )
    try:
        wait_until("load running", lambda: None if all(t.ok for t in threads) else "no answer")
        b.terminate()
        stopped = time.monotonic()
        wait_until("b gone", lambda: None if not b.running else "b running", timeout=STOP_WAIT_S)
        exited = time.monotonic() - stopped
        wait_until("a and c holding every partition", lambda: holds_everything(cluster, [a, c]))
        settled = time.monotonic() - stopped
    finally:
        stop_load(stop, threads)
    assert b.proc is not None and b.proc.returncode == 0, b.log_text()[-3000:]
    log = b.log_text()
    handover = log_seconds(log, "handover started", "handover finished")
    stopping = log_seconds(log, "instance stopping", "instance stopped")
    ok = sum(t.ok for t in threads)
    failures = [f for t in threads for f in t.failures]
    print(
        f"\ngraceful stop: {ok} lookups answered, {len(failures)} failed, "
        f"{sum(t.switches for t in threads)} client switches after UNAVAILABLE; per thread "
        f"{[t.ok for t in threads]}; handover {handover}s, SIGTERM to exit {stopping}s in the "
        f"log ({exited:.1f}s measured), remaining two settled {settled:.1f}s after SIGTERM"
    )
    assert failures == []
    assert threads[-1].switches >= 1, "the client never met the stopping instance's refusal"
    assert "Traceback" not in log


def test_kill_9_under_load_recovers_every_key(capture: Capture, cluster: Cluster) -> None:
    cluster.ensure_ready()
    source = capture.rows()
    wait_until("every row current", lambda: sweep(cluster.instances[0], source))
    a, b, c = cluster.instances
    stop, threads = start_load(
        "kill", [([a], False), ([b], False), ([a], False)], source, call_s=KILL_CALL_S
    )
    try:
        wait_until("load running", lambda: None if all(t.ok for t in threads) else "no answer")
        c.kill()
        killed = time.monotonic()

        def recovered() -> str | None:
            return holds_everything(cluster, [a, b]) or sweep(a, source) or sweep(b, source)

        wait_until("every key served by a and b", recovered, timeout=RECOVERY_BOUND_S + 30)
        served_again = time.monotonic() - killed
    finally:
        stop_load(stop, threads)
    ok = sum(t.ok for t in threads)
    failures = sorted((f for t in threads for f in t.failures), key=lambda f: f.ended)
    codes = sorted({f.code for f in failures})
    slow = [(started, seconds) for t in threads for started, seconds in t.slow]
    held_until = max([f.ended for f in failures] + [st + sec for st, sec in slow], default=killed)
    if failures:
        first, last = failures[0], failures[-1]
        window = (
            f"first failure at {first.ended - killed:+.1f}s, last at {last.ended - killed:+.1f}s "
            f"after the kill ({last.ended - first.ended:.1f}s apart), {codes}"
        )
    else:
        window = "no lookup failed"
    print(
        f"\nkill -9: {ok} lookups answered, {len(failures)} failed ({KILL_CALL_S:.0f}s deadline "
        f"per call); {window}; {len(slow)} answers took over {SLOW_S:.0f}s (longest "
        f"{max((sec for _, sec in slow), default=0.0):.1f}s); the last failed or late lookup "
        f"ended {held_until - killed:.1f}s after the kill; every key served by the remaining "
        f"two {served_again:.1f}s after the kill (session timeout 10s)"
    )
    assert served_again < RECOVERY_BOUND_S
    assert all(f.ended - killed < RECOVERY_BOUND_S for f in failures)
    assert {f.code for f in failures} <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, failures

    c.start()  # same id, same state
    restarted = time.monotonic()
    cluster.ensure_ready()
    rejoined = time.monotonic() - restarted
    for instance in cluster.instances:
        assert sweep(instance, source) is None, instance.instance_id
    print(f"kill -9: the killed instance restarted with its state, settled in {rejoined:.1f}s")


def test_an_instance_joining_under_load_fails_no_lookup(
    capture: Capture, cluster: Cluster, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The partitions a new instance takes stay served by the instances they leave until it
    has restored them."""
    cluster.ensure_ready()
    source = capture.rows()
    a, b, c = cluster.instances
    (d,) = new_instances(capture, stack_env, tmp_path, "d", group="group")
    assignments = [([a], False), ([c], False), ([a, b, c], True)]
    stop, threads = start_load("join", assignments, source, call_s=KILL_CALL_S)

    def let_go() -> int:
        return sum(i.log_text().count("letting go of a revoked partition") for i in (a, b, c))

    def consumers_left_open() -> str | None:
        """An instance that let its kept copies go closes the consumer that applied them."""
        still = [
            i.instance_id
            for i in (a, b, c)
            if "letting go of a revoked partition" in (text := i.log_text())
            and "standby consumers closed" not in text
        ]
        return f"still open on {', '.join(still)}" if still else None

    try:
        wait_until("load running", lambda: None if all(t.ok for t in threads) else "no answer")
        d.start()
        joined = time.monotonic()
        wait_until("four settled instances", lambda: cluster.problem([a, b, c, d]))
        settled = time.monotonic() - joined
        wait_until("the copies kept for d let go", lambda: None if let_go() else "kept")
        wait_until("the consumers that applied them closed", consumers_left_open)
    finally:
        stop_load(stop, threads)
        stop_instances([d])
    ok = sum(t.ok for t in threads)
    failures = [f for t in threads for f in t.failures]
    print(
        f"\njoin: {ok} lookups answered, {len(failures)} failed while a fourth instance joined "
        f"and restored (settled {settled:.1f}s after it started); {let_go()} revoked partitions "
        "kept until their new owner served them"
    )
    assert failures == [], failures[:3]


def test_an_instance_restarted_at_once_is_still_forwarded_to(
    capture: Capture, cluster: Cluster
) -> None:
    """Back within the session timeout, a static member keeps the client.id it joined with
    first: the ports it advertises must be the ones it listens on again."""
    cluster.ensure_ready()
    source = capture.rows()
    a, b, c = cluster.instances
    c.kill()
    c.start()  # same id, state and ports, long before the group notices it went
    cluster.ensure_ready()
    owned_by_c = {key for key, owner in cluster.owners().items() if owner == c.instance_id}
    assert owned_by_c, "the restarted instance owns partitions: lookups for them are forwarded"
    for instance in (a, b):
        assert sweep(instance, source) is None, instance.instance_id
