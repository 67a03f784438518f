"""`fabric verify` for real: two fabric instances in-process over the sample database.

A caught-up fabric verifies equal on users, items and bids (every row, and a sample); rows changed
in Postgres right before a verify are absorbed by its re-reads; and a row deleted behind the
fabric's back, straight from the partition store that holds it, is reported missing, alone.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fabric import db
from fabric.catalog import read_table_schemas
from fabric.client import FabricClient
from fabric.config import FabricConfig
from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.serve.server import FabricServer
from fabric.stack.ports import free_ports
from fabric.state.options import StoreOptions
from fabric.state.store import PartitionStore
from fabric.verify import verify
from tests.integration.test_client import (
    delete_dead_letters,
    ensure_sample,
    eventually,
    instance_config,
)

pytestmark = pytest.mark.integration

TABLES = ("public.users", "public.items", "public.bids")
INSTANCES = ("v1", "v2")


@pytest.fixture(scope="module")
def sample(stack_env: dict[str, str], stack_config: FabricConfig) -> FabricConfig:
    return ensure_sample(stack_env, stack_config)


@dataclass
class Cluster:
    configs: dict[str, FabricConfig]
    servers: dict[str, FabricServer]

    @property
    def endpoints(self) -> list[str]:
        return [s.endpoint for s in self.servers.values()]

    def start(self) -> None:
        for instance_id, cfg in self.configs.items():
            self.servers[instance_id] = FabricServer(cfg)
            self.servers[instance_id].start()
        with FabricClient(self.endpoints, timeout_s=10.0) as client:
            eventually(lambda: _not_ready(client), "both instances ACTIVE and caught up")

    def stop(self) -> None:
        """Both at once: neither waits to hand its partitions over to the other."""
        stoppers = [threading.Thread(target=s.stop) for s in self.servers.values()]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        self.servers.clear()


def _not_ready(client: FabricClient) -> str | None:
    topology = client.topology()
    parts = [(t.table, p.partition, p.owner, p.state, p.lag_records) for t in topology.tables
             for p in t.partitions]  # fmt: skip
    if {t.table for t in topology.tables} != set(TABLES):
        return f"tables {[t.table for t in topology.tables]}"
    if {p[2] for p in parts} != set(INSTANCES) or any(p[3:] != ("ACTIVE", 0) for p in parts):
        return f"partitions {parts}"
    return None


@pytest.fixture(scope="module")
def cluster(sample: FabricConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    group = f"it-verify-{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("verify-instances")
    configs = {}
    for instance_id, port in zip(INSTANCES, free_ports(len(INSTANCES)), strict=True):
        cfg = instance_config(sample, group, instance_id, folder / instance_id, port)
        configs[instance_id] = replace(cfg, serve=replace(cfg.serve, handover_timeout_s=2.0))
    found = Cluster(configs, {})
    try:
        found.start()
        with FabricClient(found.endpoints, timeout_s=10.0) as client:
            eventually(lambda: _counts_differ(sample, client), "every row materialized")
        yield found
    finally:
        found.stop()
        delete_dead_letters(sample, group)


def _counts_differ(cfg: FabricConfig, client: FabricClient) -> str | None:
    """Row counts only: the tests below check the rows themselves, with verify."""
    with db.connect(cfg.endpoints) as conn:
        for table in TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert row is not None
            fabric = sum(1 for _ in client.scan(table))
            if fabric != row[0]:
                return f"{table}: {fabric} rows in the fabric, {row[0]} in Postgres"
    return None


@pytest.fixture
def client(cluster: Cluster) -> Iterator[FabricClient]:
    with FabricClient(cluster.endpoints, timeout_s=10.0) as opened:
        yield opened


@pytest.fixture
def conn(sample: FabricConfig) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(sample.endpoints) as opened:
        yield opened


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_a_caught_up_fabric_verifies_equal(
    client: FabricClient, conn: psycopg.Connection[Any], cluster: Cluster, run_cli: Any
) -> None:
    for report in verify(client, conn, TABLES, recheck_s=5.0):
        assert report.ok, report
        assert report.compared == report.equal == _count(conn, report.table)
        assert (report.missing, report.extra, report.differing) == (0, 0, 0)
        assert report.freshness.max_lag_records == 0
    for report in verify(client, conn, TABLES, sample=5, recheck_s=5.0):
        assert (report.ok, report.sample, report.compared) == (True, 5, 5)
        fresh = report.freshness
        assert fresh.min_commit_time_ms is not None and fresh.max_commit_time_ms is not None
        assert 0 < fresh.min_commit_time_ms <= fresh.max_commit_time_ms
    endpoints = [arg for e in cluster.endpoints for arg in ("--endpoint", e)]
    code, out, err = run_cli("verify", *endpoints)
    assert (code, err) == (0, "")
    # Every table of the topology, in its order.
    assert sorted(line.split(":")[:2] for line in out.splitlines()) == [
        [t, " ok"] for t in sorted(TABLES)
    ]


def test_rows_changed_right_before_verify_are_not_reported(
    client: FabricClient, conn: psycopg.Connection[Any]
) -> None:
    user_id = 800_000 + uuid.uuid4().int % 90_000
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO users (id, email, external_id) VALUES (%s, %s, %s)",
                (user_id, f"verify.{user_id}@example.com", uuid.uuid4()),
            )
            conn.execute(
                "UPDATE users SET display_name = %s, rating = 4.10"
                " WHERE id = (SELECT min(id) FROM users)",
                (f"verified {user_id}",),
            )
            conn.execute("UPDATE items SET reserve_price = reserve_price + 1 WHERE id = 1")
        reports = verify(client, conn, TABLES, recheck_s=20.0)
        assert [(r.table, r.ok) for r in reports] == [(t, True) for t in TABLES], reports
        # Changed between the two reads of the first pass: a mismatch for certain, which the
        # re-reads settle.
        midway = ChangingMidway(client, conn, user_id)
        (users,) = verify(midway, conn, ["users"], recheck_s=20.0)
        assert (users.ok, users.settled, users.compared) == (True, 1, _count(conn, "users"))
    finally:
        conn.execute("DELETE FROM users WHERE id = %s", (user_id,))


class ChangingMidway:
    """A client that, before its first scan, renames a user in Postgres and waits until the
    fabric has the change: verify's first pass then holds the old row from Postgres and the
    new one from the fabric."""

    def __init__(self, client: FabricClient, conn: psycopg.Connection[Any], user_id: int) -> None:
        self._client, self._conn, self._user_id = client, conn, user_id
        self.topology, self.table_info = client.topology, client.table_info
        self.get_many_rows = client.get_many_rows

    def scan(self, table: str) -> Iterator[dict[str, Any]]:
        name = f"midway {uuid.uuid4().hex[:8]}"
        self._conn.execute(
            "UPDATE users SET display_name = %s WHERE id = %s", (name, self._user_id)
        )
        eventually(lambda: self._unseen(name), "the fabric has the change", timeout_s=30.0)
        return self._client.scan(table)

    def _unseen(self, name: str) -> str | None:
        row = self._client.get("users", self._user_id)
        shown = None if row is None else row["display_name"]
        return None if shown == name else f"display_name {shown!r}"


def test_a_row_deleted_from_its_store_is_reported_missing(
    sample: FabricConfig, cluster: Cluster, conn: psycopg.Connection[Any], run_cli: Any
) -> None:
    """Last in the module: it leaves the fabric's bids one row short."""
    row = conn.execute("SELECT item_id, bid_no FROM bids ORDER BY item_id, bid_no LIMIT 1")
    item_id, bid_no = row.fetchone() or (None, None)
    key = {"item_id": item_id, "bid_no": bid_no}
    record_key = KeyCodec(read_table_schemas(conn, ["public.bids"])["public.bids"]).encode(key)
    with FabricClient(cluster.endpoints, timeout_s=10.0) as client:
        partitions = len(client.table_info("bids").partitions)
    partition = partition_for(record_key, partitions)

    cluster.stop()
    # Every copy of the partition's store: whichever instance owns it after the restart.
    stores = [
        cfg.materializer.state_dir / "auction.public.bids" / str(partition)
        for cfg in cluster.configs.values()
    ]
    deleted = [store for store in stores if _delete(store, record_key)]
    assert deleted, "no store held the row"
    cluster.start()

    with FabricClient(cluster.endpoints, timeout_s=10.0) as client:
        users, items, bids = verify(client, conn, TABLES, recheck_s=3.0)
    assert users.ok and items.ok
    assert (bids.missing, bids.extra, bids.differing) == (1, 0, 0)
    assert bids.equal == bids.compared - 1 == _count(conn, "bids") - 1
    (example,) = bids.examples
    assert (example.kind, example.key, example.fabric) == ("missing", key, None)
    assert example.source is not None and example.source["amount"] is not None

    endpoints = [arg for e in cluster.endpoints for arg in ("--endpoint", e)]
    code, out, err = run_cli("verify", "bids", "--recheck", "1", *endpoints)
    assert code == 1
    assert out.startswith("public.bids: DIFFERS:")
    assert f"missing in the fabric: item_id={item_id} bid_no={bid_no}" in out
    assert err == "fabric verify: differences remain in public.bids (1 missing in the fabric)\n"


def _delete(path: Path, key: bytes) -> bool:
    """Delete ``key`` from the store at ``path``, if there is one holding it."""
    if not path.exists():
        return False
    with PartitionStore.open(path, StoreOptions()) as store:
        offset = store.applied_offset()
        if store.get(key) is None or offset is None:
            return False
        batch = store.batch()
        batch.delete(key)
        store.commit(batch, offset)
    return True
