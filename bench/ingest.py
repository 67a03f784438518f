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
import resource
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fabric import config
from fabric.core.keys import KeyCodec
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.materialize.instance import Materializer, PartitionState

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
            for tp in [
                _tp(TOPIC, p) for p in range(len(existing[TOPIC].partitions))
            ]
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


def _tp(topic: str, partition: int) -> Any:
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, partition)


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


def materialize(bootstrap: str, events: int, state: Path) -> float:
    base = config.load().materializer
    settings = replace(
        base,
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
    while True:
        statuses = instance.status().partitions
        done = sum(s.position for s in statuses)
        if t0 is None and done:
            t0 = time.monotonic()
        if (
            len(statuses) == PARTITIONS
            and done >= events
            and all(s.state == PartitionState.ACTIVE for s in statuses)
        ):
            break
        time.sleep(0.02)
    assert t0 is not None
    elapsed = time.monotonic() - t0
    stop.set()
    runner.join()
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bootstrap = config.load().endpoints.kafka_bootstrap
    prefill(bootstrap, args.events)
    raw, fabric = [], []
    for run in range(args.runs):
        raw.append(raw_consume(bootstrap, args.events))
        state = Path(tempfile.mkdtemp(prefix="cdc-fabric-bench-", dir="/var/tmp"))
        try:
            fabric.append(materialize(bootstrap, args.events, state))
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        finally:
            shutil.rmtree(state, ignore_errors=True)
        print(f"run {run + 1}: raw consume {raw[-1]:,.0f}/s, materializer {fabric[-1]:,.0f}/s")
    raw_median, fabric_median = statistics.median(raw), statistics.median(fabric)
    print(
        f"materializer (full rebuild, 1 process): {fabric_median:,.0f} events/s "
        f"(median of {args.runs}); baseline raw consume {raw_median:,.0f} events/s; "
        f"ratio {fabric_median / raw_median:.0%}; peak RSS {rss_mb:,.0f} MB with "
        f"{args.events:,} rows stored"
    )


if __name__ == "__main__":
    main()
