"""The faults the suite injects, each against real processes, and which of them fit a cluster.

Instances are `fabric serve` processes (:mod:`fabric.faults.instances`); Kafka and Connect are the
local stack's components, restarted one at a time by :meth:`LocalStack.restart`.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from fabric.faults.instances import FabricInstances
from fabric.stack.manager import LocalStack
from fabric.stack.ports import free_ports


class FaultKind(enum.StrEnum):
    KILL_INSTANCE = "kill -9 an instance"
    RESTART_INSTANCE = "restart an instance"
    ADD_INSTANCE = "add an instance"
    REMOVE_INSTANCE = "remove an instance"
    RESTART_CONNECT = "restart Connect"
    RESTART_KAFKA = "restart Kafka"
    WIPE_INSTANCE = "delete an instance's state"


# Every fault once, in an order that keeps at least two instances running throughout when the
# cluster starts with three: kill (2 left), restart, add (3), remove (2), Connect, Kafka, wipe.
SEQUENCE: tuple[FaultKind, ...] = tuple(FaultKind)

_SHRINKING = (FaultKind.KILL_INSTANCE, FaultKind.REMOVE_INSTANCE)


def feasible(kind: FaultKind, running: int, *, min_running: int, max_running: int) -> bool:
    """Whether ``kind`` keeps the cluster between ``min_running`` and ``max_running`` instances
    (an instance restarting or being wiped is away for a moment, so it needs company too)."""
    if kind in _SHRINKING:
        return running > min_running
    if kind is FaultKind.ADD_INSTANCE:
        return running < max_running
    if kind in (FaultKind.RESTART_INSTANCE, FaultKind.WIPE_INSTANCE):
        return running >= 2
    return True


def random_fault(
    rng: random.Random, running: int, *, min_running: int = 2, max_running: int = 4
) -> FaultKind:
    choices = [
        k
        for k in FaultKind
        if feasible(k, running, min_running=min_running, max_running=max_running)
    ]
    return rng.choice(choices)


@dataclass
class FaultInjector:
    """Injects faults into one cluster of instances and the stack under it."""

    instances: FabricInstances
    stack: LocalStack
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def inject(self, kind: FaultKind) -> str:
        """Inject ``kind`` and return what was done (e.g. ``SIGKILL f2``). Returns once the fault
        has happened: a killed or stopped process has exited, a restarted one is started (an
        instance) or healthy (Kafka, Connect)."""
        if kind is FaultKind.RESTART_CONNECT:
            report = self.stack.restart("connect")
            return f"connect back healthy after {report.seconds:.1f}s"
        if kind is FaultKind.RESTART_KAFKA:
            report = self.stack.restart("kafka")
            return f"kafka back healthy after {report.seconds:.1f}s"
        if kind is FaultKind.ADD_INSTANCE:
            return f"started {self.add_instance()}"
        target = self.rng.choice(sorted(i.instance_id for i in self.instances.running))
        if kind is FaultKind.KILL_INSTANCE:
            self.instances.kill(target)
            return f"SIGKILL {target}"
        if kind is FaultKind.REMOVE_INSTANCE:
            self.instances.stop(target)
            return f"SIGTERM {target}"
        if kind is FaultKind.RESTART_INSTANCE:
            self.instances.stop(target)
            self.instances.start(target)
            return f"SIGTERM {target}, started again"
        self.instances.kill(target)
        self.instances.wipe(target)
        self.instances.start(target)
        return f"SIGKILL {target}, state folder deleted, started again"

    def add_instance(self) -> str:
        existing = set(self.instances.instances)
        number = len(existing) + 1
        while f"f{number}" in existing:
            number += 1
        instance_id = f"f{number}"
        self.instances.add(instance_id, *free_ports(2))
        return instance_id
