"""FabricClient for real: three fabric instances in-process (materializer + gRPC service each)
over the sample database, read through the client and compared with what psycopg returns.

Every key of users, items and bids reads back equal in type and value; get_many and scan return
exactly the source rows; the smart client never reaches a non-owner; ``query()`` returns what
psycopg returns for every accepted statement shape; changes are watched and resumed on another
instance; reads go on while an instance stops.
"""

from __future__ import annotations

import functools
import importlib.util
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from psycopg.rows import dict_row

from fabric import cli, db
from fabric.client import Change, FabricClient
from fabric.config import REPO_ROOT, FabricConfig
from fabric.errors import InvalidQueryError, UnsupportedQueryError
from fabric.serve.server import FabricServer
from fabric.stack.ports import free_ports
from tests.integration.test_type_fidelity import same

pytestmark = pytest.mark.integration

TIMEOUT_S = 90.0
POLL_S = 0.2
KEYS = {"users": ("id",), "items": ("id",), "bids": ("item_id", "bid_no")}
# The sizes test_cdc_pipeline loads: whichever module runs first, the data is the same.
SAMPLE = ["sample", "load", "--users", "40", "--items", "25", "--bids", "60"]
MIN_ROWS = 20

Row = dict[str, Any]


def eventually(check: Callable[[], str | None], what: str, timeout_s: float = TIMEOUT_S) -> None:
    """Poll ``check`` (None: satisfied, else what is still wrong) until it holds or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        problem = check()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: still {problem} after {timeout_s:.0f}s")
        time.sleep(POLL_S)


def source_rows(cfg: FabricConfig, table: str) -> list[Row]:
    order = ", ".join(KEYS[table])
    with db.connect(cfg.endpoints) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT * FROM public.{table} ORDER BY {order}").fetchall()


def key_of(table: str, row: Row) -> tuple[Any, ...]:
    return tuple(row[name] for name in KEYS[table])


def difference(expected: Sequence[Row | None], actual: Sequence[Row | None]) -> str | None:
    """None when both hold the same rows in the same order with the same types and values."""
    if len(expected) != len(actual):
        return f"{len(actual)} rows instead of {len(expected)}"
    for want, got in zip(expected, actual, strict=True):
        if want is None or got is None:
            if want is not got:
                return f"{got!r:.200} instead of {want!r:.200}"
            continue
        if list(want) != list(got):
            return f"columns {list(got)} instead of {list(want)}"
        for name, value in want.items():
            if not same(value, got[name]):
                return f"{name}={got[name]!r:.80} instead of {value!r:.80} in {want!r:.120}"
    return None


# -- the sample, three instances, clients --------------------------------------------------------


def ensure_sample(stack_env: dict[str, str], stack_config: FabricConfig) -> FabricConfig:
    """The sample loaded and the auction connector applied, whichever module ran first: loaded
    again (``--reset``) only when a table is missing or was emptied (test_cdc_pipeline
    truncates bids)."""
    with db.connect(stack_config.endpoints) as conn:
        exists = conn.execute("SELECT to_regclass('public.bids') IS NOT NULL").fetchone()
        counts = (
            conn.execute(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM items),"
                " (SELECT count(*) FROM bids)"
            ).fetchone()
            if exists == (True,)
            else None
        )
    if counts is None or min(int(str(n)) for n in counts) < MIN_ROWS:
        assert cli.main([*SAMPLE, "--reset"], environ=stack_env) == 0
    assert cli.main(["connectors", "apply"], environ=stack_env) == 0
    return stack_config


def delete_dead_letters(cfg: FabricConfig, group: str) -> None:
    """The dead-letter topic a test's consumer group made, if it made one."""
    admin = AdminClient({"bootstrap.servers": cfg.endpoints.kafka_bootstrap})
    if f"{group}.dead-letters" in admin.list_topics(timeout=10).topics:
        for future in admin.delete_topics([f"{group}.dead-letters"]).values():
            future.result(timeout=30)


@pytest.fixture(scope="module")
def sample(stack_env: dict[str, str], stack_config: FabricConfig) -> FabricConfig:
    return ensure_sample(stack_env, stack_config)


@dataclass
class Instances:
    servers: dict[str, FabricServer]
    group: str

    @property
    def endpoints(self) -> list[str]:
        return [s.endpoint for s in self.servers.values()]


def instance_config(
    cfg: FabricConfig, group: str, instance_id: str, state_dir: Path, port: int
) -> FabricConfig:
    """``cfg`` for one instance, as ``fabric serve --group --instance-id --state-dir --port``,
    with a forwarding port of its own (the default, ``port`` + 100, may be taken here)."""
    materializer = replace(
        cfg.materializer,
        group=group,
        dead_letter_topic=f"{group}.dead-letters",
        instance_id=instance_id,
        state_dir=state_dir,
        metrics_port=None,
    )
    (peer_port,) = free_ports(1)
    serve = replace(cfg.serve, port=port, peer_port=peer_port, handover_timeout_s=20.0)
    return replace(cfg, materializer=materializer, serve=serve)


@pytest.fixture(scope="module")
def instances(
    sample: FabricConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instances]:
    """Three instances of a group of this module's own, every partition ACTIVE, caught up."""
    group = f"it-client-{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("client-instances")
    servers: dict[str, FabricServer] = {}
    try:
        for instance_id, port in zip(("c1", "c2", "c3"), free_ports(3), strict=True):
            cfg = instance_config(sample, group, instance_id, folder / instance_id, port)
            server = FabricServer(cfg)
            server.start()
            servers[instance_id] = server
        found = Instances(servers, group)
        with FabricClient(found.endpoints, timeout_s=10.0) as client:
            eventually(lambda: _not_serving(client, set(servers)), "every partition ACTIVE")
            for table in KEYS:
                eventually(functools.partial(_behind, sample, client, table), f"{table} caught up")
        yield found
    finally:
        for server in servers.values():
            server.stop()
        delete_dead_letters(sample, group)


def _not_serving(client: FabricClient, instance_ids: set[str]) -> str | None:
    topology = client.topology()
    owners = {p.owner for t in topology.tables for p in t.partitions}
    if {t.table for t in topology.tables} != {f"public.{t}" for t in KEYS}:
        return f"tables {[t.table for t in topology.tables]}"
    if owners != instance_ids or not topology.all_active:
        states = [
            (t.table, p.partition, p.owner, p.state) for t in topology.tables for p in t.partitions
        ]
        return f"partitions {states}"
    return None


def _behind(cfg: FabricConfig, client: FabricClient, table: str) -> str | None:
    rows = source_rows(cfg, table)
    return difference(rows, client.get_many(table, [key_of(table, r) for r in rows]))


@pytest.fixture
def client(instances: Instances) -> Iterator[FabricClient]:
    with FabricClient(instances.endpoints, timeout_s=10.0) as smart:
        yield smart


@pytest.fixture
def conn(sample: FabricConfig) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(sample.endpoints) as connection:
        yield connection


# -- reads equal the source ------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(KEYS))
def test_every_key_reads_back_as_psycopg_returns_it(
    sample: FabricConfig, client: FabricClient, table: str
) -> None:
    rows = source_rows(sample, table)
    assert rows, f"the sample has no {table}"
    for row in rows:
        key = key_of(table, row)
        assert difference([row], [client.get(table, key)]) is None, key
        by_name = dict(zip(KEYS[table], key, strict=True))
        fabric_row = client.get_row(f"public.{table}", by_name)
        assert fabric_row is not None
        assert difference([row], [fabric_row.values]) is None
        freshness = fabric_row.freshness
        assert freshness.served_by == client.partition_of(table, key).owner
        assert freshness.lag_records == 0 and freshness.offset <= freshness.applied_offset
    assert client.stats.forwarded == 0


@pytest.mark.parametrize("table", list(KEYS))
def test_get_many_and_scan_return_exactly_the_source_rows(
    sample: FabricConfig, client: FabricClient, table: str
) -> None:
    rows = source_rows(sample, table)
    missing = (10**9,) * len(KEYS[table])
    keys = [missing, *(key_of(table, r) for r in rows), missing]
    assert difference([None, *rows, None], client.get_many(table, keys)) is None
    scanned = sorted(client.scan(table), key=lambda r: key_of(table, r))
    assert difference(rows, scanned) is None
    assert len(list(client.scan(table, limit=5))) == 5
    assert client.stats.forwarded == 0


def test_scan_of_a_key_prefix(sample: FabricConfig, client: FabricClient) -> None:
    rows = source_rows(sample, "bids")
    item_id = rows[0]["item_id"]
    expected = [r for r in rows if r["item_id"] == item_id]
    for prefix in ({"item_id": item_id}, item_id, [item_id]):
        scanned: list[Row] = list(client.scan("bids", prefix=prefix))
        scanned.sort(key=lambda r: r["bid_no"])
        assert difference(expected, scanned) is None


def test_only_a_client_that_does_not_route_reaches_non_owners(
    sample: FabricConfig, instances: Instances
) -> None:
    keys = [key_of("users", r) for r in source_rows(sample, "users")]
    for smart in (True, False):
        with FabricClient(instances.endpoints, timeout_s=10.0, smart=smart) as client:
            for key in keys:
                assert client.get("users", key) is not None
            client.get_many("users", keys)
            stats = client.stats
        if smart:
            assert stats.forwarded == 0
        else:
            assert stats.forwarded > 0, stats  # two calls in three reach a non-owner


# -- virtualized reads ---------------------------------------------------------------------------

# (statement, params): each runs on the fabric and on Postgres, and both must agree exactly.
SHAPES: list[tuple[str, Any]] = [
    ("SELECT * FROM users WHERE id = %s", [3]),
    ("SELECT * FROM users WHERE id = %s", [10**6]),
    ("select EMAIL, id from PUBLIC.USERS where ID = %(id)s;", {"id": 7}),
    ('SELECT "id", "status", reserve_price FROM "public"."items" WHERE "id" = 4', None),
    ("SELECT * FROM bids WHERE bid_no = %s AND item_id = %s", [1, 1]),
    ("SELECT * FROM bids WHERE item_id = %s AND bid_no = %s", [1, 10**6]),
    ("SELECT id, title FROM items WHERE id IN (%s, %s, %s, %s, %s)", [9, 2, 9, 10**6, None]),
    ("SELECT * FROM items WHERE id = ANY(%s)", [[12, 3, 3, 10**6, 1]]),
    ("SELECT id FROM users WHERE id IN (3, 1, '2') ORDER BY id DESC LIMIT 2", None),
    ("SELECT bid_no, amount FROM bids WHERE item_id = 1 AND bid_no = ANY(%s) ORDER BY bid_no DESC",
     [[1, 2, 3, 4]]),
    ("SELECT u.id AS user_id, u.email FROM users u WHERE u.id IN (%s, %s) ORDER BY user_id",
     [5, 4]),
    ("SELECT * FROM bids WHERE item_id IN (2, 1) AND bid_no IN (3, 1, 2) ORDER BY item_id DESC",
     None),
    ("SELECT * FROM users WHERE id = ANY(%s) ORDER BY id LIMIT %s", [[8, 6, 7], 2]),
    ("SELECT * FROM items WHERE id = ANY(%s)", [[]]),
]  # fmt: skip
UNORDERED = [sql for sql, _ in SHAPES if "ORDER BY" not in sql.upper()]


def postgres(
    conn: psycopg.Connection[Any], sql: str, params: Any, *, as_dicts: bool, index_scan: bool
) -> list[Any]:
    """The statement's rows from Postgres; with ``index_scan`` the planner may use no other
    access path, so rows without ORDER BY come in primary-key index order."""
    with conn.transaction():
        if index_scan:
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
        if as_dicts:
            return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
        return conn.execute(sql, params).fetchall()


# Statements whose ORDER BY leaves ties: Postgres orders them as its plan happens to (a backward
# index scan, or a sort of a forward one), so only the ORDER BY column's sequence is compared.
TIES = {
    "SELECT * FROM bids WHERE item_id IN (2, 1) AND bid_no IN (3, 1, 2) ORDER BY item_id DESC": 1
}


@pytest.mark.parametrize(("sql", "params"), SHAPES)
def test_query_returns_what_postgres_returns(
    client: FabricClient, conn: psycopg.Connection[Any], sql: str, params: Any
) -> None:
    for as_dicts in (False, True):
        expected = postgres(conn, sql, params, as_dicts=as_dicts, index_scan=True)
        actual = client.query(sql, params, row_factory=dict_row if as_dicts else None)
        assert len(actual) == len(expected)
        assert all(type(got) is type(want) for want, got in zip(expected, actual, strict=True))
        if as_dicts:
            expected = [list(row.items()) for row in expected]
            actual = [list(row.items()) for row in actual]
        if sql in TIES:
            column = TIES[sql]
            assert [row[column] for row in actual] == [row[column] for row in expected]
            assert all(row in actual for row in expected)
            continue
        for want, got in zip(expected, actual, strict=True):
            assert same(list(want), list(got)), (want, got)
        # Postgres's own plan may return another order without ORDER BY; the rows are the same.
        planned = postgres(conn, sql, params, as_dicts=False, index_scan=False)
        ours = client.query(sql, params)
        assert len(planned) == len(ours) and all(row in ours for row in planned)
    assert client.stats.forwarded == 0


def test_postgres_keeps_no_key_order_without_order_by(conn: psycopg.Connection[Any]) -> None:
    """Why the fabric's order (key order) is documented as the index-scan order only: a
    sequential scan returns the heap's order, which an UPDATE changes."""
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE t (id bigint PRIMARY KEY, v text) ON COMMIT DROP")
        conn.execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 5) g")
        conn.execute("UPDATE t SET v = 'w' WHERE id = 2")
        conn.execute("ANALYZE t")
        plan = [r[0] for r in conn.execute("EXPLAIN SELECT id FROM t WHERE id IN (4, 2, 1)")]
        rows = conn.execute("SELECT id FROM t WHERE id IN (4, 2, 1)").fetchall()
    assert plan[0].startswith("Seq Scan on t")
    assert rows == [(1,), (4,), (2,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM users WHERE id = 1",
        "SELECT * FROM users WHERE email = 'x'",
        "SELECT * FROM bids WHERE item_id = 1",
        "SELECT u.* FROM users u JOIN items i ON i.seller_id = u.id WHERE i.id = 1",
        "SELECT * FROM users WHERE id = 1 OR id = 2",
        "SELECT * FROM users WHERE id > 5 ORDER BY id LIMIT 3",
    ],
)
def test_other_statements_are_refused_or_run_on_the_fallback(
    client: FabricClient, conn: psycopg.Connection[Any], sql: str
) -> None:
    with pytest.raises(UnsupportedQueryError):
        client.query(sql)
    for factory in (None, dict_row):
        expected = postgres(conn, sql, None, as_dicts=factory is not None, index_scan=False)
        assert client.query(sql, row_factory=factory, fallback=conn) == expected


def test_a_column_that_does_not_exist_is_refused(client: FabricClient) -> None:
    with pytest.raises(InvalidQueryError):
        client.query("SELECT id, nickname FROM users WHERE id = %s", [10**6])


def test_the_example_service_reads_the_same_profile_from_either(
    client: FabricClient, conn: psycopg.Connection[Any]
) -> None:
    example = _load_example()
    for user_id in (1, 2, 10**6):
        assert example.user_profile(client, user_id) == example.user_profile(conn, user_id)
    assert example.recent_bids(client, conn, 1) == postgres(
        conn, example.RECENT_BIDS, (1,), as_dicts=True, index_scan=False
    )


def _load_example() -> ModuleType:
    path = REPO_ROOT / "examples" / "virtualized_reads.py"
    spec = importlib.util.spec_from_file_location("virtualized_reads", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- watch ---------------------------------------------------------------------------------------


class Watcher:
    """A watch consumed on a thread of its own, its changes on a queue."""

    def __init__(self, changes: Iterator[Change]) -> None:
        self.queue: queue.Queue[Change | BaseException] = queue.Queue()
        self._changes = changes
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for change in self._changes:
                self.queue.put(change)
        except BaseException as exc:
            self.queue.put(exc)

    def next(self, timeout_s: float = 5.0) -> Change | None:
        try:
            item = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item


def test_watch_a_key_then_resume_on_another_instance(
    sample: FabricConfig, instances: Instances, conn: psycopg.Connection[Any]
) -> None:
    user_id = 900_000 + uuid.uuid4().int % 90_000
    insert = "INSERT INTO users (id, email, external_id, display_name) VALUES (%s, %s, %s, 'w0')"
    conn.execute(insert, (user_id, f"watch.{user_id}@example.com", uuid.uuid4()))
    first, second = instances.endpoints[0], instances.endpoints[1]
    try:
        with FabricClient([first], timeout_s=10.0) as client:
            watcher = Watcher(client.watch("users", key=user_id, idle_timeout_s=60))
            # The watch starts at the topic's end once its consumer is assigned: change the row
            # until a change arrives, so none is made before the watch is listening.
            change = None
            for attempt in range(1, 60):
                conn.execute("UPDATE users SET display_name = %s WHERE id = %s",
                             (f"w{attempt}", user_id))  # fmt: skip
                change = watcher.next(timeout_s=1.0)
                if change is not None:
                    break
            assert change is not None and change.kind == "upsert"
            assert change.key == {"id": user_id} and change.row is not None
            assert change.row["display_name"].startswith("w")
            assert change.lsn > 0 and change.commit_time_ms > 0
            while (later := watcher.next(timeout_s=0.5)) is not None:
                change = later  # the other updates made before the first arrived
        assert watcher.next(timeout_s=0.5) is None  # closing the client ended the watch
        token = change.resume_token
        conn.execute("DELETE FROM users WHERE id = %s", (user_id,))
        with FabricClient([second], timeout_s=10.0) as other:
            resumed = Watcher(other.watch("users", key=user_id, resume_token=token))
            deleted = resumed.next(timeout_s=30.0)
        assert deleted is not None
        assert (deleted.kind, deleted.key, deleted.row) == ("delete", {"id": user_id}, None)
    finally:
        conn.execute("DELETE FROM users WHERE id = %s", (user_id,))


# -- an instance stops: reads go on --------------------------------------------------------------


def test_reads_go_on_while_an_instance_stops(sample: FabricConfig, instances: Instances) -> None:
    """Last in the module: it stops c3 (its partitions move to c1 and c2)."""
    rows = {t: source_rows(sample, t) for t in KEYS}
    keys = {t: [key_of(t, r) for r in rows[t]] for t in KEYS}
    stopping = instances.servers["c3"]
    stopper = threading.Thread(target=stopping.stop)
    with FabricClient(instances.endpoints, timeout_s=15.0) as client:
        client.topology()
        stopper.start()
        rounds = 0
        while stopper.is_alive() or rounds < 3:
            for table in KEYS:
                assert difference(rows[table], client.get_many(table, keys[table])) is None
            rounds += 1
        stopper.join()
        eventually(lambda: _not_serving(client, {"c1", "c2"}), "c3's partitions moved")
        for table in KEYS:
            assert difference(rows[table], client.get_many(table, keys[table])) is None
        before = client.stats.forwarded
        for table in KEYS:
            client.get_many(table, keys[table])
        assert client.stats.forwarded == before
