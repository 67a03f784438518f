"""What an instance reports about itself: per-partition state, position, lag and counters.

An instance publishes its status two ways: as Prometheus metrics (:mod:`fabric.materialize.metrics`)
and as ``status.json`` in its state folder, rewritten every couple of seconds, which is what
``fabric materialize status`` reads for every instance on the machine.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fabric.materialize.freshness import BOUNDS_MS, Freshness, merge

STATUS_FILE = "status.json"
# An instance that has not rewritten its status for this long is reported as not running.
STALE_AFTER_S = 10.0


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    table: str
    state: str  # RESTORING or ACTIVE
    position: int  # the next offset to apply
    end_offset: int  # the topic-partition's end as last seen
    restored: int  # records re-read since assignment to catch up (0 when resumed at the end)
    restore_total: int  # records to re-read: the end offset seen at assignment - the resume offset
    restore_eta_s: float | None
    events_per_s: float
    applied: int
    skipped: int
    dead_letters: int
    routing_checked: int
    routing_mismatches: int
    unresolved_toast: int
    rows: int  # RocksDB's estimate
    # Commit in Postgres → visible to lookups, per fabric.materialize.freshness.BOUNDS_MS bucket.
    visible_counts: tuple[int, ...] = ()
    visible_sum_ms: float = 0.0

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.position)

    @property
    def freshness(self) -> Freshness:
        if len(self.visible_counts) != len(BOUNDS_MS) + 1:
            return Freshness()  # a status written with other buckets: not comparable
        return Freshness(tuple(self.visible_counts), self.visible_sum_ms)


@dataclass(frozen=True)
class InstanceStatus:
    group: str
    instance_id: str
    pid: int
    state_dir: str
    updated_at: float  # wall clock, seconds
    partitions: tuple[PartitionStatus, ...] = field(default_factory=tuple)
    # Standby replicas of partitions other instances own (fabric.core.placement).
    standbys: tuple[PartitionStatus, ...] = field(default_factory=tuple)

    @property
    def running(self) -> bool:
        return time.time() - self.updated_at < STALE_AFTER_S

    def freshness_by_table(self) -> dict[str, Freshness]:
        """Commit → visible times of every table, its partitions here merged."""
        tables: dict[str, list[Freshness]] = {}
        for part in self.partitions:
            tables.setdefault(part.table, []).append(part.freshness)
        return {table: merge(histograms) for table, histograms in sorted(tables.items())}

    def to_json(self) -> dict[str, object]:
        doc = asdict(self)
        doc["running"] = self.running
        for part, shown in zip(
            (*self.partitions, *self.standbys), (*doc["partitions"], *doc["standbys"]), strict=True
        ):
            shown["lag"] = part.lag
        doc["commit_to_visible"] = {
            table: {
                "changes": freshness.count,
                "p50_ms": _rounded(freshness.quantile_ms(0.5)),
                "p99_ms": _rounded(freshness.quantile_ms(0.99)),
            }
            for table, freshness in self.freshness_by_table().items()
        }
        return doc

    @staticmethod
    def from_json(doc: dict[str, object]) -> InstanceStatus:
        fields = {k: v for k, v in doc.items() if k in InstanceStatus.__dataclass_fields__}
        fields["partitions"] = _partitions(doc, "partitions")
        fields["standbys"] = _partitions(doc, "standbys")
        return InstanceStatus(**fields)  # type: ignore[arg-type]


def _partitions(doc: dict[str, object], name: str) -> tuple[PartitionStatus, ...]:
    parts = doc.get(name) or []
    if not isinstance(parts, list | tuple) or not all(isinstance(p, dict) for p in parts):
        raise ValueError(f"{name!r} is not a list of objects")
    fields = set(PartitionStatus.__dataclass_fields__)
    partitions = []
    for p in parts:
        known: dict[str, Any] = {k: v for k, v in p.items() if k in fields}
        known["visible_counts"] = tuple(known.get("visible_counts", ()))
        partitions.append(PartitionStatus(**known))
    return tuple(partitions)


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)


def write_status(state_dir: Path, status: InstanceStatus) -> None:
    """Replace the instance's status file atomically (readers never see half a file)."""
    path = state_dir / STATUS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status.to_json(), indent=1))
    os.replace(tmp, path)


def read_statuses(instances_dir: Path) -> list[InstanceStatus]:
    """The last status of every instance whose state folder is under ``instances_dir``."""
    statuses = []
    for path in sorted(instances_dir.glob(f"*/{STATUS_FILE}")):
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict):
                continue  # valid JSON, but not a status document
            statuses.append(InstanceStatus.from_json(doc))
        except (OSError, ValueError, TypeError):
            continue  # being replaced right now, or not a status file of this version
    return statuses
