"""Freshness: how long a change took from its commit in Postgres to being visible to lookups.

A row becomes visible to lookups when the materializer commits the RocksDB batch that holds it,
so each applied change of the stream counts once, at that moment: its commit time in Postgres
(Debezium's ``source.ts_ms``) to the commit of the batch. Snapshot rows, and records replayed
while the partition restores, carry old commits and are not counted. Counting is a bisect and
an increment per distinct commit time in a batch; the histogram is read at scrape and status
time, merged per table across partitions.

Commit times come from Postgres's clock, visibility from the instance's: the figure includes
any skew between the two clocks.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Upper bounds of the buckets, milliseconds; the last bucket is everything above.
BOUNDS_MS: tuple[float, ...] = (
    5, 10, 25, 50, 75, 100, 150, 250, 500, 750, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000
)  # fmt: skip


class FreshnessHistogram:
    """Commit → visible times of one partition's changes, in :data:`BOUNDS_MS` buckets."""

    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.sum_ms = 0.0

    def observe(self, committed_ms: Iterable[int], visible_ms: float) -> None:
        # The changes of a transaction, and of one millisecond, share a commit time: counted
        # once per distinct time (Counter counts in C), not once per change.
        counts, bounds, total = self.counts, BOUNDS_MS, 0.0
        for commit, changes in Counter(committed_ms).items():
            elapsed = visible_ms - commit
            counts[bisect.bisect_left(bounds, elapsed)] += changes
            total += elapsed * changes
        self.sum_ms += total

    def snapshot(self) -> Freshness:
        return Freshness(tuple(self.counts), round(self.sum_ms, 1))


@dataclass(frozen=True)
class Freshness:
    """A histogram's counts (one per bucket of :data:`BOUNDS_MS`, then the overflow) and sum."""

    counts: tuple[int, ...] = (0,) * (len(BOUNDS_MS) + 1)
    sum_ms: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merged(self, other: Freshness) -> Freshness:
        return Freshness(
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            self.sum_ms + other.sum_ms,
        )

    def quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile, interpolated within its bucket (as Prometheus's
        histogram_quantile does); None without observations, the last bound when it falls in
        the overflow bucket."""
        total = self.count
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                if index == len(BOUNDS_MS):
                    return float(BOUNDS_MS[-1])
                low = BOUNDS_MS[index - 1] if index else 0.0
                return low + (BOUNDS_MS[index] - low) * (rank - seen) / count
            seen += count
        return float(BOUNDS_MS[-1])


def merge(histograms: Sequence[Freshness]) -> Freshness:
    merged = Freshness()
    for histogram in histograms:
        merged = merged.merged(histogram)
    return merged
