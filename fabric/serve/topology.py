"""Which instance owns which partition, read from Kafka's own view of the consumer group.

No registry service: every instance joins the group with a ``client.id`` that carries its id and
its advertised gRPC endpoint (``<instance-id>@<host>:<port>``), and the group coordinator already
knows each member's assignment. :class:`GroupTopology` asks for it with the admin API's
``describe_consumer_groups`` and keeps the answer until it is refreshed: on every rebalance of
this instance, whenever an owner answers "not mine", and every few seconds.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription  # type: ignore[attr-defined]

from fabric.materialize.membership import HostInfo, parse_client_id

log = logging.getLogger(__name__)

# How long a partition's previous owner is remembered: long enough for a new owner to restore.
_PREVIOUS_KEPT_S = 600.0
_DESCRIBE_TIMEOUT_S = 5.0
_FRESH_S = 5.0  # a description older than this says nothing about who is a member now


@dataclass(frozen=True)
class TopologySnapshot:
    owners: Mapping[tuple[str, int], HostInfo] = field(default_factory=dict)
    instances: tuple[HostInfo, ...] = ()
    read_at: float = 0.0  # monotonic
    # The owner a partition had before its current one, while it may still be handing it over.
    previous: Mapping[tuple[str, int], HostInfo] = field(default_factory=dict)
    # The group member id of each instance: a restarted instance keeps its id, not its member id.
    member_ids: Mapping[str, str] = field(default_factory=dict)

    def owner(self, topic: str, partition: int) -> HostInfo | None:
        return self.owners.get((topic, partition))

    def previous_owner(self, topic: str, partition: int) -> HostInfo | None:
        return self.previous.get((topic, partition))


class GroupTopology:
    """The partition → owner map of one consumer group, refreshed on demand (rate-limited).

    One description is read at a time. Callers wanting a newer snapshot share the read under
    way and wait for it only as long as they can afford: a lookup never waits past what its
    deadline leaves, even when the broker is slow to answer."""

    def __init__(self, bootstrap: str, group: str, min_interval_s: float = 0.5) -> None:
        self._bootstrap = bootstrap
        self._admin = self._connect()
        self._group = group
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._snapshot = TopologySnapshot()
        self._previous: dict[tuple[str, int], tuple[HostInfo, float]] = {}
        self._reading: concurrent.futures.Future[ConsumerGroupDescription] | None = None
        self._reading_since = 0.0

    @property
    def snapshot(self) -> TopologySnapshot:
        return self._snapshot

    def refresh(
        self, *, max_age_s: float = 0.0, wait_s: float = _DESCRIBE_TIMEOUT_S + 1
    ) -> TopologySnapshot:
        """The group's assignment, read again unless the current snapshot is younger than
        ``max_age_s`` (or than the minimum interval between reads). Waits at most ``wait_s``
        for the read; keeps the last snapshot when Kafka cannot answer in time."""
        with self._lock:
            self._collect()
            age = time.monotonic() - self._snapshot.read_at
            if age < max(max_age_s, self._min_interval_s):
                return self._snapshot
            reading = self._start_read()
        if wait_s > 0:
            concurrent.futures.wait([reading], timeout=wait_s)
        with self._lock:
            self._collect()
            return self._snapshot

    def _start_read(self) -> concurrent.futures.Future[ConsumerGroupDescription]:
        """The description under way, or a new one."""
        if self._reading is None:
            self._reading = self._admin.describe_consumer_groups(
                [self._group], request_timeout=_DESCRIBE_TIMEOUT_S
            )[self._group]
            self._reading_since = time.monotonic()
        return self._reading

    def _collect(self) -> None:
        """Take in the description under way once it has an answer; give up on one that
        outlived its own timeout."""
        reading = self._reading
        if reading is None:
            return
        if not reading.done():
            if time.monotonic() - self._reading_since <= _DESCRIBE_TIMEOUT_S + 1:
                return
            reading.cancel()
            self._reading = None
            self._failed(concurrent.futures.TimeoutError())
            return
        self._reading = None
        failure = reading.exception()
        if failure is not None:
            self._failed(failure)
            return
        self._install(reading.result())

    def _failed(self, exc: BaseException) -> None:
        log.warning("cannot describe the group group=%s error=%r", self._group, exc)
        if _timed_out(exc):
            # After a broker restart an admin client's requests can time out for good (seen
            # with librdkafka 2.16): a new client reconnects.
            self._admin = self._connect()

    def _install(self, description: ConsumerGroupDescription) -> None:
        owners: dict[tuple[str, int], HostInfo] = {}
        instances = []
        member_ids = {}
        for member in description.members:
            host = parse_client_id(member.client_id or "")
            if host is None:
                continue
            instances.append(host)
            member_ids[host.instance_id] = member.member_id
            for assigned in member.assignment.topic_partitions:
                owners[(assigned.topic, assigned.partition)] = host
        now = time.monotonic()
        previous = {
            tp: (host, since)
            for tp, (host, since) in self._previous.items()
            if now - since < _PREVIOUS_KEPT_S
        }
        for tp, old in self._snapshot.owners.items():
            if owners.get(tp) != old:
                previous[tp] = (old, now)
        self._previous = previous
        self._snapshot = TopologySnapshot(
            owners,
            tuple(sorted(instances, key=lambda h: h.instance_id)),
            now,
            {tp: host for tp, (host, _) in previous.items() if owners.get(tp) != host},
            member_ids,
        )

    def _connect(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self._bootstrap, "logger": log})  # type: ignore[dict-item]

    def invalidate(self) -> None:
        """Forget the snapshot's age, so the next :meth:`refresh` reads the group again."""
        self._snapshot = replace(self._snapshot, read_at=0.0)


def _timed_out(exc: BaseException) -> bool:
    if isinstance(exc, KafkaException):
        return bool(exc.args) and exc.args[0].code() == KafkaError._TIMED_OUT
    return isinstance(exc, concurrent.futures.TimeoutError)


class AbsenceWatch:
    """Says when an instance has been missing from its group's description for long enough to
    replace its consumer.

    A static member whose session timed out (a broker restart can do it) may never rejoin by
    itself: librdkafka keeps the consumer alive, without partitions, outside the group
    (confluentinc/librdkafka#3437). Only descriptions read recently count, so a Kafka that
    cannot be asked is not taken for an absence. An instance that holds no partition (it lost
    them with its session, or has not joined yet) has nothing to lose by joining again, and is
    replaced sooner.
    """

    def __init__(self, after_s: float, empty_after_s: float) -> None:
        self._after_s = after_s
        self._empty_after_s = empty_after_s
        self._absent_since: float | None = None

    def observe(
        self, snapshot: TopologySnapshot, instance_id: str, now: float, *, holding: bool
    ) -> bool:
        """True when ``instance_id`` has been absent from every fresh description for
        ``after_s`` (``empty_after_s`` when it is not ``holding`` partitions); the watch then
        starts over, giving the new consumer as long to join."""
        if now - snapshot.read_at > _FRESH_S:
            return False
        if instance_id in snapshot.member_ids:
            self._absent_since = None
            return False
        if self._absent_since is None:
            self._absent_since = now
            return False
        if now - self._absent_since < (self._after_s if holding else self._empty_after_s):
            return False
        self._absent_since = now
        return True
