"""Standby placement: every instance computes the same placement from the group's assignment."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabric.core.placement import standby_partitions

TOPIC = "auction.public.users"


def _owners(instances: list[str], partitions: int) -> dict[tuple[str, int], str]:
    """Partitions dealt round-robin, as a group coordinator might assign them."""
    return {(TOPIC, p): instances[p % len(instances)] for p in range(partitions)}


def _placement(
    owners: dict[tuple[str, int], str], instances: list[str], replicas: int
) -> dict[str, frozenset[tuple[str, int]]]:
    return {me: standby_partitions(owners, instances, me, replicas) for me in instances}


def test_no_replicas_wanted_places_nothing() -> None:
    instances = ["a", "b", "c"]
    assert _placement(_owners(instances, 6), instances, 0) == dict.fromkeys(instances, frozenset())


def test_a_lone_instance_has_no_one_to_copy() -> None:
    assert standby_partitions({(TOPIC, 0): "a"}, ["a"], "a", 2) == frozenset()


def test_one_replica_of_each_partition_on_another_instance() -> None:
    instances = ["a", "b", "c"]
    owners = _owners(instances, 6)
    placement = _placement(owners, instances, 1)
    for key, owner in owners.items():
        holders = [me for me, keys in placement.items() if key in keys]
        assert len(holders) == 1
        assert holders != [owner]


def test_as_many_replicas_as_other_instances_puts_every_partition_everywhere() -> None:
    instances = ["a", "b", "c"]
    owners = _owners(instances, 6)
    for me, keys in _placement(owners, instances, 5).items():
        assert keys == frozenset(k for k, owner in owners.items() if owner != me)


def test_one_owners_partitions_spread_over_the_others() -> None:
    instances = ["a", "b", "c"]
    owners = {(TOPIC, p): "a" for p in range(4)}
    placement = _placement(owners, instances, 1)
    assert len(placement["b"]) == 2
    assert len(placement["c"]) == 2


def test_an_instance_outside_the_group_or_an_unknown_owner_gets_nothing() -> None:
    owners = {(TOPIC, 0): "gone", (TOPIC, 1): "a"}
    assert standby_partitions(owners, ["a", "b"], "z", 1) == frozenset()
    assert standby_partitions(owners, ["a", "b"], "b", 1) == {(TOPIC, 1)}


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        standby_partitions({}, ["a"], "a", -1)


@given(
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=24),
    st.integers(min_value=0, max_value=7),
    st.randoms(use_true_random=False),
)
def test_every_partition_gets_min_of_replicas_and_others_copies_never_on_its_owner(
    count: int, partitions: int, replicas: int, rng: object
) -> None:
    instances = [f"instance-{n}" for n in range(count)]
    owners = {(TOPIC, p): rng.choice(instances) for p in range(partitions)}  # type: ignore[attr-defined]
    listed = list(instances)
    rng.shuffle(listed)  # type: ignore[attr-defined]
    placement = _placement(owners, listed, replicas)
    for key, owner in owners.items():
        holders = [me for me, keys in placement.items() if key in keys]
        assert owner not in holders
        assert len(holders) == min(replicas, count - 1)
    # The order instances are listed in does not matter.
    for order in itertools.islice(itertools.permutations(instances), 3):
        assert _placement(owners, list(order), replicas) == placement
