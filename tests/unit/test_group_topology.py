"""How an instance reads its group's partition owners: one read at a time, waited on only as
long as the caller can afford."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from types import SimpleNamespace

import pytest
from confluent_kafka import TopicPartition

from fabric.materialize.membership import HostInfo, member_client_id
from fabric.serve import topology as topology_module
from fabric.serve.topology import GroupTopology

A = HostInfo("a", "127.0.0.1:7001")


class _Admin:
    """An admin client whose descriptions answer when the test says so."""

    def __init__(self) -> None:
        self.reads: list[concurrent.futures.Future[object]] = []

    def describe_consumer_groups(self, groups: list[str], **_: object) -> dict[str, object]:
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        self.reads.append(future)
        return dict.fromkeys(groups, future)


def _description(host: HostInfo, *partitions: int) -> SimpleNamespace:
    assignment = SimpleNamespace(topic_partitions=[TopicPartition("t", p) for p in partitions])
    member = SimpleNamespace(
        client_id=member_client_id(host.instance_id, host.endpoint),
        member_id=f"{host.instance_id}-member",
        assignment=assignment,
    )
    return SimpleNamespace(members=[member])


def _topology(admin: object) -> GroupTopology:
    topology = GroupTopology("127.0.0.1:1", "g", min_interval_s=0.0)
    topology._admin = admin  # type: ignore[assignment]
    return topology


def test_a_slow_read_costs_a_caller_no_more_than_it_can_wait() -> None:
    admin = _Admin()
    topology = _topology(admin)
    started = time.monotonic()
    snapshot = topology.refresh(wait_s=0.05)
    assert time.monotonic() - started < 1.0
    assert snapshot.owner("t", 0) is None
    # The read under way is shared, not queued behind or started again.
    topology.refresh(wait_s=0.0)
    assert len(admin.reads) == 1
    admin.reads[0].set_result(_description(A, 0))
    assert topology.refresh(max_age_s=60.0, wait_s=0.0).owner("t", 0) == A
    assert len(admin.reads) == 1


def test_waiting_callers_get_the_answer_as_soon_as_it_comes() -> None:
    admin = _Admin()
    topology = _topology(admin)
    seen: list[HostInfo | None] = []
    caller = threading.Thread(target=lambda: seen.append(topology.refresh().owner("t", 3)))
    caller.start()
    while not admin.reads:
        time.sleep(0.001)
    admin.reads[0].set_result(_description(A, 3))
    caller.join(timeout=5)
    assert seen == [A]


def test_a_failed_read_keeps_the_snapshot_and_the_next_caller_reads_again() -> None:
    admin = _Admin()
    topology = _topology(admin)
    before = topology.snapshot
    pending = topology.refresh(wait_s=0.0)
    admin.reads[0].set_exception(RuntimeError("broker gone"))
    assert topology.refresh(wait_s=0.0) is before is pending
    assert len(admin.reads) == 2


def test_a_timed_out_read_reconnects_and_reads_again(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _Admin()
    topology = _topology(admin)
    topology.refresh(wait_s=0.0)
    admin.reads[0].set_exception(concurrent.futures.TimeoutError())
    fresh = _Admin()
    monkeypatch.setattr(topology, "_connect", lambda: fresh)
    topology.refresh(wait_s=0.0)
    assert len(fresh.reads) == 1


def test_a_read_that_never_answers_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _Admin()
    topology = _topology(admin)
    topology.refresh(wait_s=0.0)
    monkeypatch.setattr(topology_module, "_DESCRIBE_TIMEOUT_S", -1.0)
    fresh = _Admin()
    monkeypatch.setattr(topology, "_connect", lambda: fresh)
    topology.refresh(wait_s=0.0)
    assert admin.reads[0].cancelled()
    assert len(fresh.reads) == 1
