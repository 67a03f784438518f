"""Shadow reads for real: one fabric instance in-process over the sample database.

With every read shadowed, a caught-up fabric has no divergence; a row read just before its change
committed is settled by the re-check at a consistency token; and a row written wrong straight
into the instance's store is counted and logged as diverged, with its columns.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import psycopg
import pytest

from fabric import db
from fabric.catalog import read_table_schemas
from fabric.client import FabricClient
from fabric.config import FabricConfig
from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.errors import StoreError
from fabric.serve.server import FabricServer
from fabric.shadow import ShadowReads, ShadowStats
from fabric.stack.ports import free_ports
from fabric.state.row import StoredRow
from fabric.state.store import PartitionStore
from tests.integration.test_client import (
    delete_dead_letters,
    ensure_sample,
    eventually,
    instance_config,
)

pytestmark = pytest.mark.integration

TABLES = ("public.users", "public.items", "public.bids")


@pytest.fixture(scope="module")
def sample(stack_env: dict[str, str], stack_config: FabricConfig) -> FabricConfig:
    return ensure_sample(stack_env, stack_config)


@pytest.fixture(scope="module")
def server(
    sample: FabricConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FabricServer]:
    group = f"it-shadow-{uuid.uuid4().hex[:8]}"
    (port,) = free_ports(1)
    cfg = instance_config(sample, group, "s1", tmp_path_factory.mktemp("shadow") / "s1", port)
    started = FabricServer(replace(cfg, serve=replace(cfg.serve, handover_timeout_s=2.0)))
    started.start()
    try:
        with FabricClient(started.endpoint, timeout_s=10.0) as client:
            eventually(lambda: _behind(sample, client), "every row materialized")
        yield started
    finally:
        started.stop()
        delete_dead_letters(sample, group)


def _behind(cfg: FabricConfig, client: FabricClient) -> str | None:
    topology = client.topology()
    if {t.table for t in topology.tables} != set(TABLES) or not topology.all_active:
        return f"topology {[(t.table, len(t.partitions)) for t in topology.tables]}"
    with db.connect(cfg.endpoints) as conn:
        for table in TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert row is not None
            fabric = sum(1 for _ in client.scan(table))
            if fabric != row[0]:
                return f"{table}: {fabric} rows in the fabric, {row[0]} in Postgres"
    return None


@pytest.fixture
def conn(sample: FabricConfig) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(sample.endpoints) as opened:
        yield opened


@pytest.fixture
def shadow(sample: FabricConfig) -> Iterator[ShadowReads]:
    # Room for every sample these tests offer: dropping when full is the unit tests' concern.
    with ShadowReads(
        lambda: db.connect(sample.endpoints), fraction=1.0, queue_size=100_000
    ) as opened:
        yield opened


def test_a_caught_up_fabric_shows_no_divergence(
    server: FabricServer, shadow: ShadowReads, conn: psycopg.Connection[Any]
) -> None:
    users = [tuple(r) for r in conn.execute("SELECT id FROM users ORDER BY id").fetchall()]
    bids = [tuple(r) for r in conn.execute("SELECT item_id, bid_no FROM bids").fetchall()]
    with FabricClient(server.endpoint, timeout_s=10.0, shadow=shadow) as client:
        client.get_many("users", users)
        client.get_many("bids", bids)
        client.get("items", 1)
        client.get("items", -1)  # not found on either side: agrees
        client.query("SELECT * FROM users WHERE id = ANY(%s)", [[1, 2, 3]])
        assert shadow.drain(60)
        offered = len(users) + len(bids) + 2 + 3
        assert client.shadow_stats == ShadowStats(offered, offered, equal=offered)


def test_a_row_read_before_its_change_arrived_is_settled_by_the_recheck(
    server: FabricServer, shadow: ShadowReads, conn: psycopg.Connection[Any]
) -> None:
    with FabricClient(server.endpoint, timeout_s=10.0, shadow=shadow) as client:
        before = client.get("users", 2)
        assert before is not None
        conn.execute(
            "UPDATE users SET display_name = %s WHERE id = 2", (f"shadow {uuid.uuid4().hex[:8]}",)
        )
        # The answer the fabric gave a moment ago, now behind Postgres.
        shadow.offer("public.users", (2,), before)
        assert shadow.drain(60)
    assert shadow.stats == ShadowStats(reads=2, sampled=2, equal=2)


def test_rows_wrong_in_the_store_are_counted_and_logged(
    server: FabricServer,
    shadow: ShadowReads,
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Last in the module: it writes behind the materializer's back (and puts the rows back)."""
    codec = KeyCodec(read_table_schemas(conn, ["public.users"])["public.users"])
    with FabricClient(server.endpoint, timeout_s=10.0) as client:
        partitions = len(client.table_info("users").partitions)
    changed, lost = codec.encode({"id": 3}), codec.encode({"id": 4})
    originals = {key: _stored(server, key, partitions) for key in (changed, lost)}
    wrong = {**orjson.loads(originals[changed][1].image), "email": "not-in-postgres@example.com"}
    store, stored = originals[changed]
    _overwrite(store, changed, stored._replace(image=orjson.dumps(wrong)))
    _overwrite(originals[lost][0], lost, None)
    try:
        with FabricClient(server.endpoint, timeout_s=10.0, shadow=shadow) as client:
            row = client.get("users", 3)
            assert row is not None and row["email"] == "not-in-postgres@example.com"
            assert client.get("users", 4) is None
            assert shadow.drain(60)
    finally:
        for key, (store, stored) in originals.items():
            _overwrite(store, key, stored)
    assert shadow.stats == ShadowStats(reads=2, sampled=2, diverged=2)
    warnings = [r.getMessage() for r in caplog.records if r.name == "fabric.shadow"]
    assert warnings == [
        "shadow read diverged table=public.users key=(3,) kind=differing columns=email",
        "shadow read diverged table=public.users key=(4,) kind=missing columns=-",
    ]


def _stored(server: FabricServer, key: bytes, partitions: int) -> tuple[PartitionStore, StoredRow]:
    served = server.materializer.serving("auction.public.users", partition_for(key, partitions))
    assert served is not None
    store = served[0]
    row = store.get(key)
    assert row is not None
    return store, row


def _overwrite(store: PartitionStore, key: bytes, row: StoredRow | None) -> None:
    """Write ``row`` (None: delete the key) at the store's applied offset, as if the
    materializer had applied it; a batch it commits meanwhile moves the offset: try again."""
    for _ in range(20):
        batch = store.batch()
        if row is None:
            batch.delete(key)
        else:
            batch.put(key, row)
        offset = store.applied_offset()
        assert offset is not None
        try:
            store.commit(batch, offset)
            return
        except StoreError:
            continue
    pytest.fail("the store's applied offset kept moving")
