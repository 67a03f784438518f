"""The truncate markers of ``<prefix>.message``, read whole by every instance.

A TRUNCATE has no row key, so it cannot travel on a table topic; the connector publishes the
fabric's truncate markers on the message topic instead (docs/architecture.md). The topic is
small and compacted (one marker per table), so every instance reads all of it from the start and
applies each table's latest marker to the stores of that table it holds.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from fabric.core.events import TruncateMarker, decode
from fabric.errors import MalformedEventError
from fabric.materialize.applier import DeadLetterSink

log = logging.getLogger(__name__)

# The topic appears with the first TRUNCATE and may gain partitions: look for it this often.
_TOPIC_CHECK_EVERY_S = 1.0


class TruncateMarkers:
    def __init__(
        self, bootstrap: str, topic: str, group: str, dead_letters: DeadLetterSink
    ) -> None:
        self._topic = topic
        self._dead_letters = dead_letters
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "logger": log,
            }
        )
        self._partitions = 0
        self._next_check = 0.0
        self._latest: dict[str, int] = {}  # table → LSN of its latest marker

    def latest(self, table: str) -> int | None:
        """The LSN of the latest truncate of ``table`` seen so far."""
        return self._latest.get(table)

    def poll(self) -> list[TruncateMarker]:
        """The markers newer than any seen before for their table; never blocks."""
        self._assign()
        if not self._partitions:
            return []
        fresh = []
        for msg in self._consumer.consume(500, timeout=0):
            if msg.error() is not None:
                continue
            try:
                marker = decode(msg.value())
            except MalformedEventError as exc:
                self._dead_letters.send(msg, exc.reason)
                continue
            if not isinstance(marker, TruncateMarker):
                continue
            if marker.lsn <= self._latest.get(marker.table, -1):
                continue
            self._latest[marker.table] = marker.lsn
            fresh.append(marker)
        return fresh

    def close(self) -> None:
        self._consumer.close()

    def _assign(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _TOPIC_CHECK_EVERY_S
        try:
            metadata = self._consumer.list_topics(self._topic, timeout=0.5)
        except KafkaException:
            return
        found = metadata.topics.get(self._topic)
        if found is None or found.error is not None:
            return
        count = len(found.partitions)
        if count != self._partitions:
            self._consumer.assign(
                [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in range(count)]
            )
            self._partitions = count
