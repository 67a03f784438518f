"""Freshness: a change committed in Postgres until a fabric lookup returns it, light and heavy load.

Setup, on the local stack (``fabric stack up``): the table ``bench.fresh_rows`` (1,000 rows: a
bigint key, a counter, ~200 bytes of text), captured by a connector of its own
(``freshbench.bench.fresh_rows``, the sample spec's settings: poll interval 50 ms, heartbeats),
and two ``fabric serve`` processes of their own group. All of it is removed at the end.

Each phase runs writers that commit one ``UPDATE … SET v = v + 1`` per transaction and note the
wall time the commit returned, and measures for sampled writes:

- the baseline, in the same run: commit → the change's record read from the topic by a plain
  confluent-kafka consumer (what Debezium and Connect take);
- commit → visible: a ``FabricClient.get`` of the row, repeated every 2 ms, first returns the new
  value (what the fabric adds on top: the materializer's consume and apply, and the lookup).

Light load is 10 writes/s. Heavy load is found first by a ramp (:data:`RAMP`): stages of rising
write rates, each counting what reaches Kafka (a stage keeps up when every record is in the topic
within :data:`DRAINED_S` of its last commit), up to unthrottled writers; heavy load is the stage
whose records reached Kafka fastest while keeping up. Medians over ``--runs``.

    .venv/bin/python -m bench.freshness [--runs 3] [--light-s 20] [--heavy-s 10] [--ramp-s 5]
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench.connectors import bench_spec
from fabric import cli, db
from fabric.client import FabricClient
from fabric.config import FabricConfig, load
from fabric.stack.ports import free_ports

PREFIX = "freshbench"
TABLE = "bench.fresh_rows"
TOPIC = f"{PREFIX}.{TABLE}"
CONNECTOR = "fresh-bench"
GROUP = "fresh-bench"
ROWS = 1000
LIGHT_RATE = 10.0
HEAVY_WRITERS = 4
# The ramp's stages, (writers, writes/s in all; None: unthrottled), run while Debezium keeps up.
RAMP: tuple[tuple[int, float | None], ...] = (
    (4, 250.0), (4, 500.0), (4, 1000.0), (4, 2000.0), (4, None), (8, None)
)  # fmt: skip
DRAINED_S = 1.0  # a stage whose records all reach Kafka within this of its last commit kept up
UNTHROTTLED_GUESS = 3000.0  # writes/s, only to space the Kafka samples of unthrottled stages
SAMPLES_PER_S = 40.0  # sampled writes per second under heavy load
POLL_S = 0.002
GIVE_UP_S = 30.0
LOG_DIR = Path("/var/tmp/cdc-fabric-bench-freshness")

DDL = f"""
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (id bigint PRIMARY KEY, v bigint NOT NULL, pad text NOT NULL);
INSERT INTO {TABLE} SELECT i, 0, repeat('x', 200) FROM generate_series(1, {ROWS}) AS i;
"""


@dataclass
class Write:
    key: int
    value: int
    committed: float  # wall clock, seconds


@dataclass
class Phase:
    name: str
    writes: int
    rate: float
    kafka_ms: list[float]
    visible_ms: list[float]
    missing: int  # sampled writes never seen through the fabric within GIVE_UP_S
    kafka_rate: float  # records/s that reached the topic, first write to last arrival
    drain_s: float  # from the last commit until every record of the phase was in Kafka

    def line(self) -> str:
        return (
            f"{self.name:<6} {self.rate:>8,.0f} writes/s  "
            f"commit → Kafka p50 {_q(self.kafka_ms, 50):>5.0f} ms p99 {_q(self.kafka_ms, 99):>5.0f}"
            f" ms   commit → visible p50 {_q(self.visible_ms, 50):>5.0f} ms"
            f" p99 {_q(self.visible_ms, 99):>5.0f} ms  ({len(self.visible_ms)} samples,"
            f" {self.missing} missing)"
        )

    def ramp_line(self, writers: int, target: float | None) -> str:
        aim = "unthrottled" if target is None else f"{target:,.0f}/s"
        return (
            f"ramp {writers} writers {aim:>11}: wrote {self.rate:>6,.0f}/s, Kafka got"
            f" {self.kafka_rate:>6,.0f}/s, drained {self.drain_s:.2f} s after the last commit,"
            f" commit → Kafka p99 {_q(self.kafka_ms, 99):.0f} ms"
        )


def _q(values: list[float], percent: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


# -- setup ---------------------------------------------------------------------------------------


@contextmanager
def fabric_instances(count: int) -> Iterator[list[str]]:
    """``count`` fabric serve processes of the bench's group; stopped (by pid) on exit."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FABRIC_TOPIC_PREFIX": PREFIX, "FABRIC_HANDOVER_TIMEOUT_S": "0"}
    fabric = Path(sys.executable).with_name("fabric")
    processes: list[subprocess.Popen[bytes]] = []
    endpoints = []
    try:
        for n in range(1, count + 1):
            port, peer_port = free_ports(2)
            argv = [str(fabric), "serve", "--instance-id", f"fresh-bench-{n}", "--port", str(port)]
            argv += ["--peer-port", str(peer_port)]
            with (LOG_DIR / f"fresh-bench-{n}.log").open("ab") as out:
                processes.append(
                    subprocess.Popen(
                        [*argv, "--group", GROUP],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            endpoints.append(f"127.0.0.1:{port}")
        yield endpoints
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(client: FabricClient, instances: int, timeout_s: float = 300.0) -> None:
    """Until the table's partitions are shared by every instance, all ACTIVE: a measurement
    must not include a rebalance."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            (info,) = [t for t in client.topology().tables if t.table == TABLE]
            owners = {p.owner for p in info.partitions}
            if len(owners) == instances and all(p.state == "ACTIVE" for p in info.partitions):
                return
        except Exception:  # not captured or not assigned yet: keep asking
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the fabric did not serve {TABLE} within {timeout_s:.0f}s")


# -- measuring -----------------------------------------------------------------------------------


class KafkaArrivals:
    """Reads the table topic from its end; notes when each (key, value) arrives."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{GROUP}-baseline",
                "fetch.wait.max.ms": 5,
            }
        )
        partitions = self._consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        self._consumer.assign([TopicPartition(TOPIC, p, OFFSET_END) for p in partitions])
        self.arrived: dict[tuple[int, int], float] = {}
        self.received = 0  # records read from the topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(2.0)  # the assignment takes effect before the first write is timed

    def _run(self) -> None:
        while not self._stop.is_set():
            # poll, not consume: consume waits out its timeout for a batch, late by up to that.
            msg = self._consumer.poll(0.05)
            value = msg.value() if msg is not None and msg.error() is None else None
            if not value:
                continue
            self.received += 1
            after = orjson.loads(value).get("after") or {}
            if "id" in after:
                self.arrived.setdefault((after["id"], after["v"]), time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def writer(
    cfg: FabricConfig,
    *,
    rate: float | None,
    until: float,
    sample_every: int,
    samples: queue.Queue[Write | None],
    counts: list[int],
    finished: list[float],
    seed: int,
) -> None:
    rng = random.Random(seed)
    with db.connect(cfg.endpoints) as conn:
        n = 0
        start = time.monotonic()
        while time.monotonic() < until:
            key = rng.randint(1, ROWS)
            row = conn.execute(
                f"UPDATE {TABLE} SET v = v + 1 WHERE id = %s RETURNING v", (key,)
            ).fetchone()
            committed = time.time()  # autocommit: the statement's commit has returned
            assert row is not None
            if n % sample_every == 0:
                samples.put(Write(key, int(str(row[0])), committed))
            n += 1
            if rate is not None:
                pause = start + n / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        counts.append(n)
        finished.append(time.monotonic())


def reader(
    client: FabricClient, samples: queue.Queue[Write | None], seen: list[float], missing: list[int]
) -> None:
    while (write := samples.get()) is not None:
        give_up = write.committed + GIVE_UP_S
        while True:
            row = client.get(TABLE, write.key)
            now = time.time()
            if row is not None and row["v"] >= write.value:
                seen.append((now - write.committed) * 1000)
                break
            if now > give_up:
                missing.append(write.key)
                break
            time.sleep(POLL_S)


def phase(
    cfg: FabricConfig,
    client: FabricClient,
    arrivals: KafkaArrivals,
    *,
    name: str,
    seconds: float,
    rate: float | None,
    writers: int,
    sample_every: int,
    lookups: bool = True,
) -> Phase:
    """``writers`` connections commit for ``seconds`` (at ``rate`` in all, or unthrottled);
    every ``sample_every``-th write of each is timed into Kafka and, with ``lookups``, through
    the fabric."""
    samples: queue.Queue[Write | None] = queue.Queue()
    sampled: list[Write] = []
    counts: list[int] = []
    finished: list[float] = []  # when each writer made its last commit
    seen: list[float] = []
    missing: list[int] = []
    relay: queue.Queue[Write | None] = queue.Queue()
    readers = [
        threading.Thread(target=reader, args=(client, relay, seen, missing), daemon=True)
        for _ in range(4 if lookups else 0)
    ]
    for thread in readers:
        thread.start()
    received_before = arrivals.received
    until = time.monotonic() + seconds
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=writer,
            args=(cfg,),
            kwargs={
                "rate": rate and rate / writers,
                "until": until,
                "sample_every": sample_every,
                "samples": samples,
                "counts": counts,
                "finished": finished,
                "seed": n,
            },
        )
        for n in range(writers)
    ]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads) or not samples.empty():
        try:
            write = samples.get(timeout=0.1)
        except queue.Empty:
            continue
        if write is not None:
            sampled.append(write)
            if lookups:
                relay.put(write)
    written = max(finished)
    elapsed = written - started
    total = sum(counts)
    # What reached Kafka: every record of the phase, and how long after the last commit.
    deadline = written + GIVE_UP_S
    while arrivals.received - received_before < total and time.monotonic() < deadline:
        time.sleep(0.005)
    drain_s = time.monotonic() - written
    kafka_rate = (arrivals.received - received_before) / (elapsed + drain_s)
    for _ in readers:
        relay.put(None)
    for thread in readers:
        thread.join()
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline and any(
        (w.key, w.value) not in arrivals.arrived for w in sampled
    ):
        time.sleep(0.1)
    kafka = [
        (arrivals.arrived[(w.key, w.value)] - w.committed) * 1000
        for w in sampled
        if (w.key, w.value) in arrivals.arrived
    ]
    return Phase(name, total, total / elapsed, kafka, seen, len(missing), kafka_rate, drain_s)


def ramp(
    cfg: FabricConfig, client: FabricClient, arrivals: KafkaArrivals, seconds: float
) -> tuple[int, float | None]:
    """Raise the write rate stage by stage (:data:`RAMP`) while Debezium keeps up — every record
    of a stage in Kafka within :data:`DRAINED_S` of its last commit — and return the stage
    (writers, rate) whose records reached Kafka fastest."""
    best: tuple[int, float | None] = (HEAVY_WRITERS, None)
    best_rate = 0.0
    for writers, target in RAMP:
        per_writer = (target or UNTHROTTLED_GUESS) / writers
        stage = phase(
            cfg,
            client,
            arrivals,
            name="ramp",
            seconds=seconds,
            rate=target,
            writers=writers,
            sample_every=max(1, int(per_writer / 10)),
            lookups=False,
        )
        kept_up = stage.drain_s <= DRAINED_S
        print("  " + stage.ramp_line(writers, target) + ("" if kept_up else "  FELL BEHIND"))
        if not kept_up:
            break
        if stage.kafka_rate > best_rate:
            best, best_rate = (writers, target), stage.kafka_rate
    return best


def run_once(
    cfg: FabricConfig,
    client: FabricClient,
    args: argparse.Namespace,
    heavy_at: tuple[int, float | None],
) -> list[Phase]:
    arrivals = KafkaArrivals(cfg.endpoints.kafka_bootstrap)
    try:
        light = phase(
            cfg,
            client,
            arrivals,
            name="light",
            seconds=args.light_s,
            rate=LIGHT_RATE,
            writers=1,
            sample_every=1,
        )
        print("  " + light.line(), flush=True)
        # Heavy: the ramp's best stage; sample about SAMPLES_PER_S writes a second (rate known
        # from a short probe of the same writers).
        writers, rate = heavy_at
        probe = phase(
            cfg,
            client,
            arrivals,
            name="probe",
            seconds=2.0,
            rate=rate,
            writers=writers,
            sample_every=1_000_000,
            lookups=False,
        )
        every = max(1, int(probe.rate / SAMPLES_PER_S))  # per writer: each writes rate / W
        heavy = phase(
            cfg,
            client,
            arrivals,
            name="heavy",
            seconds=args.heavy_s,
            rate=rate,
            writers=writers,
            sample_every=every,
        )
        print("  " + heavy.line(), flush=True)
        return [light, heavy]
    finally:
        arrivals.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--light-s", type=float, default=20.0)
    parser.add_argument("--heavy-s", type=float, default=10.0)
    parser.add_argument("--ramp-s", type=float, default=5.0, help="seconds per ramp stage")
    args = parser.parse_args()
    cfg = load()
    with db.connect(cfg.endpoints) as conn:
        conn.execute(DDL)
    with tempfile.TemporaryDirectory(prefix="fresh-bench-") as folder:
        spec = bench_spec(Path(folder), name=CONNECTOR, prefix=PREFIX, table=TABLE)
        cli.main(["connectors", "delete", "--drop-slot", str(spec)])
        if cli.main(["connectors", "apply", str(spec)]) != 0:
            raise SystemExit(f"fabric connectors apply {spec} failed")
        try:
            with (
                fabric_instances(2) as endpoints,
                FabricClient(endpoints, timeout_s=5.0) as client,
            ):
                wait_ready(client, len(endpoints))
                print("ramp: the highest write rate Debezium keeps up with", flush=True)
                arrivals = KafkaArrivals(cfg.endpoints.kafka_bootstrap)
                try:
                    heavy_at = ramp(cfg, client, arrivals, args.ramp_s)
                finally:
                    arrivals.close()
                writers, rate = heavy_at
                aim = "unthrottled" if rate is None else f"{rate:,.0f} writes/s"
                print(f"heavy load: {writers} writers, {aim}", flush=True)
                results: dict[str, list[Phase]] = {"light": [], "heavy": []}
                for number in range(1, args.runs + 1):
                    print(f"run {number}:", flush=True)
                    for result in run_once(cfg, client, args, heavy_at):
                        results[result.name].append(result)
        finally:
            cli.main(["connectors", "delete", "--drop-slot", str(spec)])
    print(f"\nfreshness on {TABLE} ({ROWS} rows), 2 instances; medians of {args.runs} run(s):")
    for name, phases in results.items():
        rate = statistics.median(p.rate for p in phases)
        kafka50, kafka99, visible50, visible99 = (
            statistics.median(_q(getattr(p, f), q) for p in phases)
            for f, q in (("kafka_ms", 50), ("kafka_ms", 99), ("visible_ms", 50), ("visible_ms", 99))
        )
        print(
            f"  {name:<6} {rate:>8,.0f} writes/s  commit → Kafka p50 {kafka50:.0f} ms"
            f" p99 {kafka99:.0f} ms   commit → visible p50 {visible50:.0f} ms"
            f" p99 {visible99:.0f} ms  ({sum(p.missing for p in phases)} missing)"
        )
        print(
            f"         Kafka got {statistics.median(p.kafka_rate for p in phases):,.0f} records/s,"
            f" drained {max(p.drain_s for p in phases):.2f} s after the last commit at most"
        )
    light = results["light"]
    p50 = statistics.median(_q(p.visible_ms, 50) for p in light)
    p99 = statistics.median(_q(p.visible_ms, 99) for p in light)
    verdict = "met" if p50 <= 100 and p99 <= 500 else "MISSED"
    print(f"  target, light load: p50 <= 100 ms and p99 <= 500 ms: {verdict}")


if __name__ == "__main__":
    main()
