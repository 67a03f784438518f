"""Where standby replicas live: which partitions each instance keeps a copy of besides its own.

A standby replica is a store an instance keeps current for a partition another instance owns,
by consuming the same table topic. It answers lookups exactly as the owner's store does (the same
records applied in the same order, its own lag in every answer's freshness), so an instance
holding standbys of every partition serves any key without forwarding, and when an owner dies
or hands a partition over, the instance taking it over promotes a store that is already current
instead of restoring one.

Every instance computes the placement itself from the consumer group's assignment, the same
description for all, so no one has to hand placements out: a partition's standbys go to the
instances that follow its owner in the order of instance ids, and the owner's partitions are
spread over them in turn, so one owner's partitions do not all land on its next neighbour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

TopicPartitionKey = tuple[str, int]


def standby_partitions(
    owners: Mapping[TopicPartitionKey, str],
    instances: Sequence[str],
    me: str,
    replicas: int,
) -> frozenset[TopicPartitionKey]:
    """The partitions instance ``me`` keeps standby replicas of.

    ``owners`` maps each assigned partition to its owner's instance id and ``instances`` lists
    the group's instances; each partition gets ``replicas`` standbys (fewer when the group has
    fewer other instances), never on its owner. Raises ``ValueError`` for a negative count.
    """
    if replicas < 0:
        raise ValueError(f"standby replicas must be 0 or more, got {replicas}")
    ring = sorted(set(instances))
    if replicas == 0 or me not in ring or len(ring) < 2:
        return frozenset()
    by_owner: dict[str, list[TopicPartitionKey]] = {}
    for key, owner in owners.items():
        if owner in ring:
            by_owner.setdefault(owner, []).append(key)
    mine: set[TopicPartitionKey] = set()
    copies = min(replicas, len(ring) - 1)
    for owner, keys in by_owner.items():
        start = ring.index(owner)
        others = [ring[(start + step) % len(ring)] for step in range(1, len(ring))]
        for rank, key in enumerate(sorted(keys)):
            if any(others[(rank + copy) % len(others)] == me for copy in range(copies)):
                mine.add(key)
    return frozenset(mine)
