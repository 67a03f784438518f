"""Read-your-writes for real: commit in Postgres, take the consistency token, look the row up
with ``min_lsn`` through a random instance of three, and never read anything older.

The module captures three tables of its own through a connector of its own (a per-run topic
prefix): ``ryw_accounts``, written by the cycles; ``ryw_busy``, updated all the time by a load
thread; ``ryw_idle``, which nothing writes unless a test says so. The three instances run
in-process, in a group of their own. ``max_staleness`` and the error cases run on the same
cluster; the latency tests print what a bounded lookup costs on a busy and an idle partition.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from fabric import cli, db
from fabric.client import FabricClient, consistency_token, format_lsn
from fabric.config import REPO_ROOT, FabricConfig
from fabric.errors import FabricTimeoutError, InvalidLsnError, TooStaleError
from fabric.serve.server import FabricServer
from fabric.stack.ports import free_ports
from tests.integration.test_client import delete_dead_letters

pytestmark = pytest.mark.integration

TABLES = ("public.ryw_accounts", "public.ryw_busy", "public.ryw_idle")
ACCOUNTS = 2000  # rows of ryw_accounts; each worker owns its own
ROWS = 200  # rows of ryw_busy and ryw_idle
CYCLES = 1000
WORKERS = 20
TIMEOUT_S = 90.0
CALL_S = 10.0


def eventually(check: Callable[[], str | None], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        problem = check()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: still {problem} after {timeout_s:.0f}s")
        time.sleep(0.2)


def connect(cfg: FabricConfig) -> psycopg.Connection[Any]:
    return db.connect(cfg.endpoints)  # autocommit: every statement is a committed transaction


@pytest.fixture(scope="module")
def capture(
    stack_env: dict[str, str], stack_config: FabricConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The module's tables, filled and captured under a topic prefix of this run; the connector
    is retired and its topics deleted at the end."""
    prefix = f"ryw{uuid.uuid4().hex[:6]}"
    with connect(stack_config) as conn:
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, version bigint NOT NULL)")
        conn.execute(
            "INSERT INTO ryw_accounts SELECT g, 0 FROM generate_series(1, %s) g", (ACCOUNTS,)
        )
        for table in TABLES[1:]:
            conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, %s) g", (ROWS,))
    spec = json.loads((REPO_ROOT / "connectors" / "auction.json").read_text())
    spec["name"] = prefix
    spec["config"].update(
        {
            "topic.prefix": prefix,
            "slot.name": f"cdc_fabric_{prefix}",
            "publication.name": f"cdc_fabric_{prefix}",
            "table.include.list": ",".join(TABLES),
        }
    )
    path: Path = tmp_path_factory.mktemp("ryw") / f"{prefix}.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["connectors", "apply", str(path)], environ=stack_env) == 0
    try:
        yield prefix
    finally:
        cli.main(["connectors", "delete", "--drop-slot", str(path)], environ=stack_env)
        admin = AdminClient({"bootstrap.servers": stack_config.endpoints.kafka_bootstrap})
        ours = [t for t in admin.list_topics(timeout=10).topics if prefix in t]
        for future in admin.delete_topics(ours).values() if ours else ():
            future.result(timeout=30)
        with connect(stack_config) as conn:
            for table in TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(scope="module")
def endpoints(
    stack_config: FabricConfig, capture: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """Three instances, every partition ACTIVE and caught up with the initial rows."""
    group = f"it-ryw-{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("ryw-instances")
    servers: list[FabricServer] = []
    try:
        ports = free_ports(6)
        for instance_id, port, peer_port in zip(
            ("r1", "r2", "r3"), ports[:3], ports[3:], strict=True
        ):
            materializer = replace(
                stack_config.materializer,
                group=group,
                topic_prefix=capture,
                dead_letter_topic=f"{group}.dead-letters",
                instance_id=instance_id,
                state_dir=folder / instance_id,
                metrics_port=None,
            )
            serve = replace(
                stack_config.serve, port=port, peer_port=peer_port, handover_timeout_s=2.0
            )
            server = FabricServer(replace(stack_config, materializer=materializer, serve=serve))
            server.start()
            servers.append(server)
        found = [s.endpoint for s in servers]
        with FabricClient(found, timeout_s=CALL_S) as client:
            eventually(lambda: _not_settled(client, len(servers)), "every partition ACTIVE")
            eventually(
                lambda: None if client.get("ryw_idle", ROWS) is not None else "no last row",
                "the initial rows applied",
            )
        yield found
    finally:
        for server in servers:
            server.stop()
        delete_dead_letters(stack_config, group)


def _not_settled(client: FabricClient, instances: int) -> str | None:
    topology = client.topology()
    owners = {p.owner for t in topology.tables for p in t.partitions}
    if {t.table for t in topology.tables} != set(TABLES):
        return f"tables {[t.table for t in topology.tables]}"
    if len(owners) != instances or not topology.all_active:
        states = [
            (t.table, p.partition, p.owner, p.state) for t in topology.tables for p in t.partitions
        ]
        return f"partitions {states}"
    return None


@pytest.fixture(scope="module")
def busy(stack_config: FabricConfig, endpoints: list[str]) -> Iterator[list[int]]:
    """ryw_busy updated by one transaction after another; yields the count so far."""
    stop = threading.Event()
    done = [0]

    def load() -> None:
        rng = random.Random(7)
        with connect(stack_config) as conn:
            while not stop.is_set():
                conn.execute(
                    "UPDATE ryw_busy SET version = version + 1 WHERE id = %s",
                    (rng.randint(1, ROWS),),
                )
                done[0] += 1
                stop.wait(0.002)  # a steady load, not a saturating one

    thread = threading.Thread(target=load, name="ryw-busy", daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def clients(endpoints: list[str]) -> Iterator[list[FabricClient]]:
    """One client per instance, each calling only that instance: what it does not own it
    forwards, bound included."""
    opened = [FabricClient(e, timeout_s=CALL_S, smart=False) for e in endpoints]
    try:
        yield opened
    finally:
        for client in opened:
            client.close()


# -- read-your-writes --------------------------------------------------------------------------


def test_every_read_with_the_token_sees_the_write(
    stack_config: FabricConfig, clients: list[FabricClient], busy: list[int]
) -> None:
    """1,000 cycles of commit, token, lookup through a random instance: zero stale reads, while
    ryw_busy takes a steady load and ryw_idle takes none. A plain lookup right after the commit
    is counted too: it may be stale, which is what the token is for."""
    stale: list[str] = []
    plain_stale = [0]
    latencies: list[float] = []
    lock = threading.Lock()
    busy_before = busy[0]

    def worker(number: int) -> None:
        rng = random.Random(number)
        keys = range(number * (ACCOUNTS // WORKERS) + 1, (number + 1) * (ACCOUNTS // WORKERS) + 1)
        with connect(stack_config) as conn:
            for _ in range(CYCLES // WORKERS):
                key = rng.choice(keys)
                row = conn.execute(
                    "UPDATE ryw_accounts SET version = version + 1 WHERE id = %s RETURNING version",
                    (key,),
                ).fetchone()
                assert row is not None
                written = row[0]
                token = consistency_token(conn)
                client = rng.choice(clients)
                plain = client.get("ryw_accounts", key)
                started = time.monotonic()
                seen = client.get("ryw_accounts", key, min_lsn=token)
                took = time.monotonic() - started
                with lock:
                    latencies.append(took)
                    if plain is None or plain["version"] != written:
                        plain_stale[0] += 1
                    if seen is None or seen["version"] != written:
                        stale.append(f"key {key}: {seen} instead of version {written}")

    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(worker, n) for n in range(WORKERS)]:
            future.result()
    elapsed = time.monotonic() - started
    assert len(latencies) == CYCLES
    assert stale == []
    assert busy[0] > busy_before  # the busy table was busy throughout
    ordered = [t * 1e3 for t in sorted(latencies)]
    p50, p99 = statistics.median(ordered), ordered[int(len(ordered) * 0.99)]
    print(
        f"\n{CYCLES} cycles, {WORKERS} workers, {elapsed:.1f}s: stale with min_lsn 0,"
        f" plain lookups stale {plain_stale[0]}; min_lsn lookup p50 {p50:.0f} ms,"
        f" p99 {p99:.0f} ms, max {ordered[-1]:.0f} ms;"
        f" busy table {busy[0] - busy_before} transactions"
    )


def test_get_many_and_query_take_the_token(
    stack_config: FabricConfig, clients: list[FabricClient]
) -> None:
    with connect(stack_config) as conn:
        written = conn.execute(
            "UPDATE ryw_accounts SET version = version + 1 WHERE id IN (1, 2, 3)"
            " RETURNING id, version"
        ).fetchall()
        token = consistency_token(conn)
    expected = [{"id": key, "version": version} for key, version in sorted(written)]
    client = clients[0]
    assert client.get_many("ryw_accounts", [1, 2, 3], min_lsn=format_lsn(token)) == expected
    rows = client.query(
        "SELECT * FROM ryw_accounts WHERE id IN (1, 2, 3) ORDER BY id",
        row_factory="dict",
        min_lsn=token,
    )
    assert rows == expected


# -- latency on a busy and an idle partition ---------------------------------------------------


@pytest.mark.parametrize("table", ["ryw_busy", "ryw_idle"])
def test_min_lsn_latency(
    stack_config: FabricConfig, clients: list[FabricClient], busy: list[int], table: str
) -> None:
    """Sequential cycles on one table: on ryw_busy later changes of the same partition confirm
    the token; on ryw_idle nothing follows the write, and the committed source offset (moved by
    the connector's heartbeat) does."""
    rng = random.Random(table)
    took = []
    with connect(stack_config) as conn:
        for _ in range(15):
            key = rng.randint(1, ROWS)
            row = conn.execute(
                f"UPDATE {table} SET version = version + 1 WHERE id = %s RETURNING version", (key,)
            ).fetchone()
            assert row is not None
            token = consistency_token(conn)
            started = time.monotonic()
            seen = rng.choice(clients).get(table, key, min_lsn=token)
            took.append(time.monotonic() - started)
            assert seen is not None and seen["version"] >= row[0]
            if table == "ryw_idle":
                assert seen["version"] == row[0]
    print(
        f"\nmin_lsn lookup on {table}: median {statistics.median(took) * 1e3:.0f} ms,"
        f" max {max(took) * 1e3:.0f} ms over {len(took)}"
    )


# -- max_staleness -------------------------------------------------------------------------------


def test_max_staleness_on_an_idle_table(endpoints: list[str], clients: list[FabricClient]) -> None:
    """Nothing writes ryw_idle, yet the heartbeat keeps it known fresh within seconds."""
    for client in clients:
        assert client.get("ryw_idle", 5, max_staleness=8.0) is not None
    ages = []
    with FabricClient(endpoints, timeout_s=0.2) as client:
        for _ in range(15):
            with pytest.raises(TooStaleError) as caught:
                client.get("ryw_idle", 5, max_staleness=0.001)
            found = re.search(r"the database as of (\d+) ms ago", str(caught.value))
            assert found is not None, str(caught.value)
            ages.append(int(found.group(1)))
    assert max(ages) < 8000
    print(f"\nstaleness of an idle partition: {min(ages)}..{max(ages)} ms over {len(ages)}")


def test_max_staleness_too_tight_fails_saying_how_stale(endpoints: list[str]) -> None:
    with FabricClient(endpoints, timeout_s=1.0) as client:
        started = time.monotonic()
        with pytest.raises(TooStaleError) as caught:
            client.get("ryw_idle", 5, max_staleness=0.001)
        assert time.monotonic() - started < 1.5
    message = str(caught.value)
    assert "of public.ryw_idle has applied up to LSN" in message
    assert "staler than max_staleness 1 ms" in message


# -- errors --------------------------------------------------------------------------------------


def test_a_token_never_reached_is_deadline_exceeded_saying_how_far_behind(
    stack_config: FabricConfig, endpoints: list[str]
) -> None:
    with connect(stack_config) as conn:
        token = consistency_token(conn)
    future = token + 10**9
    with FabricClient(endpoints, timeout_s=1.0) as client:
        with pytest.raises(FabricTimeoutError) as caught:
            client.get("ryw_busy", 1, min_lsn=future)
        message = str(caught.value)
        assert "of public.ryw_busy has applied up to LSN" in message
        assert f"behind token {format_lsn(future)}" in message
        results = client.get_many_rows  # the batch path says the same, per lookup
        with pytest.raises(FabricTimeoutError, match="behind token"):
            results("ryw_busy", [1, 2], min_lsn=future)


def test_bad_tokens_are_refused(stack_config: FabricConfig, clients: list[FabricClient]) -> None:
    with pytest.raises(InvalidLsnError, match="is not an LSN"):
        clients[0].get("ryw_idle", 1, min_lsn="16-B374D848")
    conn = db.connect(stack_config.endpoints, autocommit=False)  # a transaction stays open
    try:
        conn.execute("UPDATE ryw_idle SET version = version WHERE id = 1")
        with pytest.raises(InvalidLsnError, match="commit first"):
            consistency_token(conn)
        conn.commit()
        assert consistency_token(conn) > 0
        assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    finally:
        conn.close()
