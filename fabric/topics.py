"""Reading the CDC topics as they are: the records Connect wrote, decoded, with their placement.

The Kafka boundary for tools that watch the stream (``fabric events tail``, the demo, tests):
``KafkaException`` is translated here. It reads without a consumer group's committed offsets, so
watching never disturbs the materializers' group.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from fabric.core.events import ChangeEvent, TruncateMarker, decode
from fabric.errors import KafkaUnavailableError, MalformedEventError
from fabric.kafka_errors import check_consumer_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    event: ChangeEvent | TruncateMarker | None  # None: a tombstone, or a malformed value
    error: str | None  # why the value could not be decoded


def tail(
    bootstrap: str,
    topic_prefix: str,
    *,
    from_beginning: bool,
    idle_timeout_s: float | None = None,
) -> Iterator[TopicRecord]:
    """Yield records of every topic named ``<topic_prefix>.*``, as they arrive.

    Topics created later are picked up. Stops after ``idle_timeout_s`` without a record (never,
    when None); the caller may also simply stop iterating.
    """
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"cdc-fabric-tail-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "topic.metadata.refresh.interval.ms": 2000,
        "logger": log,
    }
    consumer = Consumer(settings)
    # Every rebalance (a matching topic appearing is one) hands back all partitions; without
    # committed offsets they would restart at auto.offset.reset and repeat records.
    positions: dict[tuple[str, int], int] = {}

    def resume(c: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            known = positions.get((tp.topic, tp.partition))
            if known is not None:
                tp.offset = known
        c.assign(partitions)

    try:
        _check_reachable(consumer, bootstrap)
        consumer.subscribe([f"^{_regex_escape(topic_prefix)}\\..*"], on_assign=resume)
        last = time.monotonic()
        while idle_timeout_s is None or time.monotonic() - last < idle_timeout_s:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                check_consumer_error(error)
                continue
            last = time.monotonic()
            record = _record(msg)
            positions[(record.topic, record.partition)] = record.offset + 1
            yield record
    finally:
        consumer.close()


def _record(msg: Message) -> TopicRecord:
    value = msg.value()
    event: ChangeEvent | TruncateMarker | None = None
    error = None
    try:
        event = decode(value)
    except MalformedEventError as exc:
        error = exc.reason
    return TopicRecord(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=value,
        event=event,
        error=error,
    )


def _check_reachable(consumer: Consumer, bootstrap: str) -> None:
    try:
        consumer.list_topics(timeout=10)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"Kafka at {bootstrap} does not answer ({exc.args[0]}); is the stack up "
            "(`fabric stack status`), or is FABRIC_KAFKA_BOOTSTRAP right?"
        ) from exc


def _regex_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in ".^$*+?()[]{}|\\" else c for c in text)
