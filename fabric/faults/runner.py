"""The fault suite: a workload runs while faults are injected one after another; after each, once
the fabric has caught up, the fabric is compared with Postgres.

For every fault, :meth:`FaultRunner.run_fault`:

1. injects it while the workload writes and the prober looks keys up;
2. waits until the fabric has *recovered*: the connector and its task RUNNING, and every
   partition of every table ACTIVE on an instance that is running;
3. pauses the workload and takes a *fence*, Postgres's current WAL position; waits until the
   connector's replication slot has confirmed it (Connect has written every change up to it to
   Kafka) and every partition's lag is 0 (the fabric has applied them);
4. verifies every table (:func:`fabric.verify.verify`, every row), then resumes the workload.

A connector task that FAILED is restarted (as an operator would, `fabric connectors restart`) and
noted in the result: the suite reports it rather than hide it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from fabric.client import FabricClient, Topology
from fabric.connect import ConnectClient, ConnectorStatus, Masker
from fabric.db import translated
from fabric.errors import ConnectError, FabricError
from fabric.faults.instances import FabricInstances
from fabric.faults.kinds import FaultInjector, FaultKind
from fabric.faults.prober import LookupProber
from fabric.faults.report import FaultResult
from fabric.sample.workload import SampleWorkload
from fabric.verify import verify

log = logging.getLogger(__name__)

TABLES = ("public.users", "public.items", "public.bids")
POLL_S = 0.2


class FaultSuiteError(FabricError):
    """The fabric did not recover or catch up in time after a fault."""


@dataclass(frozen=True)
class SuiteSettings:
    connector: str = "auction"
    slot: str = "cdc_fabric_auction"
    recover_timeout_s: float = 180.0
    catch_up_timeout_s: float = 120.0
    recheck_s: float = 15.0  # verify's re-reads of a mismatching key
    tables: tuple[str, ...] = TABLES


class FaultRunner:
    def __init__(
        self,
        *,
        instances: FabricInstances,
        injector: FaultInjector,
        workload: SampleWorkload,
        prober: LookupProber,
        conn: psycopg.Connection[Any],
        connect: ConnectClient,
        settings: SuiteSettings = SuiteSettings(),
        on_result: Callable[[FaultResult], None] = lambda _: None,
    ) -> None:
        self.instances = instances
        self.injector = injector
        self.workload = workload
        self.prober = prober
        self.conn = conn
        self.connect = connect
        self.settings = settings
        self.on_result = on_result

    def run(self, faults: Sequence[FaultKind]) -> list[FaultResult]:
        return [self.run_fault(kind) for kind in faults]

    def run_fault(self, kind: FaultKind) -> FaultResult:
        notes: list[str] = []
        log.info("fault starting kind=%s", kind.value)
        start = time.monotonic()
        action = self.injector.inject(kind)
        injected = time.monotonic()
        self.prober.use_endpoints([i.endpoint for i in self.instances.running])
        try:
            self.wait_recovered(notes, self.settings.recover_timeout_s)
        except FaultSuiteError as exc:
            raise FaultSuiteError(f"after {kind.value} ({action}): {exc}") from exc
        recovered = time.monotonic()
        self.workload.pause()
        try:
            paused = time.monotonic()
            try:
                self.wait_caught_up(notes)
            except FaultSuiteError as exc:
                raise FaultSuiteError(f"after {kind.value} ({action}): {exc}") from exc
            caught_up = time.monotonic()
            availability = self.prober.window(start, caught_up)
            with self._client() as client:
                reports = verify(
                    client, self.conn, self.settings.tables, recheck_s=self.settings.recheck_s
                )
        finally:
            self.workload.resume()
        result = FaultResult(
            kind=kind,
            action=action,
            inject_s=injected - start,
            recover_s=recovered - start,
            catch_up_s=caught_up - paused,
            availability=availability,
            verify=tuple(reports),
            notes=tuple(notes),
        )
        log.info("fault done kind=%s ok=%s", kind.value, result.ok)
        self.on_result(result)
        return result

    # -- waiting -------------------------------------------------------------------------------

    def wait_recovered(self, notes: list[str], timeout_s: float) -> None:
        """Until the connector runs and the group has settled on the running instances, every
        partition ACTIVE."""
        self._until(lambda: self._not_recovered(notes), "the fabric to recover", timeout_s)

    def wait_caught_up(self, notes: list[str]) -> None:
        """With the writes paused: until Connect has confirmed every committed change and every
        partition's lag is 0."""
        with translated("reading the WAL position"):
            row = self.conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert row is not None
        fence = row[0]
        timeout = self.settings.catch_up_timeout_s
        self._until(
            lambda: self._slot_behind(fence, notes), "Connect to confirm the fence", timeout
        )
        self._until(self._not_caught_up, "every partition's lag to reach 0", timeout)

    def _until(self, check: Callable[[], str | None], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self.instances.check_alive([i.instance_id for i in self.instances.running])
            problem = check()
            if problem is None:
                return
            if time.monotonic() > deadline:
                fatal = [
                    f"\n  {i.instance_id}: {line}"
                    for i in self.instances.running
                    for line in self.instances.fatal_lines(i.instance_id)
                ]
                raise FaultSuiteError(
                    f"waited {timeout_s:.0f}s for {what}; still {problem}{''.join(fatal)}"
                )
            time.sleep(POLL_S)

    def _not_recovered(self, notes: list[str]) -> str | None:
        problem = self._connector_problem(notes)
        if problem is not None:
            return problem
        topology = self._topology()
        if topology is None:
            return "no instance answers the topology"
        running = {i.instance_id for i in self.instances.running}
        return _partition_problem(topology, self.settings.tables, running, need_lag_0=False)

    def _not_caught_up(self) -> str | None:
        topology = self._topology()
        if topology is None:
            return "no instance answers the topology"
        running = {i.instance_id for i in self.instances.running}
        return _partition_problem(topology, self.settings.tables, running, need_lag_0=True)

    def _slot_behind(self, fence: str, notes: list[str]) -> str | None:
        problem = self._connector_problem(notes)
        if problem is not None:
            return problem
        with translated("reading the replication slot"):
            row = self.conn.execute(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn, confirmed_flush_lsn::text"
                " FROM pg_replication_slots WHERE slot_name = %s",
                (fence, self.settings.slot),
            ).fetchone()
        if row is None:
            return f"no replication slot {self.settings.slot}"
        return None if row[0] else f"slot confirmed {row[1]}, fence {fence}"

    def _connector_problem(self, notes: list[str]) -> str | None:
        name = self.settings.connector
        try:
            doc = self.connect.status(name)
        except ConnectError as exc:
            return f"Connect not answering: {exc}"
        if doc is None:
            return f"connector {name} not registered"
        status = ConnectorStatus.from_json(name, doc, Masker())
        if status.failed:
            note = f"connector failed, restarted: {status.failure_report()}"
            if note not in notes:
                notes.append(note)
            log.warning("connector failed; restarting it: %s", status.failure_report())
            try:
                self.connect.restart(name, include_tasks=True, only_failed=True)
            except ConnectError as exc:
                return f"connector failed and its restart was refused: {exc}"
        if not status.is_all("RUNNING"):
            return f"connector {status.summary()}"
        return None

    def _topology(self) -> Topology | None:
        try:
            with self._client() as client:
                return client.topology()
        except FabricError:
            return None

    def _client(self) -> FabricClient:
        endpoints = [i.endpoint for i in self.instances.running]
        return FabricClient(endpoints, timeout_s=5.0)


def _partition_problem(
    topology: Topology, tables: Sequence[str], running: set[str], *, need_lag_0: bool
) -> str | None:
    """What keeps the partitions from being served by running instances (and caught up): every
    running instance, and only those, a member of the group with partitions of its own, every
    partition ACTIVE."""
    members = {i.instance_id for i in topology.instances}
    if members != running:
        return f"group members {sorted(members)}, running {sorted(running)}"
    owners: set[str] = set()
    for name in tables:
        info = topology.table(name)
        if info is None or not info.partitions:
            return f"{name} not in the topology"
        for p in info.partitions:
            if p.owner not in running or p.state != "ACTIVE":
                return f"{name} partition {p.partition} {p.state} on {p.owner or 'nobody'}"
            if need_lag_0 and p.lag_records:
                return f"{name} partition {p.partition} lag {p.lag_records}"
            owners.add(p.owner)
    if owners != running:
        return f"no partitions yet on {', '.join(sorted(running - owners))}"
    return None
