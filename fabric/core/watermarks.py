"""Source watermarks: how far the database is durably in Kafka, and what a partition reflects.

Two facts bound what a partition has applied, in WAL positions (LSNs) and commit times:

- **Its own records.** Debezium writes a transaction's changes when it commits, transactions in
  commit order. A change at LSN L was written to the WAL after every transaction that had
  committed by then, so once a partition has applied a streamed change at L, it has applied
  every change of its own that committed before L. Snapshot rows do not count: a snapshot writes
  rows in key order, not commit order.
- **Connect's committed source offset** (a :class:`Checkpoint`). Connect commits a source offset
  only once every record produced before it is acknowledged by Kafka. So when the offset's
  ``lsn`` is L, every change committed before L sits in its partition below the partition's end
  offset as read *after* that offset was seen; a partition that has applied up to those end
  offsets has applied every change committed before L, whether it saw one lately or not.

Either fact alone is sound; a partition's progress is the better of the two
(:func:`partition_progress`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SourceOffset:
    """Connect's committed source offset of a Debezium Postgres connector."""

    lsn: int  # every change that committed before this WAL position was produced before it
    commit_ts_ms: int | None  # commit time in Postgres of the last transaction before ``lsn``


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A committed source offset and the end offsets of the table partitions read after it."""

    lsn: int
    commit_ts_ms: int | None
    end_offsets: Mapping[TopicPartitionKey, int]


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """What a partition is known to reflect: every change committed before ``lsn`` (0: nothing
    known), the database as of ``as_of_ms`` (Postgres's commit clock; None: unknown)."""

    lsn: int
    as_of_ms: int | None


def parse_source_offset(value: bytes | None) -> SourceOffset | None:
    """A Debezium Postgres offset as Connect stores it (JSON ``{"lsn": …, "ts_usec": …}``), or
    None when it bounds nothing: a reset (null), a snapshot still running (its ``lsn`` is the
    snapshot's position, yet rows of the snapshot may still be on their way), or no ``lsn``."""
    if value is None:
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    snapshot = document.get("snapshot")
    if snapshot not in (None, False, "false", "FALSE"):
        return None
    lsn = document.get("lsn")
    if type(lsn) is not int or lsn <= 0:
        return None
    ts_usec = document.get("ts_usec")
    return SourceOffset(lsn, ts_usec // 1000 if type(ts_usec) is int else None)


class Watermarks:
    """The latest checkpoints, in increasing LSN order; at most ``keep`` of them."""

    def __init__(self, keep: int = 600) -> None:
        self._checkpoints: deque[Checkpoint] = deque(maxlen=keep)

    def record(self, checkpoint: Checkpoint) -> bool:
        """Keep ``checkpoint`` if it is past the latest one; returns whether it was kept. An
        offset that went back (the connector's offsets were reset) bounds nothing new: what the
        earlier checkpoints say stays true."""
        latest = self.latest
        if latest is not None and checkpoint.lsn <= latest.lsn:
            return False
        self._checkpoints.append(checkpoint)
        return True

    @property
    def latest(self) -> Checkpoint | None:
        return self._checkpoints[-1] if self._checkpoints else None

    def applied(self, partition: TopicPartitionKey, position: int) -> Checkpoint | None:
        """The newest checkpoint a partition whose next offset to apply is ``position`` has
        applied up to, or None. A partition a checkpoint has no end offset for (its topic was
        not listed then) is not covered by it."""
        for checkpoint in reversed(self._checkpoints):
            end = checkpoint.end_offsets.get(partition)
            if end is not None and end <= position:
                return checkpoint
        return None


def partition_progress(
    watermarks: Watermarks,
    partition: TopicPartitionKey,
    position: int,
    streamed_lsn: int,
    streamed_commit_ts_ms: int | None,
) -> PartitionProgress:
    """The better of the partition's own last streamed change and the newest checkpoint it has
    applied up to (see the module's docstring for why each is sound)."""
    lsn, as_of = streamed_lsn, streamed_commit_ts_ms
    checkpoint = watermarks.applied(partition, position)
    if checkpoint is not None:
        lsn = max(lsn, checkpoint.lsn)
        if checkpoint.commit_ts_ms is not None:
            as_of = (
                checkpoint.commit_ts_ms if as_of is None else max(as_of, checkpoint.commit_ts_ms)
            )
    return PartitionProgress(lsn, as_of)
