"""Lookups with a :class:`PositionBound`: answered only once their partition meets it.

``min_lsn`` (a consistency token, read-your-writes): the partition has applied every change that
committed before that WAL position. ``max_staleness_ms``: the partition reflects the database as
of at most that long ago. What a partition reflects comes from
:class:`fabric.materialize.progress.SourceProgress`; why that is sound is in
:mod:`fabric.core.watermarks` and docs/consistency.md.

A lookup waits on the materializer's ``progress`` condition, which is notified after every
applied batch and every new committed source offset: no polling. The wait ends a little before
the call's deadline, so that the caller learns how far behind the partition is:
DEADLINE_EXCEEDED for ``min_lsn``, FAILED_PRECONDITION for ``max_staleness_ms``. Only the
partition's owner waits; a lookup it forwards carries its bound, and the instance that answers
checks it in turn.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from fabric.core.lsn import format_lsn
from fabric.core.watermarks import PartitionProgress
from fabric.errors import (
    NotUpToBoundError,
    PositionNotReachedError,
    StoreError,
    TooStaleError,
)
from fabric.materialize.instance import Materializer
from fabric.materialize.partition import PartitionState
from fabric.materialize.progress import SourceProgress
from fabric.materialize.tables import KeyQueryMetadata
from fabric.rpc.v1 import fabric_pb2 as pb

# Time kept back from the deadline to send the answer that says how far behind the partition is.
_REPLY_MARGIN_S = 0.05


@dataclass(frozen=True, slots=True)
class Shortfall:
    """How a partition falls short of a bound, at one moment."""

    progress: PartitionProgress
    min_lsn: int
    max_staleness_ms: int
    age_ms: int | None  # how long ago the database was as the partition reflects it

    @property
    def position_missing(self) -> bool:
        return self.min_lsn > self.progress.lsn


def shortfall(
    progress: PartitionProgress, min_lsn: int, max_staleness_ms: int, now_ms: int
) -> Shortfall | None:
    """None when ``progress`` meets the bound, else how it falls short."""
    age_ms = None if progress.as_of_ms is None else max(0, now_ms - progress.as_of_ms)
    stale = max_staleness_ms > 0 and (age_ms is None or age_ms > max_staleness_ms)
    if min_lsn > progress.lsn or stale:
        return Shortfall(progress, min_lsn, max_staleness_ms, age_ms)
    return None


def describe(
    short: Shortfall, table: str, partition: int, waited_ms: int, offsets_topic: str
) -> NotUpToBoundError:
    """The error a lookup gets when its partition did not meet the bound in time."""
    progress = short.progress
    where = f"partition {partition} of {table}"
    if progress.lsn:
        applied = f"has applied up to LSN {format_lsn(progress.lsn)}"
    else:
        applied = (
            "has no known source position yet (no committed source offset seen on"
            f" {offsets_topic}: is the connector RUNNING, and is FABRIC_CONNECT_OFFSETS_TOPIC the"
            " Connect worker's offset.storage.topic?)"
        )
    age = "" if short.age_ms is None else f", the database as of {short.age_ms} ms ago"
    waited = f"after waiting {waited_ms} ms"
    if short.position_missing:
        behind = ""
        if progress.lsn:
            behind = f", {short.min_lsn - progress.lsn} bytes of WAL behind"
        return PositionNotReachedError(
            f"{where} {applied}{age}{behind} token {format_lsn(short.min_lsn)}, {waited}; retry"
            " with a longer deadline (a token from another database is never reached)"
        )
    return TooStaleError(
        f"{where} {applied}{age}: staler than max_staleness {short.max_staleness_ms} ms"
        f" {waited}; retry, or allow more staleness"
    )


class ReadBounds:
    """The owner's side of bounded lookups; follows the source offsets from the first one on."""

    def __init__(self, materializer: Materializer) -> None:
        self._materializer = materializer
        self._source: SourceProgress | None = None
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            source, self._source = self._source, None
        if source is not None:
            source.close()

    def wait(self, meta: KeyQueryMetadata, bound: pb.PositionBound, deadline: float) -> None:
        """Return once this instance's partition of ``meta`` meets ``bound``, or once this
        instance does not serve that partition (the routed way then asks the instance that does,
        with the bound); raise :class:`NotUpToBoundError` when the deadline comes first."""
        min_lsn, max_staleness_ms = bound.min_lsn, bound.max_staleness_ms
        if not min_lsn and not max_staleness_ms:
            return
        source = self._progress()
        condition = self._materializer.progress
        started = time.monotonic()
        give_up = deadline - min(_REPLY_MARGIN_S, (deadline - started) / 10)
        with condition:
            while True:
                known = source.progress(meta.topic, meta.partition)
                if known is None or known[0].state is not PartitionState.ACTIVE:
                    return
                short = shortfall(known[1], min_lsn, max_staleness_ms, int(time.time() * 1000))
                if short is None:
                    return
                left = give_up - time.monotonic()
                if left <= 0:
                    waited_ms = int((time.monotonic() - started) * 1000)
                    raise describe(
                        short, meta.table, meta.partition, waited_ms, source.offsets_topic
                    )
                condition.wait(left)

    def _progress(self) -> SourceProgress:
        with self._lock:
            if self._source is None:
                if self._closed:
                    raise StoreError("this instance is stopping; ask another one")
                self._source = SourceProgress(self._materializer)
                self._source.start()
            return self._source
