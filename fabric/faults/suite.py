"""A fault suite session: a cluster of fabric instances over the running stack, a workload, a
prober and the runner, set up together and torn down together.

The stack must be up, the sample loaded and the auction connector applied (`fabric stack up`,
`fabric sample load`, `fabric connectors apply`). The instances join a consumer group of their
own, so each session materializes the topics from the start.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from fabric import config, db
from fabric.client import KeyInput
from fabric.connect import ConnectClient
from fabric.faults.instances import FabricInstances
from fabric.faults.kinds import FaultInjector
from fabric.faults.prober import LookupProber
from fabric.faults.report import FaultResult
from fabric.faults.runner import FaultRunner, FaultSuiteError, SuiteSettings
from fabric.sample.workload import SampleWorkload, WorkloadSettings
from fabric.stack.manager import LocalStack

log = logging.getLogger(__name__)

PROBE_KEYS_PER_TABLE = 5


@dataclass(frozen=True)
class SessionSettings:
    instances: int = 3
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)
    suite: SuiteSettings = field(default_factory=SuiteSettings)
    seed: int = 0
    handover_timeout_s: float = 20.0


@contextmanager
def fault_session(
    env: Mapping[str, str],
    root: Path,
    settings: SessionSettings = SessionSettings(),
    on_result: Callable[[FaultResult], None] = lambda _: None,
) -> Iterator[FaultRunner]:
    """A runner over a fresh cluster of ``settings.instances`` instances (state under ``root``),
    recovered and caught up, with the workload writing and the prober probing."""
    cfg = config.load(env)
    group = f"faults-{uuid.uuid4().hex[:8]}"
    instance_env = dict(env) | {"FABRIC_HANDOVER_TIMEOUT_S": str(settings.handover_timeout_s)}
    instances = FabricInstances(instance_env, group, root)
    rng = random.Random(settings.seed)
    injector = FaultInjector(instances, LocalStack(cfg.stack), rng)
    with contextlib.ExitStack() as stack:
        stack.callback(instances.close)
        for _ in range(settings.instances):
            injector.add_instance()
        conn = stack.enter_context(db.connect(cfg.endpoints))
        writer_conn = stack.enter_context(db.connect(cfg.endpoints))
        prober = stack.enter_context(
            LookupProber([i.endpoint for i in instances.running], _probe_keys(conn))
        )
        workload = SampleWorkload(writer_conn, settings.workload)
        runner = FaultRunner(
            instances=instances,
            injector=injector,
            workload=workload,
            prober=prober,
            conn=conn,
            connect=ConnectClient(cfg.endpoints.connect_url),
            settings=settings.suite,
            on_result=on_result,
        )
        runner.wait_recovered([], settings.suite.recover_timeout_s)
        if not prober.wait_answering():
            raise FaultSuiteError("lookups still fail a minute after the group settled")
        log.info("fault session ready group=%s instances=%d", group, settings.instances)
        stack.enter_context(workload)
        yield runner


def _probe_keys(conn: psycopg.Connection[Any]) -> list[tuple[str, KeyInput]]:
    """Keys of rows that exist now, spread over the tables; later deletes make them misses,
    which are answers all the same."""
    n = PROBE_KEYS_PER_TABLE
    with db.translated("choosing the keys to probe"):
        users = conn.execute("SELECT id FROM public.users ORDER BY id LIMIT %s", (n,)).fetchall()
        items = conn.execute("SELECT id FROM public.items ORDER BY id LIMIT %s", (n,)).fetchall()
        bids = conn.execute(
            "SELECT item_id, bid_no FROM public.bids ORDER BY item_id DESC, bid_no LIMIT %s", (n,)
        ).fetchall()
    probes: list[tuple[str, KeyInput]] = []
    probes += [("public.users", int(str(row[0]))) for row in users]
    probes += [("public.items", int(str(row[0]))) for row in items]
    probes += [("public.bids", {"item_id": row[0], "bid_no": row[1]}) for row in bids]
    return probes
