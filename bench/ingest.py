"""Ingest: how fast one materializer process turns a CDC topic into partition stores.

Pre-fills a compacted topic with Debezium-shaped change events (about 300 bytes each, keys placed
by Kafka's murmur2 rule as Connect would place them), then, in the same run:

- baseline: the raw confluent-kafka consume rate of the whole topic (batched ``consume``, nothing
  done with the records);
- the materializer: a fresh instance (empty state, so this is also the full-rebuild rate) applying
  every record to its stores, until every partition is ACTIVE.

Prints events/s for both, their ratio, and the resident memory of this process with every row
stored. Needs a running Kafka (``fabric stack up``; ``FABRIC_KAFKA_BOOTSTRAP`` to point elsewhere).

    .venv/bin/python -m bench.ingest [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.queues
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from fabric import config
from fabric.core.keys import KeyCodec
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.materialize.instance import Materializer
from fabric.materialize.partition import PartitionState

PREFIX = "bench"
TABLE = "public.rows"
TOPIC = f"{PREFIX}.{TABLE}"
PARTITIONS = 6
# The table's definition as the catalog would read it: the routing self-check runs on every row.
SCHEMA = TableSchema(
    "public",
    "rows",
    (
        Column("id", ColumnType("bigint", "int8"), not_null=True),
        Column("email", ColumnType("text", "text")),
        Column("name", ColumnType("text", "text")),
        Column("balance", ColumnType("numeric(12,2)", "numeric")),
        Column("active", ColumnType("boolean", "bool")),
    ),
    ("id",),
)


def _event(i: int) -> tuple[bytes, bytes]:
    key = f'{{"id":{i}}}'.encode()
    value = {
        "before": None,
        "after": {
            "id": i,
            "email": f"user{i}@example.com",
            "name": f"User number {i}",
            "balance": f"{i % 100000}.{i % 100:02d}",
            "active": i % 3 != 0,
        },
        "source": {
            "connector": "postgresql",
            "name": PREFIX,
            "ts_ms": 1_764_000_000_000 + i,
            "snapshot": "false",
            "schema": "public",
            "table": "rows",
            "txId": 1000 + i,
            "lsn": 24_000_000 + i * 64,
        },
        "op": "c",
        "ts_ms": 1_764_000_000_100 + i,
    }
    return key, json.dumps(value, separators=(",", ":")).encode()


def prefill(bootstrap: str, events: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    if TOPIC in existing:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
        total = sum(
            consumer.get_watermark_offsets(tp, timeout=10)[1]
            for tp in [TopicPartition(TOPIC, p) for p in range(len(existing[TOPIC].partitions))]
        )
        consumer.close()
        if total == events:
            return
        admin.delete_topics([TOPIC])[TOPIC].result(timeout=30)
        time.sleep(2)
    topic = NewTopic(
        TOPIC, num_partitions=PARTITIONS, replication_factor=1, config={"cleanup.policy": "compact"}
    )
    admin.create_topics([topic])[TOPIC].result(timeout=30)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",  # Connect's (Java's) placement of keyed records
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
        }
    )
    t0 = time.monotonic()
    for i in range(events):
        key, value = _event(i)
        while True:
            try:
                producer.produce(TOPIC, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    print(f"prefilled {events} events in {time.monotonic() - t0:.1f}s")


def raw_consume(bootstrap: str, events: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "queued.min.messages": 100_000,
        }
    )
    consumer.subscribe([TOPIC])
    seen = 0
    start = None
    while seen < events:
        batch = consumer.consume(2000, timeout=1.0)
        if batch and start is None:
            start = time.monotonic()
        seen += sum(1 for m in batch if m.error() is None)
    elapsed = time.monotonic() - (start or time.monotonic())
    consumer.close()
    return events / elapsed


@dataclass(frozen=True)
class InstanceRun:
    rebuild_per_s: float  # events/s from an empty state folder
    rss_mb: float  # resident memory of the instance process with every row stored
    resume_restored: int  # records re-read when restarted with intact state
    resume_s: float  # restart with intact state until every partition is ACTIVE


def materialize(bootstrap: str, events: int, state: Path) -> InstanceRun:
    """One instance process: a full rebuild into ``state``, then a restart on the same state."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.queues.Queue[InstanceRun] = context.Queue()
    child = context.Process(target=_instance_process, args=(bootstrap, events, state, results))
    child.start()
    run = results.get(timeout=600)
    child.join(60)
    return run


def _instance_process(
    bootstrap: str, events: int, state: Path, results: multiprocessing.queues.Queue[InstanceRun]
) -> None:
    settings = replace(
        config.load().materializer,
        group=f"bench-{uuid.uuid4()}",
        instance_id="bench-1",
        state_dir=state,
        topic_prefix=PREFIX,
        dead_letter_topic="bench.dead-letters",
    )
    codecs = {TABLE: KeyCodec(SCHEMA)}
    instance = Materializer(settings, bootstrap, codecs.get)
    stop = threading.Event()
    runner = threading.Thread(target=instance.run, args=(stop,))
    runner.start()
    # Timed like the baseline: from the first record applied, not from joining the group.
    t0 = None
    while not _all_active(instance, events):
        if t0 is None and any(p.position for p in instance.status().partitions):
            t0 = time.monotonic()
        time.sleep(0.02)
    assert t0 is not None
    rate = events / (time.monotonic() - t0)
    rss_mb = _rss_mb()
    stop.set()
    runner.join()

    restarted = Materializer(settings, bootstrap, codecs.get)
    stop = threading.Event()
    runner = threading.Thread(target=restarted.run, args=(stop,))
    t0 = time.monotonic()
    runner.start()
    while not _all_active(restarted, events):
        time.sleep(0.02)
    resume_s = time.monotonic() - t0
    restored = sum(p.restored for p in restarted.status().partitions)
    stop.set()
    runner.join()
    results.put(InstanceRun(rate, rss_mb, restored, resume_s))


def _all_active(instance: Materializer, events: int) -> bool:
    parts = instance.status().partitions
    return (
        len(parts) == PARTITIONS
        and sum(p.position for p in parts) >= events
        and all(p.state == PartitionState.ACTIVE for p in parts)
    )


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bootstrap = config.load().endpoints.kafka_bootstrap
    prefill(bootstrap, args.events)
    raw: list[float] = []
    runs: list[InstanceRun] = []
    for number in range(1, args.runs + 1):
        raw.append(raw_consume(bootstrap, args.events))
        state = Path(tempfile.mkdtemp(prefix="cdc-fabric-bench-", dir="/var/tmp"))
        try:
            runs.append(materialize(bootstrap, args.events, state))
        finally:
            shutil.rmtree(state, ignore_errors=True)
        run = runs[-1]
        print(
            f"run {number}: raw consume {raw[-1]:,.0f}/s, materializer {run.rebuild_per_s:,.0f}/s"
            f" ({run.rebuild_per_s / raw[-1]:.0%}), RSS {run.rss_mb:,.0f} MB, restart re-read "
            f"{run.resume_restored} records, ACTIVE in {run.resume_s:.1f}s"
        )
    raw_median = statistics.median(raw)
    rate = statistics.median(r.rebuild_per_s for r in runs)
    print(
        f"materializer, 1 process, full rebuild of {args.events:,} events: {rate:,.0f} events/s "
        f"(median of {args.runs}); baseline raw confluent-kafka consume {raw_median:,.0f} "
        f"events/s; ratio {rate / raw_median:.0%}; RSS with every row stored "
        f"{statistics.median(r.rss_mb for r in runs):,.0f} MB; restart with intact state "
        f"re-read {max(r.resume_restored for r in runs)} records, ACTIVE in "
        f"{statistics.median(r.resume_s for r in runs):.1f}s"
    )


if __name__ == "__main__":
    main()
