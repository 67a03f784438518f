"""How far the database is known to be applied: Connect's committed source offsets, followed.

One :class:`SourceProgress` per instance reads Connect's offsets topic (a compacted topic where
the worker writes every connector's committed source offset, about once a second), keeps the
offsets of the connector that writes the fabric's topic prefix, and after each new one reads the
end offsets of every table partition: a :class:`~fabric.core.watermarks.Checkpoint`. With the
partition's own last streamed change, that tells what a partition reflects
(:func:`~fabric.core.watermarks.partition_progress`), even while its table is idle: the
connector's heartbeat keeps the committed offset moving (docs/consistency.md).

Each new checkpoint notifies the materializer's ``progress`` condition, which the materializer
also notifies after every applied batch: lookups waiting on a bound wake on either.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from fabric.core.watermarks import (
    Checkpoint,
    PartitionProgress,
    SourceOffset,
    TopicPartitionKey,
    Watermarks,
    parse_source_offset,
    partition_progress,
)
from fabric.kafka_errors import check_consumer_error
from fabric.materialize.instance import Materializer
from fabric.materialize.partition import PartitionPosition

log = logging.getLogger(__name__)

_RETRY_S = 1.0
_REQUEST_TIMEOUT_S = 5.0


class SourceProgress:
    """Follows the committed source offsets on a thread of its own, from :meth:`start` until
    :meth:`close`; :meth:`progress` is safe to call from any thread."""

    def __init__(self, materializer: Materializer) -> None:
        self._materializer = materializer
        settings = materializer.settings
        self._topic = settings.source_offsets_topic
        self._server = settings.topic_prefix  # Debezium keys its offsets by topic.prefix
        self._watermarks = Watermarks()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-progress", daemon=True)
        self._admin = AdminClient({"bootstrap.servers": materializer.bootstrap, "logger": log})  # type: ignore[dict-item]
        self._consumer = Consumer(
            {
                "bootstrap.servers": materializer.bootstrap,
                "group.id": f"{settings.group}.progress.{settings.instance_id}",
                "enable.auto.commit": False,
                "logger": log,
            }
        )
        self._pending: SourceOffset | None = None

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def offsets_topic(self) -> str:
        return self._topic

    @property
    def latest(self) -> Checkpoint | None:
        """The newest checkpoint, None before the first committed offset is seen."""
        with self._lock:
            return self._watermarks.latest

    def progress(
        self, topic: str, partition: int
    ) -> tuple[PartitionPosition, PartitionProgress] | None:
        """An assigned partition's position and what it reflects, else None."""
        streamed = self._materializer.streamed(topic, partition)
        if streamed is None:
            return None
        position, lsn, commit_ts_ms = streamed
        with self._lock:
            known = partition_progress(
                self._watermarks, (topic, partition), position.position, lsn, commit_ts_ms
            )
        return position, known

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and not self._assign():
                self._stop.wait(_RETRY_S)
            while not self._stop.is_set():
                self._step()
        except Exception:
            log.exception("source progress stopped: lookups with a bound will time out")
        finally:
            with contextlib.suppress(RuntimeError):
                self._consumer.close()

    def _assign(self) -> bool:
        """Read every partition of the offsets topic from its start; False while it is missing."""
        try:
            metadata = self._admin.list_topics(self._topic, timeout=_REQUEST_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("offsets topic not readable topic=%s error=%s", self._topic, exc)
            return False
        found = metadata.topics.get(self._topic)
        if found is None or found.error is not None or not found.partitions:
            log.warning(
                "offsets topic missing topic=%s (set FABRIC_CONNECT_OFFSETS_TOPIC to the"
                " Connect worker's offset.storage.topic)",
                self._topic,
            )
            return False
        self._consumer.assign(
            [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in found.partitions]
        )
        log.info("following source offsets topic=%s server=%s", self._topic, self._server)
        return True

    def _step(self) -> None:
        newest = self._pending
        for msg in self._consumer.consume(1000, timeout=0.2):
            error = msg.error()
            if error is not None:
                check_consumer_error(error)
                continue
            offset = self._offset_of(msg)
            if offset is not None and (newest is None or offset.lsn > newest.lsn):
                newest = offset
        if newest is None:
            return
        latest = self.latest
        if latest is not None and newest.lsn <= latest.lsn:
            self._pending = None
            return
        ends = self._end_offsets()
        if ends is None:
            self._pending = newest  # retried with the next step; still sound then
            return
        self._pending = None
        with self._lock:
            self._watermarks.record(Checkpoint(newest.lsn, newest.commit_ts_ms, ends))
        with self._materializer.progress:
            self._materializer.progress.notify_all()

    def _offset_of(self, msg: Message) -> SourceOffset | None:
        """The offset of the fabric's connector in a record of the offsets topic, else None.
        Connect keys it ``["<connector>", {"server": "<topic.prefix>"}]``."""
        try:
            key = orjson.loads(msg.key() or b"null")
        except orjson.JSONDecodeError:
            return None
        if not (isinstance(key, list) and len(key) == 2 and isinstance(key[1], dict)):
            return None
        if key[1].get("server") != self._server:
            return None
        return parse_source_offset(msg.value())

    def _end_offsets(self) -> dict[TopicPartitionKey, int] | None:
        """The end offset of every partition of every table topic, None if Kafka did not say."""
        materializer = self._materializer
        wanted = {}
        for topic in materializer.table_topics():
            for partition in range(materializer.partition_count(topic) or 0):
                wanted[TopicPartition(topic, partition)] = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        if not wanted:
            return {}
        started = time.monotonic()
        try:
            futures = self._admin.list_offsets(wanted, request_timeout=_REQUEST_TIMEOUT_S)
            ends = {
                (tp.topic, tp.partition): future.result().offset for tp, future in futures.items()
            }
        except KafkaException as exc:
            log.warning("end offsets not read error=%s", exc)
            return None
        log.debug(
            "end offsets read partitions=%d ms=%.1f", len(ends), (time.monotonic() - started) * 1e3
        )
        return ends
