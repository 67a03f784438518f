"""An assigned partition as the instance tracks it: its state, position, restore progress.

A partition is RESTORING from its assignment until it has applied the end offset seen then, and
ACTIVE from there on; reads are served only from ACTIVE partitions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum

from fabric.materialize.applier import PartitionApplier
from fabric.materialize.status import PartitionStatus

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


class PartitionState(StrEnum):
    RESTORING = "RESTORING"
    ACTIVE = "ACTIVE"


@dataclass(frozen=True)
class PartitionPosition:
    state: PartitionState
    position: int  # the next offset to apply
    end_offset: int  # the partition's end as last seen

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.position)


@dataclass
class AssignedPartition:
    applier: PartitionApplier
    state: PartitionState
    position: int  # the next offset to apply
    restore_start: int
    restore_target: int  # the end offset seen at assignment
    end_offset: int  # the end offset as last seen
    assigned_at: float = field(default_factory=time.monotonic)
    last_progress_log: float = field(default_factory=time.monotonic)
    events_per_s: float = 0.0
    _rate_mark: tuple[float, int] = (0.0, 0)

    @property
    def table(self) -> str:
        return self.applier.table

    def restore_eta_s(self, now: float) -> float | None:
        if self.state is not PartitionState.RESTORING:
            return None
        done = self.position - self.restore_start
        rate = done / max(now - self.assigned_at, 1e-6)
        return (self.restore_target - self.position) / rate if rate > 0 else None

    def apply_truncate(self, lsn: int) -> None:
        """Apply a truncate marker of this partition's table (once: the store keeps the
        watermark, and a marker at or below it is already applied)."""
        store = self.applier.store
        watermark = store.truncate_watermark()
        if watermark is not None and lsn <= watermark:
            return
        removed = store.truncate_below(lsn)
        log.info(
            "table truncated table=%s topic=%s partition=%d lsn=%d rows_removed=%d",
            self.table,
            self.applier.topic,
            self.applier.partition,
            lsn,
            removed,
        )


def partition_status(
    key: TopicPartitionKey, part: AssignedPartition, now: float
) -> PartitionStatus:
    counters = part.applier.counters
    store = part.applier.store
    return PartitionStatus(
        topic=key[0],
        partition=key[1],
        table=part.table,
        state=part.state.value,
        position=part.position,
        end_offset=part.end_offset,
        restored=min(part.position, part.restore_target) - part.restore_start,
        restore_total=part.restore_target - part.restore_start,
        restore_eta_s=part.restore_eta_s(now),
        events_per_s=round(part.events_per_s, 1),
        applied=counters.applied,
        skipped=counters.skipped,
        dead_letters=counters.dead_letters,
        routing_checked=counters.routing_checked,
        routing_mismatches=counters.routing_mismatches,
        unresolved_toast=counters.unresolved_toast,
        rows=store.count_estimate() if store.is_open else 0,
        visible_counts=tuple(part.applier.freshness.counts),
        visible_sum_ms=round(part.applier.freshness.sum_ms, 1),
    )
