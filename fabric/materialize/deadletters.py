"""The dead-letter topic: records the fabric cannot apply, kept with the reason and their origin.

A bad record never stops a partition: it is copied here, unchanged, with headers saying why and
where it came from, and the partition moves on. The copy is flushed before the partition's store
commits past the record, so a crash never loses a record both from the store and from here.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from fabric.errors import FabricError, KafkaUnavailableError

log = logging.getLogger(__name__)

REASON = "fabric.dlq.reason"
SOURCE_TOPIC = "fabric.dlq.topic"
SOURCE_PARTITION = "fabric.dlq.partition"
SOURCE_OFFSET = "fabric.dlq.offset"
INSTANCE = "fabric.dlq.instance"


class DeadLetters:
    def __init__(self, bootstrap: str, topic: str, instance_id: str) -> None:
        self.topic = topic
        self._instance = instance_id.encode()
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "logger": log,
        }
        self._producer = Producer(settings)
        self._pending = 0
        _ensure_topic(bootstrap, topic)

    def send(self, msg: Message, reason: str) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (REASON, reason.encode()),
            (SOURCE_TOPIC, (msg.topic() or "").encode()),
            (SOURCE_PARTITION, str(msg.partition()).encode()),
            (SOURCE_OFFSET, str(msg.offset()).encode()),
            (INSTANCE, self._instance),
        ]
        log.warning(
            "dead letter topic=%s partition=%s offset=%s reason=%s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            reason,
        )
        self._producer.produce(self.topic, value=msg.value(), key=msg.key(), headers=headers)
        self._pending += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every record sent so far is acknowledged by the broker."""
        if not self._pending:
            return
        left = self._producer.flush(timeout_s)
        if left:
            raise FabricError(
                f"{left} dead letters not acknowledged by Kafka within {timeout_s:.0f}s; "
                "the partition will retry them from its stored offset"
            )
        self._pending = 0


def _ensure_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": log})  # type: ignore[dict-item]
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    try:
        futures[topic].result(timeout=15)
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise KafkaUnavailableError(
                f"cannot create the dead-letter topic {topic}: {exc}; check that Kafka is up "
                "(fabric stack status) and that this client may create topics"
            ) from exc
