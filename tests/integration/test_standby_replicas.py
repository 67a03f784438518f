"""Standby replicas for real: two `fabric serve` processes with ``FABRIC_STANDBY_REPLICAS=1``,
each keeping the other's partitions current, so that either answers every key itself, a change
shows through both, and a kill -9 of one costs no lookup through the other.

The module shares the query service tests' capture of the sample tables (its own connector and
topic prefix) and runs its two instances in a group of their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric.materialize.status import STATUS_FILE, InstanceStatus
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import decode_row
from tests.integration.test_query_service import (
    CALL_S,
    KILL_CALL_S,
    TABLES,
    Capture,
    Cluster,
    capture,  # noqa: F401 - the module's fixture
    get_all,
    holds_everything,
    lookup,
    new_instances,
    rename,
    row_difference,
    start_load,
    stop_instances,
    stop_load,
    sweep,
    wait_until,
)


@pytest.fixture(scope="module")
def pair(
    capture: Capture,  # noqa: F811 - the fixture imported above
    stack_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """Two instances, each holding ACTIVE standby replicas of the other's partitions."""
    root = tmp_path_factory.mktemp("standby")
    settings = {"FABRIC_STANDBY_REPLICAS": "1"}
    instances = new_instances(capture, stack_env, root, "ab", group="standby", settings=settings)
    cluster = Cluster(capture, instances)
    try:
        cluster.ensure_ready()
        wait_until("standby replicas ACTIVE", lambda: standby_problem(cluster))
        yield cluster
    finally:
        stop_instances(instances)


def standby_problem(cluster: Cluster) -> str | None:
    """Why an instance does not yet hold an ACTIVE, caught-up standby of every partition the
    other owns (read from its status file)."""
    prefix = cluster.capture.prefix
    owners = cluster.owners()
    for instance in cluster.instances:
        path: Path = instance.state_dir / STATUS_FILE
        if not path.exists():
            return f"{instance.instance_id} has no status file yet"
        status = InstanceStatus.from_json(json.loads(path.read_text()))
        held = {
            (s.topic, s.partition) for s in status.standbys if s.state == "ACTIVE" and s.lag == 0
        }
        wanted = {
            (f"{prefix}.{table}", partition)
            for (table, partition), owner in owners.items()
            if owner != instance.instance_id
        }
        if held != wanted:
            return f"{instance.instance_id} holds standbys {sorted(held)}, wants {sorted(wanted)}"
    return None


def test_each_instance_answers_every_key_itself(capture: Capture, pair: Cluster) -> None:  # noqa: F811
    source = capture.rows()
    wait_until("every row current", lambda: sweep(pair.instances[0], source))
    lookups = [(t, k) for t in TABLES for k in source[t]]
    for instance in pair.instances:
        answers = get_all(instance, lookups)
        for (table, key), answer in zip(lookups, answers, strict=True):
            assert isinstance(answer, pb.GetResponse), (instance.instance_id, table, key, answer)
            assert answer.found, (table, key)
            assert row_difference(decode_row(answer.row), source[table][key]) is None
            assert answer.freshness.served_by == instance.instance_id, (table, key)
        batch = instance.stub.BatchGet(
            pb.BatchGetRequest(lookups=[lookup(t, k) for t, k in lookups[:: len(lookups) // 90]]),
            timeout=CALL_S,
        )
        assert {r.status for r in batch.results} == {"OK"}
        assert {r.freshness.served_by for r in batch.results} == {instance.instance_id}


def test_a_change_shows_through_owner_and_standby(capture: Capture, pair: Cluster) -> None:  # noqa: F811
    user_id = min(capture.rows()["public.users"])[0]
    row = rename(capture, user_id, f"standby-{time.monotonic_ns()}")

    def shown() -> str | None:
        for instance in pair.instances:
            answer = instance.stub.Get(lookup("public.users", (user_id,)), timeout=CALL_S)
            diff = row_difference(decode_row(answer.row), row) if answer.found else "missing"
            if diff is not None:
                return f"{instance.instance_id}: {diff}"
        return None

    wait_until("the change through both instances", shown)


def test_kill_9_of_an_owner_fails_no_lookup_through_the_other(
    capture: Capture,  # noqa: F811
    pair: Cluster,
) -> None:
    pair.ensure_ready()
    wait_until("standby replicas ACTIVE", lambda: standby_problem(pair))
    source = capture.rows()
    survivor, victim = pair.instances
    stop, threads = start_load(
        "standby-kill", [([survivor], False), ([survivor], False)], source, call_s=KILL_CALL_S
    )
    try:
        wait_until("load running", lambda: None if all(t.ok for t in threads) else "no answer")
        victim.kill()
        killed = time.monotonic()
        wait_until("the survivor owns every partition", lambda: holds_everything(pair, [survivor]))
        took_over = time.monotonic() - killed
        time.sleep(1)  # lookups go on after the takeover too
    finally:
        stop_load(stop, threads)
    failures = [f for t in threads for f in t.failures]
    print(
        f"\nstandby kill -9: {sum(t.ok for t in threads)} lookups through the survivor, "
        f"{len(failures)} failed; it owned every partition {took_over:.1f}s after the kill"
    )
    assert not failures, failures[:5]
    log = survivor.log_text()
    assert "standby replica promoted" in log
    assert sweep(survivor, source) is None

    victim.start()  # same id, same state: the pair settles again, standbys and all
    pair.ensure_ready()
    wait_until("standby replicas ACTIVE again", lambda: standby_problem(pair))
