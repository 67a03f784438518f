"""Commit → visible histograms: counting, quantiles, the status file, metrics and the CLI."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fabric.cli.materialize import _format
from fabric.materialize.freshness import BOUNDS_MS, Freshness, FreshnessHistogram, merge
from fabric.materialize.status import InstanceStatus, read_statuses, write_status
from fabric.state import PartitionStore
from tests.unit.test_applier import (
    SMALL,
    A,
    B,
    C,
    RecordingSink,
    commit_ts,
    item,
    key,
    make_applier,
    msg,
    upsert,
)
from tests.unit.test_materialize_status import ACTIVE, RESTORING, VISIBLE, instance, scrape


def histogram(*elapsed_ms: float) -> Freshness:
    counting = FreshnessHistogram()
    counting.observe([int(1_000_000 - e) for e in elapsed_ms], 1_000_000)
    return counting.snapshot()


def test_observations_land_in_their_buckets() -> None:
    fresh = histogram(3, 5, 60, 60, 70_000)
    assert fresh.count == 5
    assert fresh.counts[0] == 2  # ≤ 5 ms
    assert fresh.counts[BOUNDS_MS.index(75)] == 2
    assert fresh.counts[-1] == 1  # above the last bound
    assert fresh.sum_ms == 3 + 5 + 60 + 60 + 70_000


def test_quantiles_interpolate_within_a_bucket() -> None:
    fresh = histogram(*([40] * 50 + [200] * 49 + [900]))
    p50 = fresh.quantile_ms(0.5)
    p99 = fresh.quantile_ms(0.99)
    assert p50 is not None and 25 <= p50 <= 50
    assert p99 is not None and 150 <= p99 <= 250
    assert Freshness().quantile_ms(0.5) is None
    assert histogram(90_000).quantile_ms(0.5) == BOUNDS_MS[-1]


def test_partitions_merge_per_table() -> None:
    one, two = histogram(10, 20), histogram(30)
    assert merge([one, two]).count == 3
    items = dataclasses.replace(
        ACTIVE, visible_counts=one.counts, visible_sum_ms=one.sum_ms, partition=1
    )
    more = dataclasses.replace(ACTIVE, visible_counts=two.counts, visible_sum_ms=two.sum_ms)
    status = instance(partitions=(items, more, RESTORING))
    by_table = status.freshness_by_table()
    assert by_table["public.items"].count == 3
    assert by_table["public.bids"].count == 0


def test_status_file_metrics_and_cli_show_it(tmp_path: Path) -> None:
    fresh = histogram(*([40] * 99 + [400]))
    part = dataclasses.replace(ACTIVE, visible_counts=fresh.counts, visible_sum_ms=fresh.sum_ms)
    status = instance(partitions=(part,))
    (tmp_path / "host-1").mkdir()
    write_status(tmp_path / "host-1", status)
    (read,) = read_statuses(tmp_path)
    assert isinstance(read, InstanceStatus)
    assert read.partitions[0].freshness == fresh
    doc = read.to_json()["commit_to_visible"]
    assert isinstance(doc, dict)
    assert doc["public.items"] == {
        "changes": 100,
        "p50_ms": round(fresh.quantile_ms(0.5) or 0, 1),
        "p99_ms": round(fresh.quantile_ms(0.99) or 0, 1),
    }
    assert 25 <= doc["public.items"]["p50_ms"] <= 50

    families = {f.name: f for f in text_string_to_metric_families(scrape(status))}
    samples = {(s.name, s.labels.get("le")): s.value for s in families[VISIBLE].samples}
    assert samples[(VISIBLE + "_count", None)] == 100
    assert samples[(VISIBLE + "_bucket", "0.05")] == 99
    assert samples[(VISIBLE + "_bucket", "+Inf")] == 100

    shown = _format(status)
    assert "commit → visible  public.items: p50 " in shown
    assert "over 100 changes" in shown


def test_the_applier_counts_streamed_changes_only_and_not_while_restoring(tmp_path: Path) -> None:
    with PartitionStore.open(tmp_path / "store", SMALL) as store:
        applier = make_applier(store, RecordingSink(store))
        # An LSN whose commit time (test_applier's commit_ts) was 20 ms ago.
        lsn = int(time.time() * 1000) - commit_ts(0) - 20
        # restoring: replayed changes are not fresh
        applier.apply([msg(0, key(C), upsert("c", item(C), lsn))], fresh=False)
        assert applier.freshness.snapshot().count == 0

        applier.apply(
            [
                msg(1, key(A), upsert("r", item(A), lsn + 1)),  # a snapshot row: an old commit
                msg(2, key(B), upsert("u", item(B), lsn + 2)),
                msg(3, key(C), upsert("u", item(C, "desk"), lsn + 3)),
            ]
        )
        fresh = applier.freshness.snapshot()
        assert fresh.count == 2
        assert 15 <= fresh.sum_ms / fresh.count < 5_000
