"""A materializer instance: one member of the fabric's consumer group and its partition stores.

Kafka is the distributed engine: every instance subscribes to all table topics of the prefix with
the same group id, and the group coordinator spreads the partitions (cooperative-sticky, so a
rebalance moves only the partitions that must move). Static membership (``group.instance.id``)
gives a restarting instance its partitions back without a group-wide shuffle.

Each assigned partition gets its own store. The store's applied offset is the truth: on
assignment the instance seeks to it + 1 (or to the start of the compacted topic when the store is
new or its offset is out of the topic's range), and the partition is RESTORING until it has caught
up with the end offset seen at assignment, then ACTIVE. Kafka's committed offsets are written too,
for monitoring only.

Standby replicas (:mod:`fabric.core.placement`): besides its own partitions, an instance can keep
stores of partitions other instances own, applied from the same topics by a second consumer
assigned by hand (outside the group). Once caught up they serve lookups like an owner's store;
when the group assigns such a partition here, the store already open is promoted, current, with
no restore.

Truncate markers (:mod:`fabric.materialize.markers`) apply to every store of their table.
Stopping with a handover keeps the partitions applied and readable, outside the group, until
their new owners are ACTIVE (docs/routing.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from fabric.config import MaterializerSettings
from fabric.errors import ConsumerFailedError, StoreError, StoreLockedError
from fabric.kafka_errors import check_consumer_error
from fabric.materialize.applier import CodecLookup, PartitionApplier
from fabric.materialize.deadletters import DeadLetters
from fabric.materialize.markers import TruncateMarkers
from fabric.materialize.membership import member_client_id
from fabric.materialize.partition import (
    AssignedPartition,
    PartitionPosition,
    PartitionState,
    TopicPartitionKey,
    partition_status,
)
from fabric.materialize.status import InstanceStatus, write_status
from fabric.state.options import MiB, StoreOptions
from fabric.state.store import PartitionStore

log = logging.getLogger(__name__)


_PROGRESS_EVERY_S = 5.0
_STATS_EVERY_S = 1.0
_STATUS_FILE_EVERY_S = 2.0
_LOCK_WAIT_S = 60.0
# consume() returns when it has a full batch or when this wait is over: under a light load every
# change waits this long before it is applied, so it is short (a busy topic fills batches).
_CONSUME_WAIT_S = 0.01


def store_options_of(settings: MaterializerSettings) -> StoreOptions:
    """The stores' tuning with the cache sizes an instance is configured with."""
    return StoreOptions(
        block_cache_bytes=settings.block_cache_mb * MiB,
        row_cache_bytes=settings.row_cache_mb * MiB,
        record_cache_bytes=settings.record_cache_mb * MiB,
    )


class Materializer:
    """Runs one instance of the fabric's consumer group: :meth:`run` on a thread of its own;
    :meth:`status` and :meth:`store` are safe to call from any other thread."""

    def __init__(
        self,
        settings: MaterializerSettings,
        bootstrap: str,
        codecs: CodecLookup,
        store_options: StoreOptions | None = None,
    ) -> None:
        self.settings = settings
        self._bootstrap = bootstrap
        self._codecs = codecs
        self._store_options = store_options or store_options_of(settings)
        self._assigned: dict[TopicPartitionKey, AssignedPartition] = {}
        # Standby replicas: applied by _standby_consumer, which is assigned by hand.
        self._standbys: dict[TopicPartitionKey, AssignedPartition] = {}
        self._standby_consumer: Consumer | None = None
        self._standby_offsets: Consumer | None = None  # answers _open_partition's questions
        self._wanted_standbys: frozenset[TopicPartitionKey] = frozenset()  # set by other threads
        # The wanted set the standbys last matched, None after an assignment change: the loop
        # looks at its standbys again only when this is not the wanted set itself.
        self._standbys_synced: frozenset[TopicPartitionKey] | None = None
        # Partitions the group moved away, kept as standbys until their new owner serves them
        # (release_kept), with when they were revoked: lookups find a current copy here while
        # the new owner restores.
        self._kept: dict[TopicPartitionKey, float] = {}
        # Guards _assigned, _standbys and _kept for readers elsewhere.
        self._lock = threading.Lock()
        # Notified after every applied batch, for lookups waiting on a PositionBound.
        self.progress = threading.Condition()
        self._partition_counts: dict[str, int] = {}
        self._rebalance_listeners: list[Callable[[], None]] = []
        # Metadata lookups from reader threads, apart from the consumer the loop owns.
        self._metadata = AdminClient({"bootstrap.servers": bootstrap, "logger": log})  # type: ignore[dict-item]
        self._dead_letters = DeadLetters(
            bootstrap, settings.dead_letter_topic, settings.instance_id
        )
        self._consumer = Consumer(self._consumer_settings())
        self._markers = TruncateMarkers(
            bootstrap,
            settings.marker_topic,
            f"{settings.group}.markers.{settings.instance_id}",
            self._dead_letters,
        )
        self._last_stats = 0.0
        self._last_status_file = 0.0
        self._closed = False
        self._handing_over = False
        self.member_id = ""  # this consumer's id in the group, once it has joined
        self._commits_enabled = True
        self._to_let_go: list[tuple[str, int]] = []  # appended by other threads, popped here
        self._rejoin_reason: str | None = None  # set by other threads, acted on here

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, release: threading.Event | None = None) -> None:
        """Consume and apply until ``stop`` is set, then leave the group.

        With ``release``, leaving starts a handover: the instance keeps applying the partitions
        it held (assigned by hand, outside the group) and keeps them readable while the group
        gives them to other instances, until ``release`` is set or each partition is let go
        with :meth:`let_go`. Without it, the stores close at once.
        """
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._subscribe()
        log.info(
            "materializer started group=%s instance=%s topics=%s state=%s",
            self.settings.group,
            self.settings.instance_id,
            self.settings.table_topic_regex,
            self.settings.state_dir,
        )
        try:
            while not stop.is_set():
                try:
                    self._loop_once()
                except ConsumerFailedError as exc:
                    self._rejoin(exc)
            if release is not None:
                self._hand_over(release)
        finally:
            self.close()

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            [self.settings.table_topic_regex],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _rejoin(self, failure: ConsumerFailedError) -> None:
        """Replace a consumer librdkafka gave up on. Its partitions are lost (the stores are
        consistent with their offsets, and close); a new consumer joins under the same static
        id, and the group gives them back, or to others."""
        log.error(
            "consumer failed, rejoining the group instance=%s error=%s",
            self.settings.instance_id,
            failure,
        )
        with self._lock:
            held = [TopicPartition(topic, partition) for topic, partition in self._assigned]
        self._close(held, "lost")
        self._notify_rebalance()
        with contextlib.suppress(KafkaException, RuntimeError):
            self._consumer.close()
        self._consumer = Consumer(self._consumer_settings())
        self._subscribe()

    def request_rejoin(self, reason: str) -> None:
        """Replace the group consumer as if it had failed: for a consumer the group no longer
        counts as a member that does not notice (safe from any thread)."""
        self._rejoin_reason = reason

    def let_go(self, topic: str, partition: int) -> None:
        """During a handover: stop applying and serving a partition (its new owner is ACTIVE)."""
        self._to_let_go.append((topic, partition))

    def held_partitions(self) -> list[tuple[str, int]]:
        with self._lock:
            return sorted(self._assigned)

    def held_standbys(self) -> list[tuple[str, int]]:
        with self._lock:
            return sorted(self._standbys)

    def kept_for_new_owners(self) -> dict[TopicPartitionKey, float]:
        """Revoked partitions kept for their new owners, with when they were revoked."""
        with self._lock:
            return dict(self._kept)

    def release_kept(self, topic: str, partition: int) -> None:
        """A revoked partition's new owner serves it: stop keeping it here (unless it is wanted
        as a standby replica); safe from any thread, applied by the loop."""
        with self._lock:
            self._kept.pop((topic, partition), None)
        self._standbys_synced = None

    def _loop_once(self) -> None:
        reason, self._rejoin_reason = self._rejoin_reason, None
        if reason is not None and not self._handing_over:
            raise ConsumerFailedError(reason)
        self._apply_markers()
        self._sync_standbys()
        self._step()
        self._refresh_stats()

    def _hand_over(self, release: threading.Event) -> None:
        """Leave the group, then go on applying the held partitions by hand until released."""
        held = [TopicPartition(t, p, part.position) for (t, p), part in self._assigned.items()]
        self._handing_over = True
        self.want_standbys(())  # leaving: its standbys are no one's failover any more
        with self._lock:
            self._kept.clear()
        self._sync_standbys()
        # A static member never sends LeaveGroup: the coordinator reassigns its partitions once
        # its session times out, and the stores must stay current and readable until then.
        self._consumer.close()
        self._consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"{self.settings.group}.handover.{self.settings.instance_id}",
                "enable.auto.commit": False,
                "queued.min.messages": 100_000,
                "logger": log,
            }
        )
        self._consumer.assign(held)
        self._commits_enabled = False
        log.info("handover started instance=%s partitions=%d", self.settings.instance_id, len(held))
        while not release.is_set() and self._assigned:
            while self._to_let_go:
                topic, partition = self._to_let_go.pop()
                tp = TopicPartition(topic, partition)
                with contextlib.suppress(KafkaException):
                    self._consumer.pause([tp])  # assigned by hand: pausing is how it stops
                self._close([tp], "handed over")
            self._loop_once()
        log.info("handover finished instance=%s", self.settings.instance_id)

    def close(self) -> None:
        """Release the partitions (closing every store) and the consumers; idempotent."""
        if self._closed:
            return
        self._closed = True
        for consumer in (self._consumer, self._standby_consumer, self._standby_offsets):
            if consumer is not None:
                with contextlib.suppress(RuntimeError):  # already closed
                    consumer.close()
        with self._lock:
            for part in [*self._assigned.values(), *self._standbys.values()]:
                part.applier.store.close()
            self._assigned.clear()
            self._standbys.clear()
        self._markers.close()
        self._write_status_file()
        log.info("materializer stopped instance=%s", self.settings.instance_id)

    # -- reading -----------------------------------------------------------------------------

    def status(self) -> InstanceStatus:
        now = time.monotonic()
        with self._lock:
            parts = sorted(self._assigned.items())
            partitions = tuple(partition_status(key, part, now) for key, part in parts)
            copies = sorted(self._standbys.items())
            standbys = tuple(partition_status(key, part, now) for key, part in copies)
        return InstanceStatus(
            group=self.settings.group,
            instance_id=self.settings.instance_id,
            pid=os.getpid(),
            state_dir=str(self.settings.state_dir),
            updated_at=time.time(),
            partitions=partitions,
            standbys=standbys,
        )

    def serving(
        self, topic: str, partition: int
    ) -> tuple[PartitionStore, PartitionPosition] | None:
        """The store and position of an assigned partition, or a standby replica, that is ACTIVE,
        else None: what a lookup reads, taken under one lock."""
        served = self.serving_at(topic, partition)
        if served is None:
            return None
        store, position, end_offset = served
        return store, PartitionPosition(PartitionState.ACTIVE, position, end_offset)

    def serving_at(self, topic: str, partition: int) -> tuple[PartitionStore, int, int] | None:
        """:meth:`serving` with the position as its two numbers (the next offset to apply, the
        end offset as last seen), as the native ``Get`` path reads it."""
        with self._lock:
            part = self._assigned.get((topic, partition)) or self._standbys.get((topic, partition))
            if part is None or part.state is not PartitionState.ACTIVE:
                return None
            return part.applier.store, part.position, part.end_offset

    def partition_position(self, topic: str, partition: int) -> PartitionPosition | None:
        """State, next offset to apply and end offset of an assigned partition, else None."""
        with self._lock:
            part = self._assigned.get((topic, partition))
            if part is None:
                return None
            return PartitionPosition(part.state, part.position, part.end_offset)

    def streamed(
        self, topic: str, partition: int
    ) -> tuple[PartitionPosition, int, int | None] | None:
        """An assigned partition's (or a standby replica's) position with the source LSN and
        commit time of the last streamed change it applied (0 and None before any), else None."""
        with self._lock:
            part = self._assigned.get((topic, partition)) or self._standbys.get((topic, partition))
            if part is None:
                return None
            applier = part.applier
            position = PartitionPosition(part.state, part.position, part.end_offset)
            return position, applier.streamed_lsn, applier.streamed_commit_ts_ms

    def all_active(self) -> bool:
        """True once the instance holds partitions and every one of them is ACTIVE."""
        with self._lock:
            parts = list(self._assigned.values())
        return bool(parts) and all(p.state is PartitionState.ACTIVE for p in parts)

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    def topic_of(self, table: str) -> str:
        return f"{self.settings.topic_prefix}.{table}"

    def table_of(self, topic: str) -> str:
        return topic.removeprefix(self.settings.topic_prefix + ".")

    def partition_count(self, topic: str) -> int | None:
        """The partition count of a table topic, None when Kafka has no such topic."""
        count = self._partition_counts.get(topic)
        if count is not None:
            return count
        try:
            metadata = self._metadata.list_topics(topic, timeout=5)
        except KafkaException:
            return None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        self._partition_counts[topic] = len(found.partitions)
        return len(found.partitions)

    def table_topics(self) -> list[str]:
        """Every table topic Kafka has under the prefix."""
        try:
            metadata = self._metadata.list_topics(timeout=5)
        except KafkaException:
            return sorted(self._partition_counts)
        pattern = re.compile(self.settings.table_topic_regex)
        return sorted(t for t in metadata.topics if pattern.match(t))

    def add_rebalance_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the consumer thread) after every assignment change."""
        self._rebalance_listeners.append(listener)

    # -- the loop ------------------------------------------------------------------------------

    def _step(self) -> None:
        commits = self._apply(self._consumer, self._assigned, _CONSUME_WAIT_S)
        if commits and self._commits_enabled:
            with contextlib.suppress(KafkaException):  # monitoring only; the store has the truth
                self._consumer.commit(offsets=commits, asynchronous=True)
        if self._standby_consumer is not None and self._standbys:
            try:
                self._apply(self._standby_consumer, self._standbys, 0)
            except ConsumerFailedError as exc:
                self._reset_standbys(exc)

    def _apply(
        self,
        consumer: Consumer,
        parts: dict[TopicPartitionKey, AssignedPartition],
        wait_s: float,
    ) -> list[TopicPartition]:
        """Apply what ``consumer`` has for ``parts``; return the new position of each partition
        that moved."""
        messages = consumer.consume(self.settings.batch_size, timeout=wait_s)
        if not messages:
            return []
        batches: dict[TopicPartitionKey, list[Message]] = {}
        for msg in messages:
            error = msg.error()
            if error is not None:
                check_consumer_error(error)
                continue
            batches.setdefault((msg.topic() or "", msg.partition() or 0), []).append(msg)
        commits = []
        for key, batch in batches.items():
            part = parts.get(key)
            if part is None:  # revoked (or promoted) while the batch was in flight
                continue
            # A restoring partition replays old commits: they say nothing of freshness.
            last = part.applier.apply(batch, fresh=part.state is PartitionState.ACTIVE)
            part.position = last + 1
            part.end_offset = max(part.end_offset, part.position)
            self._advance_state(key, part)
            commits.append(TopicPartition(key[0], key[1], part.position))
        if commits:
            with self.progress:
                self.progress.notify_all()
        return commits

    def _advance_state(self, key: TopicPartitionKey, part: AssignedPartition) -> None:
        if part.state is not PartitionState.RESTORING:
            return
        now = time.monotonic()
        if part.position >= part.restore_target:
            part.state = PartitionState.ACTIVE
            log.info(
                "partition active topic=%s partition=%d restored=%d seconds=%.1f",
                key[0],
                key[1],
                part.position - part.restore_start,
                now - part.assigned_at,
            )
        elif now - part.last_progress_log >= _PROGRESS_EVERY_S:
            part.last_progress_log = now
            done = part.position - part.restore_start
            eta = part.restore_eta_s(now)
            log.info(
                "restoring topic=%s partition=%d done=%d left=%d rate=%.0f/s eta_s=%s",
                key[0],
                key[1],
                done,
                part.restore_target - part.position,
                done / max(now - part.assigned_at, 1e-6),
                "?" if eta is None else f"{eta:.0f}",
            )

    def _refresh_stats(self) -> None:
        now = time.monotonic()
        if now - self._last_stats < _STATS_EVERY_S:
            return
        self._last_stats = now
        with self._lock:
            parts = [(key, part, self._consumer) for key, part in self._assigned.items()]
            if self._standby_consumer is not None:
                consumer = self._standby_consumer
                parts += [(key, part, consumer) for key, part in self._standbys.items()]
        for (topic, partition), part, consumer in parts:
            counters = part.applier.counters
            seen = counters.applied + counters.skipped + counters.dead_letters
            since, before = part._rate_mark
            if since:
                part.events_per_s = (seen - before) / (now - since)
            part._rate_mark = (now, seen)
            with contextlib.suppress(KafkaException):
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
                if high >= 0:
                    part.end_offset = high
        if now - self._last_status_file >= _STATUS_FILE_EVERY_S:
            self._last_status_file = now
            self._write_status_file()

    def _write_status_file(self) -> None:
        try:
            write_status(self.settings.state_dir, self.status())
        except OSError as exc:
            log.warning(
                "cannot write the status file dir=%s error=%s", self.settings.state_dir, exc
            )

    # -- rebalance callbacks -------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.member_id = consumer.memberid() or self.member_id
        for tp in partitions:
            tp.offset = self._open(consumer, tp.topic, tp.partition)
        consumer.incremental_assign(partitions)
        self._notify_rebalance()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_unassign(partitions)
        if self._handing_over:
            return  # closing the group consumer: the stores stay open for the handover
        if self.settings.advertised_endpoint is not None and not self._closed:
            self._keep_for_new_owners(partitions)
        else:  # serves no lookups, or closing: nothing to keep a copy for
            self._close(partitions, "revoked")
        self._notify_rebalance()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Every batch was committed with its offset: the stores are consistent as they are.
        consumer.incremental_unassign(partitions)
        if self._handing_over:
            return
        self._close(partitions, "lost")
        self._notify_rebalance()

    def _notify_rebalance(self) -> None:
        """After every assignment change: the standbys are looked at again, listeners told."""
        self._standbys_synced = None
        for listener in self._rebalance_listeners:
            try:
                listener()
            except Exception:  # a listener must never break the consumer's rebalance
                log.exception("rebalance listener failed")

    def _open(self, consumer: Consumer, topic: str, partition: int) -> int:
        """Open the partition's store, or promote its standby; return the offset to resume from."""
        promoted = self._promote_standby(topic, partition)
        if promoted is not None:
            return promoted
        part, resume = self._open_partition(consumer, topic, partition, wait_for_lock=True)
        with self._lock:
            self._assigned[(topic, partition)] = part
        log.info(
            "partition assigned topic=%s partition=%d resume=%d end=%d state=%s",
            topic,
            partition,
            part.position,
            part.end_offset,
            part.state.value,
        )
        return resume

    def _open_partition(
        self, consumer: Consumer, topic: str, partition: int, *, wait_for_lock: bool
    ) -> tuple[AssignedPartition, int]:
        """Open a partition's store and its applier; return them with the offset to resume from
        (``consumer`` answers the topic's offsets and partition count)."""
        path = self.settings.state_dir / topic / str(partition)
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10, cached=False
        )
        store = (
            self._open_store(path)
            if wait_for_lock
            else PartitionStore.open(path, self._store_options)
        )
        applied = store.applied_offset()
        if applied is not None and not low - 1 <= applied < high:
            log.warning(
                "stored offset out of the topic's range, rebuilding topic=%s partition=%d "
                "stored=%d low=%d high=%d",
                topic,
                partition,
                applied,
                low,
                high,
            )
            store.close()
            PartitionStore.destroy(path)
            store = PartitionStore.open(path, self._store_options)
            applied = None
        elif applied is None:
            log.info(
                "no local store, building from the topic topic=%s partition=%d", topic, partition
            )
        start = applied + 1 if applied is not None else low
        applier = PartitionApplier(
            topic=topic,
            partition=partition,
            num_partitions=self._partition_count(consumer, topic),
            table=self.table_of(topic),
            store=store,
            dead_letters=self._dead_letters,
            codecs=self._codecs,
        )
        state = PartitionState.RESTORING if start < high else PartitionState.ACTIVE
        part = AssignedPartition(applier, state, start, start, high, high)
        latest = self._markers.latest(part.table)
        if latest is not None:
            part.apply_truncate(latest)
        return part, start if applied is not None else OFFSET_BEGINNING

    def _open_store(self, path: Path) -> PartitionStore:
        """Open a store, waiting while a previous process of this instance still holds it (it is
        handing its partitions over and lets go once it sees this instance back)."""
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                return PartitionStore.open(path, self._store_options)
            except StoreLockedError:
                if time.monotonic() > deadline:
                    raise
                log.info("store locked by a stopping instance, waiting path=%s", path)
                time.sleep(0.5)

    def _keep_for_new_owners(self, partitions: list[TopicPartition]) -> None:
        """Revoked partitions that are ACTIVE go on being applied, as standbys, until their new
        owners serve them: a new owner restores for seconds, and lookups are answered from here
        meanwhile. The others are closed."""
        now = time.monotonic()
        closing = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            with self._lock:  # one step: a lookup finds the store in one place or the other
                part = self._assigned.get(key)
                if part is not None and part.state is PartitionState.ACTIVE:
                    del self._assigned[key]
                    self._standbys[key] = part
                    self._kept[key] = now
                else:
                    part = None
            if part is None:
                closing.append(tp)
                continue
            standby_consumer, _ = self._standby_consumers()
            standby_consumer.incremental_assign([TopicPartition(*key, part.position)])
            log.info(
                "partition revoked, kept until its new owner serves it topic=%s partition=%d",
                *key,
            )
        self._close(closing, "revoked")

    def _close(self, partitions: list[TopicPartition], why: str) -> None:
        for tp in partitions:
            with self._lock:
                part = self._assigned.pop((tp.topic, tp.partition), None)
            if part is not None:
                part.applier.store.close()
                log.info("partition %s topic=%s partition=%d", why, tp.topic, tp.partition)

    def _apply_markers(self) -> None:
        for marker in self._markers.poll():
            with self._lock:
                every = [*self._assigned.values(), *self._standbys.values()]
            parts = [p for p in every if p.table == marker.table]
            for part in parts:
                part.apply_truncate(marker.lsn)

    # -- standby replicas ----------------------------------------------------------------------

    def want_standbys(self, partitions: Collection[TopicPartitionKey]) -> None:
        """Keep standby replicas of exactly these partitions (the ones this instance owns
        aside); safe from any thread, applied by the loop. A leaving instance keeps none."""
        wanted = frozenset() if self._handing_over else frozenset(partitions)
        if wanted != self._wanted_standbys:  # the same object while nothing changes
            self._wanted_standbys = wanted

    def _sync_standbys(self) -> None:
        wanted = self._wanted_standbys
        if wanted is self._standbys_synced:
            return
        with self._lock:
            held = set(self._standbys)
            owned = set(self._assigned)
            kept = set(self._kept)
        missing = sorted(wanted - held - owned)
        for key in sorted(held - wanted - kept):
            self._drop_standby(key)
        # One store per turn of the loop: the owned partitions are applied between two opens.
        for topic, partition in missing[:1]:
            self._open_standby(topic, partition)
        if not missing:
            self._standbys_synced = wanted
            if not self.held_standbys() and self._standby_consumer is not None:
                # Made for standbys or kept partitions, none of which is left: made again when
                # one is wanted.
                self._close_standby_consumers()
                log.info("standby consumers closed: no standby replica or kept partition left")

    def _standby_consumers(self) -> tuple[Consumer, Consumer]:
        """The consumer applying the standbys, and one answering offsets; made on first use."""
        if self._standby_consumer is None or self._standby_offsets is None:
            settings = {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"{self.settings.group}.standby.{self.settings.instance_id}",
                "enable.auto.commit": False,
                "queued.min.messages": 100_000,
                "logger": log,
            }
            self._standby_consumer = Consumer(settings)
            # Never assigned: a consumer that is fetching answers an offsets request only once
            # its pending fetch returns (up to fetch.wait.max.ms, 500 ms), and the loop waits.
            self._standby_offsets = Consumer(settings)
        return self._standby_consumer, self._standby_offsets

    def _open_standby(self, topic: str, partition: int) -> None:
        consumer, offsets = self._standby_consumers()
        try:
            part, resume = self._open_partition(offsets, topic, partition, wait_for_lock=False)
        except StoreLockedError:
            return  # a stopping process of this instance still holds it: tried again next loop
        except (StoreError, KafkaException) as exc:
            log.warning(
                "cannot open a standby replica topic=%s partition=%d error=%s",
                topic,
                partition,
                exc,
            )
            return
        with self._lock:
            self._standbys[(topic, partition)] = part
        consumer.incremental_assign([TopicPartition(topic, partition, resume)])
        log.info(
            "standby replica opened topic=%s partition=%d resume=%d end=%d state=%s",
            topic,
            partition,
            part.position,
            part.end_offset,
            part.state.value,
        )

    def _drop_standby(self, key: TopicPartitionKey) -> None:
        with self._lock:
            part = self._standbys.pop(key, None)
            self._kept.pop(key, None)
        if part is not None:
            self._unassign_standby(key)
            part.applier.store.close()
            log.info("standby replica closed topic=%s partition=%d", key[0], key[1])

    def _promote_standby(self, topic: str, partition: int) -> int | None:
        """Make a standby replica the owned partition; return the offset to resume from, or
        None when there is no standby of it here."""
        key = (topic, partition)
        with self._lock:  # one step: a lookup finds the store in one place or the other
            part = self._standbys.pop(key, None)
            if part is None:
                return None
            self._kept.pop(key, None)
            self._assigned[key] = part
        self._unassign_standby(key)
        log.info(
            "standby replica promoted topic=%s partition=%d resume=%d end=%d state=%s",
            topic,
            partition,
            part.position,
            part.end_offset,
            part.state.value,
        )
        return part.position

    def _reset_standbys(self, failure: ConsumerFailedError) -> None:
        """The standby consumer failed: close every standby and both consumers; the next turns
        of the loop open them again from their stores."""
        log.error("standby consumer failed, reopening standbys error=%s", failure)
        for key in self.held_standbys():
            self._drop_standby(key)
        self._close_standby_consumers()
        self._standbys_synced = None

    def _close_standby_consumers(self) -> None:
        for consumer in (self._standby_consumer, self._standby_offsets):
            if consumer is not None:
                with contextlib.suppress(KafkaException, RuntimeError):
                    consumer.close()
        self._standby_consumer = self._standby_offsets = None

    def _unassign_standby(self, key: TopicPartitionKey) -> None:
        if self._standby_consumer is not None:
            with contextlib.suppress(KafkaException):
                self._standby_consumer.incremental_unassign([TopicPartition(*key)])

    # -- helpers -------------------------------------------------------------------------------

    def _consumer_settings(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap.servers": self._bootstrap,
            "group.id": s.group,
            "group.instance.id": s.instance_id,
            "client.id": member_client_id(s.instance_id, s.advertised_endpoint, s.peer_port),
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            # New table topics join the subscription within this interval.
            "topic.metadata.refresh.interval.ms": 5_000,
            "queued.min.messages": 100_000,
            "logger": log,
        }

    def _partition_count(self, consumer: Consumer, topic: str) -> int:
        # A topic's partition count never changes under the fabric (that would move keys).
        known = self._partition_counts.get(topic)
        if known is not None:
            return known
        metadata = consumer.list_topics(topic, timeout=10)
        count = len(metadata.topics[topic].partitions)
        self._partition_counts[topic] = count
        return count
