"""The fault suite's pure parts: which faults fit, truncate plans, outages, the report."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fabric import config
from fabric.client import InstanceInfo, PartitionInfo, TableInfo, Topology
from fabric.errors import StackError
from fabric.faults.instances import FabricInstances, InstanceProcess
from fabric.faults.kinds import SEQUENCE, FaultKind, feasible, random_fault
from fabric.faults.prober import Availability, LookupProber, Outage
from fabric.faults.report import FaultResult, format_report, verify_summary
from fabric.faults.runner import _partition_problem
from fabric.sample.workload import TRUNCATES, TruncatePlan, WorkloadSettings, plan_truncate
from fabric.stack.manager import LocalStack
from fabric.verify import ComparedFreshness, TableReport


def test_the_sequence_is_every_fault_once() -> None:
    assert sorted(SEQUENCE) == sorted(FaultKind)
    assert len(SEQUENCE) == 7


def test_the_sequence_keeps_two_instances_running_from_three() -> None:
    running = 3
    for kind in SEQUENCE:
        assert feasible(kind, running, min_running=2, max_running=4), kind
        running += {FaultKind.KILL_INSTANCE: -1, FaultKind.REMOVE_INSTANCE: -1}.get(kind, 0)
        running += 1 if kind is FaultKind.ADD_INSTANCE else 0
        assert running >= 2


@pytest.mark.parametrize(
    ("kind", "running", "fits"),
    [
        (FaultKind.KILL_INSTANCE, 2, False),
        (FaultKind.KILL_INSTANCE, 3, True),
        (FaultKind.REMOVE_INSTANCE, 2, False),
        (FaultKind.ADD_INSTANCE, 4, False),
        (FaultKind.ADD_INSTANCE, 3, True),
        (FaultKind.WIPE_INSTANCE, 1, False),
        (FaultKind.RESTART_INSTANCE, 2, True),
        (FaultKind.RESTART_KAFKA, 1, True),
    ],
)
def test_feasible(kind: FaultKind, running: int, fits: bool) -> None:
    assert feasible(kind, running, min_running=2, max_running=4) is fits


def test_random_faults_never_shrink_below_the_minimum() -> None:
    rng = random.Random(3)
    kinds = {random_fault(rng, 2) for _ in range(200)}
    assert FaultKind.KILL_INSTANCE not in kinds
    assert FaultKind.REMOVE_INSTANCE not in kinds
    assert FaultKind.ADD_INSTANCE in kinds


def test_truncate_plans_follow_the_chance_and_empty_children_first() -> None:
    assert plan_truncate(random.Random(1), 0.0) is None
    plan = plan_truncate(random.Random(1), 1.0)
    assert plan is not None and plan.tables in TRUNCATES
    for tables in TRUNCATES:
        assert tables[0] == "public.bids"
    assert TruncatePlan(("public.bids", "public.items")).sql == (
        "TRUNCATE public.bids, public.items"
    )


def test_plans_are_a_function_of_the_seed() -> None:
    first = [plan_truncate(random.Random(5), 0.5) for _ in range(20)]
    again = [plan_truncate(random.Random(5), 0.5) for _ in range(20)]
    assert first == again


@pytest.mark.parametrize("kwargs", [{"rate": 0.0}, {"round_s": -1.0}, {"truncate_chance": 1.5}])
def test_workload_settings_refuse_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="a workload needs"):
        WorkloadSettings(**kwargs)  # type: ignore[arg-type]


def _prober() -> LookupProber:
    # Never started: lookups are recorded by hand. A client connects only when first used.
    return LookupProber(["127.0.0.1:1"], [("public.users", 1)])


def test_an_outage_runs_from_the_first_failure_to_the_next_success() -> None:
    prober = _prober()
    prober._record(1.0, 1.01, None)
    prober._record(2.0, 2.5, "UNAVAILABLE")
    prober._record(2.6, 2.7, "UNAVAILABLE")
    prober._record(3.0, 3.1, None)
    seen = prober.window(0.0, 10.0)
    assert seen.lookups == 4
    assert seen.failed == 2
    assert seen.outages == (Outage(2.0, 3.1, 2, "UNAVAILABLE"),)
    assert seen.unavailable_s == pytest.approx(1.1)
    assert seen.slowest_s == pytest.approx(0.5)


def test_a_window_clips_outages_and_counts_an_open_one_to_its_end() -> None:
    prober = _prober()
    prober._record(2.0, 2.1, "down")
    prober._record(4.0, 4.1, None)
    prober._record(5.0, 5.1, "down again")
    assert prober.window(3.0, 6.0).outages == (Outage(3.0, 4.1, 1, "down"), Outage(5.0, 6.0, 1, ""))
    assert prober.window(4.2, 4.9).outages == ()


def _table_report(table: str, compared: int, missing: int = 0) -> TableReport:
    return TableReport(
        table=table,
        sample=None,
        compared=compared,
        equal=compared - missing,
        missing=missing,
        extra=0,
        differing=0,
        columns={},
        examples=(),
        settled=0,
        freshness=ComparedFreshness(0, None, None),
    )


def test_verify_summary() -> None:
    ok = [_table_report("public.users", 200), _table_report("public.bids", 1000)]
    assert verify_summary(ok) == "0 differences (users 200, bids 1000 rows)"
    bad = [_table_report("public.users", 200), _table_report("public.bids", 1000, missing=2)]
    assert verify_summary(bad) == "bids: 2 missing, 0 extra, 0 differing"
    assert verify_summary([]) == "not verified"


def test_the_report_lists_each_fault() -> None:
    result = FaultResult(
        kind=FaultKind.RESTART_KAFKA,
        action="kafka back healthy after 6.0s",
        inject_s=6.0,
        recover_s=9.5,
        catch_up_s=1.2,
        availability=Availability(180, 3, (Outage(1.0, 1.25, 3, "x"),), 2.0),
        verify=(_table_report("public.users", 200),),
        notes=("connector failed, restarted",),
    )
    assert result.ok and result.differences == 0
    text = format_report([result])
    lines = text.splitlines()
    assert lines[0].startswith("| fault ")
    assert set(lines[1]) == {"|", "-"}
    assert "| restart Kafka " in lines[2] and "| 0.25 s " in lines[2] and "| 3/180 " in lines[2]
    assert "1 of 1 faults verified with zero differences" in text
    assert "- restart Kafka: connector failed, restarted" in text


def _topology(*partitions: PartitionInfo, members: tuple[str, ...] = ("f1",)) -> Topology:
    table = TableInfo("public.users", "auction.public.users", ("id",), (), partitions)
    return Topology((table,), tuple(InstanceInfo(m, "127.0.0.1:1") for m in members))


def test_partitions_must_be_active_on_a_running_instance() -> None:
    active = PartitionInfo(0, "f1", "127.0.0.1:1", "ACTIVE", 3)
    restoring = PartitionInfo(1, "f1", "127.0.0.1:1", "RESTORING", 0)
    tables = ["public.users"]
    assert _partition_problem(_topology(active), tables, {"f1"}, need_lag_0=False) is None
    assert _partition_problem(_topology(active), tables, {"f1"}, need_lag_0=True) == (
        "public.users partition 0 lag 3"
    )
    assert _partition_problem(_topology(restoring), tables, {"f1"}, need_lag_0=False) == (
        "public.users partition 1 RESTORING on f1"
    )
    assert _partition_problem(_topology(), tables, {"f1"}, need_lag_0=False) == (
        "public.users not in the topology"
    )


def test_the_group_must_have_settled_on_the_running_instances() -> None:
    active = PartitionInfo(0, "f1", "127.0.0.1:1", "ACTIVE", 0)
    tables = ["public.users"]
    # A killed instance stays a member until its session times out.
    dead_member = _topology(active, members=("f1", "f2"))
    assert _partition_problem(dead_member, tables, {"f1"}, need_lag_0=False) == (
        "group members ['f1', 'f2'], running ['f1']"
    )
    # A new instance has joined but owns nothing yet.
    joined = _topology(active, members=("f1", "f2"))
    assert _partition_problem(joined, tables, {"f1", "f2"}, need_lag_0=False) == (
        "no partitions yet on f2"
    )


def test_restarting_an_unknown_or_stopped_component_says_what_to_do(tmp_path: Path) -> None:
    stack = LocalStack(config.load({"FABRIC_STATE_DIR": str(tmp_path)}).stack)
    with pytest.raises(StackError, match="no component 'zookeeper'; it has postgres, kafka"):
        stack.restart("zookeeper")
    with pytest.raises(StackError, match=r"kafka is not running.*fabric stack up"):
        stack.restart("kafka")


def test_fatal_lines_are_the_last_critical_log_lines(tmp_path: Path) -> None:
    instances = FabricInstances({}, "g", tmp_path)
    instances.instances["f1"] = InstanceProcess("f1", 1, 2, tmp_path / "f1", tmp_path / "f1.log")
    assert instances.fatal_lines("f1") == []
    (tmp_path / "f1.log").write_text(
        "t INFO a\nt CRITICAL fenced one\nt WARNING b\nt CRITICAL fenced two\nt CRITICAL three\n"
    )
    assert instances.fatal_lines("f1") == ["t CRITICAL fenced two", "t CRITICAL three"]
