"""An instance's status file and its Prometheus metrics."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fabric.materialize.metrics import StatusCollector
from fabric.materialize.status import (
    STALE_AFTER_S,
    STATUS_FILE,
    InstanceStatus,
    PartitionStatus,
    read_statuses,
    write_status,
)

ACTIVE = PartitionStatus(
    topic="auction.public.items",
    partition=0,
    table="public.items",
    state="ACTIVE",
    position=1200,
    end_offset=1250,
    restored=1000,
    restore_total=1000,
    restore_eta_s=None,
    events_per_s=812.5,
    applied=1150,
    skipped=40,
    dead_letters=2,
    routing_checked=1148,
    routing_mismatches=1,
    unresolved_toast=3,
    rows=998,
)
RESTORING = replace(
    ACTIVE,
    topic="auction.public.bids",
    partition=2,
    table="public.bids",
    state="RESTORING",
    position=300,
    end_offset=5000,
    restored=300,
    restore_total=4000,
    restore_eta_s=12.5,
    events_per_s=0.0,
    applied=290,
    skipped=10,
    dead_letters=0,
    routing_checked=290,
    routing_mismatches=0,
    unresolved_toast=0,
    rows=287,
)


def instance(
    instance_id: str = "host-1", *, age_s: float = 0.0, partitions: tuple[PartitionStatus, ...] = ()
) -> InstanceStatus:
    return InstanceStatus(
        group="fabric-materializers",
        instance_id=instance_id,
        pid=4242,
        state_dir=f"/var/lib/fabric/instances/{instance_id}",
        updated_at=time.time() - age_s,
        partitions=partitions,
    )


# --- the status document -----------------------------------------------------------------


def test_lag_is_the_distance_to_the_end_and_never_negative() -> None:
    assert ACTIVE.lag == 50
    assert RESTORING.lag == 4700
    assert replace(ACTIVE, end_offset=1200).lag == 0
    assert replace(ACTIVE, end_offset=1100).lag == 0


def test_to_json_adds_running_and_lag() -> None:
    status = instance(partitions=(ACTIVE, RESTORING))
    doc = status.to_json()
    assert doc["running"] is True
    assert doc["instance_id"] == "host-1"
    parts = doc["partitions"]
    assert isinstance(parts, tuple)
    assert [p["lag"] for p in parts] == [50, 4700]
    assert parts[1]["restore_eta_s"] == 12.5
    assert parts[0]["restore_eta_s"] is None


def test_json_round_trip_gives_the_same_status() -> None:
    status = instance(partitions=(ACTIVE, RESTORING))
    text = json.dumps(status.to_json())
    again = InstanceStatus.from_json(json.loads(text))
    assert again == status
    assert again.partitions[0].lag == 50
    assert again.running is True


def test_round_trip_of_an_instance_without_partitions() -> None:
    status = instance()
    assert InstanceStatus.from_json(json.loads(json.dumps(status.to_json()))) == status


def test_running_is_false_once_the_status_is_stale() -> None:
    assert instance(age_s=STALE_AFTER_S - 2).running is True
    assert instance(age_s=STALE_AFTER_S + 1).running is False
    # A stale file that says it is running is not believed: running is derived from updated_at.
    doc = instance(age_s=STALE_AFTER_S + 1).to_json()
    doc["running"] = True
    assert InstanceStatus.from_json(doc).running is False


def test_from_json_ignores_fields_it_does_not_know() -> None:
    status = instance(partitions=(ACTIVE,))
    doc = status.to_json()
    doc["written_by"] = "a newer fabric"
    parts = doc["partitions"]
    assert isinstance(parts, tuple)
    parts[0]["new_counter"] = 7
    assert InstanceStatus.from_json(doc) == status


# --- the status file ---------------------------------------------------------------------


def test_write_status_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    state_dir = tmp_path / "host-1"
    state_dir.mkdir()
    first = instance(partitions=(ACTIVE,))
    write_status(state_dir, first)
    path = state_dir / STATUS_FILE
    inode = path.stat().st_ino
    assert json.loads(path.read_text())["partitions"][0]["position"] == 1200
    second = instance(partitions=(replace(ACTIVE, position=1250),))
    write_status(state_dir, second)
    assert sorted(p.name for p in state_dir.iterdir()) == [STATUS_FILE]
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten
    assert read_statuses(tmp_path) == [second]


def test_write_status_never_exposes_a_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = instance(partitions=(ACTIVE,))
    write_status(tmp_path, old)

    def fail(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_status(tmp_path, instance(partitions=(RESTORING,)))
    # Until the rename, readers see the old status whole.
    assert InstanceStatus.from_json(json.loads((tmp_path / STATUS_FILE).read_text())) == old


@pytest.mark.parametrize(
    "broken",
    [
        '{"group": "fabric-materializers", "instance_',  # cut short while being written
        "",
        "[]",
        "null",
        '{"group": "g"}',  # another version: required fields missing
        '{"group": "g", "instance_id": "x", "pid": 1, "state_dir": "/", "updated_at": 1.0,'
        ' "partitions": 5}',
        '{"group": "g", "instance_id": "x", "pid": 1, "state_dir": "/", "updated_at": 1.0,'
        ' "partitions": [5]}',
        '{"group": "g", "instance_id": "x", "pid": 1, "state_dir": "/", "updated_at": 1.0,'
        ' "partitions": [{"topic": "t"}]}',
    ],
)
def test_read_statuses_reads_every_instance_and_skips_broken_files(
    tmp_path: Path, broken: str
) -> None:
    one = instance("host-1", partitions=(ACTIVE,))
    two = instance("host-2", age_s=60, partitions=(RESTORING, ACTIVE))
    for status in (two, one):
        folder = tmp_path / status.instance_id
        folder.mkdir()
        write_status(folder, status)
    (tmp_path / "host-0").mkdir()
    (tmp_path / "host-0" / STATUS_FILE).write_text(broken)
    (tmp_path / "host-3").mkdir()  # an instance that never wrote a status
    (tmp_path / STATUS_FILE).write_text(json.dumps(one.to_json()))  # not in an instance folder

    statuses = read_statuses(tmp_path)

    assert statuses == [one, two]
    assert [s.running for s in statuses] == [True, False]


def test_read_statuses_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert read_statuses(tmp_path / "nothing") == []


# --- metrics -------------------------------------------------------------------------------

GAUGES = [
    "fabric_partition_lag_records",
    "fabric_partition_applied_offset",
    "fabric_partition_active",
    "fabric_partition_events_per_second",
    "fabric_partition_rows",
]
COUNTERS = [
    "fabric_partition_events_applied",
    "fabric_partition_events_skipped",
    "fabric_partition_dead_letters",
    "fabric_partition_routing_mismatches",
    "fabric_partition_routing_checked",
    "fabric_partition_unresolved_toast",
]


VISIBLE = "fabric_commit_to_visible_seconds"


def scrape(status: InstanceStatus) -> str:
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: status))
    return generate_latest(registry).decode()


def test_metrics_have_one_sample_per_partition_with_its_labels() -> None:
    text = scrape(instance("host-1", partitions=(ACTIVE, RESTORING)))

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families.pop(VISIBLE).type == "histogram"  # per table: tests/unit/test_freshness.py
    assert sorted(families) == sorted(GAUGES + COUNTERS)
    for name in GAUGES:
        assert families[name].type == "gauge"
    for name in COUNTERS:
        assert families[name].type == "counter"
    for family in families.values():
        assert [s.labels for s in family.samples] == [
            {
                "instance": "host-1",
                "topic": "auction.public.items",
                "partition": "0",
                "table": "public.items",
            },
            {
                "instance": "host-1",
                "topic": "auction.public.bids",
                "partition": "2",
                "table": "public.bids",
            },
        ]

    items = 'instance="host-1",partition="0",table="public.items",topic="auction.public.items"'
    bids = 'instance="host-1",partition="2",table="public.bids",topic="auction.public.bids"'
    lines = set(text.splitlines())
    expected = {
        f"fabric_partition_lag_records{{{items}}} 50.0",
        f"fabric_partition_lag_records{{{bids}}} 4700.0",
        f"fabric_partition_applied_offset{{{items}}} 1199.0",
        f"fabric_partition_applied_offset{{{bids}}} 299.0",
        f"fabric_partition_active{{{items}}} 1.0",
        f"fabric_partition_active{{{bids}}} 0.0",
        f"fabric_partition_events_per_second{{{items}}} 812.5",
        f"fabric_partition_events_per_second{{{bids}}} 0.0",
        f"fabric_partition_rows{{{items}}} 998.0",
        f"fabric_partition_rows{{{bids}}} 287.0",
        f"fabric_partition_events_applied_total{{{items}}} 1150.0",
        f"fabric_partition_events_applied_total{{{bids}}} 290.0",
        f"fabric_partition_events_skipped_total{{{items}}} 40.0",
        f"fabric_partition_events_skipped_total{{{bids}}} 10.0",
        f"fabric_partition_dead_letters_total{{{items}}} 2.0",
        f"fabric_partition_dead_letters_total{{{bids}}} 0.0",
        f"fabric_partition_routing_mismatches_total{{{items}}} 1.0",
        f"fabric_partition_routing_mismatches_total{{{bids}}} 0.0",
        f"fabric_partition_routing_checked_total{{{items}}} 1148.0",
        f"fabric_partition_routing_checked_total{{{bids}}} 290.0",
        "# TYPE fabric_partition_lag_records gauge",
        "# TYPE fabric_partition_events_applied_total counter",
    }
    assert expected <= lines
    partition_lines = [line for line in lines if line.startswith("fabric_partition")]
    assert len(partition_lines) == 22


def test_metrics_of_an_instance_without_partitions_have_no_samples() -> None:
    text = scrape(instance())
    assert [line for line in text.splitlines() if not line.startswith("#")] == []
    assert "# TYPE fabric_partition_lag_records gauge" in text


def test_metrics_are_read_from_the_status_at_each_scrape() -> None:
    current = [instance(partitions=(ACTIVE,))]
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: current[0]))
    first = generate_latest(registry).decode()
    current[0] = instance(partitions=(replace(ACTIVE, applied=1151),))
    second = generate_latest(registry).decode()
    assert 'topic="auction.public.items"} 1150.0' in first
    assert 'topic="auction.public.items"} 1151.0' in second
