"""The materializer for real: two instances of one consumer group, in-process on threads, fed by a
connector of this module's own (own schema, topic prefix, slot and publication).

Whatever the change (snapshot, insert, update, delete, key change, TRUNCATE, unchanged TOAST,
ALTER TABLE, bad records, a table added later), the rows the two instances hold together, read
partition by partition through whichever instance owns the partition, equal what psycopg returns
for ``SELECT *`` on the source table, type and value.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg import sql
from psycopg.rows import dict_row

from fabric import cli, db
from fabric.catalog import Catalog
from fabric.config import REPO_ROOT, FabricConfig
from fabric.core.keys import KeyCodec
from fabric.errors import FabricError, InvalidKeyError
from fabric.materialize import deadletters
from fabric.materialize.instance import Materializer
from fabric.materialize.status import PartitionStatus
from fabric.materialize.tables import LocalTables, NotLocalError, Row, decode_image
from fabric.state.options import MiB, StoreOptions
from fabric.state.store import PartitionStore
from tests.integration.test_type_fidelity import DDL as FIDELITY_DDL
from tests.integration.test_type_fidelity import ROWS as FIDELITY_ROWS
from tests.integration.test_type_fidelity import same

pytestmark = pytest.mark.integration

PARTITIONS = 3  # FABRIC_TOPIC_PARTITIONS in the session's environment
TIMEOUT_S = 90.0
POLL_S = 0.2
STORE_OPTIONS = StoreOptions(write_buffer_bytes=4 * MiB, block_cache_bytes=16 * MiB)
# psycopg does not know an enum's array type and returns its text; the fabric returns the labels.
EVERYTHING_CASTS = {"a_mood": "text[]"}

# 3,200 md5 digests: 100 kB that compression cannot bring under the TOAST threshold.
BIG = "(SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 3200) i)"

TABLES_DDL = f"""
CREATE TABLE @.items (id integer PRIMARY KEY, name text NOT NULL, qty integer);
INSERT INTO @.items SELECT g, 'item ' || g, g * 10 FROM generate_series(1, 12) g;
CREATE TABLE @.trunc (id integer PRIMARY KEY, v text);
INSERT INTO @.trunc SELECT g, 'before ' || g FROM generate_series(1, 9) g;
CREATE TABLE @.toast (id integer PRIMARY KEY, big text, n integer);
INSERT INTO @.toast SELECT g, {BIG}, 0 FROM generate_series(1, 4) g;
CREATE TABLE @.shape (id integer PRIMARY KEY, a text, b integer);
INSERT INTO @.shape SELECT g, 'a' || g, g FROM generate_series(1, 6) g;
CREATE TABLE @.dlq (id integer PRIMARY KEY, v text);
INSERT INTO @.dlq SELECT g, 'v' || g FROM generate_series(1, 6) g;
CREATE TABLE @.replay (id integer PRIMARY KEY, v text, n integer);
INSERT INTO @.replay SELECT g, 'v' || g, g FROM generate_series(1, 9) g;
CREATE TABLE @.k_composite (a text, b integer, c date, v text, PRIMARY KEY (c, b, a));
INSERT INTO @.k_composite VALUES ('x', 1, '2020-01-01', 'one'), ('x', 2, '2020-01-01', 'two'),
  ('y', 1, '1969-07-20', 'moon'), (E'é"\\\\', -5, '0001-01-01', 'odd');
"""

_TEXTS = (
    "'plain'",
    "''",
    "'Ünïcode ☃'",
    "'😀 emoji'",
    """'say "hi"'""",
    "''''",
    r"E'back\\slash'",
    r"E'\t\n\x01'",
    r"E'\x7f/\u2028\x1f'",
)
# Key type → (table suffix, SQL literals of its rows' keys).
KEY_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "smallint": ("smallint", ("-32768", "0", "7", "32767")),
    "integer": ("integer", ("-2147483648", "0", "1", "42", "2147483647")),
    "bigint": ("bigint", ("-9223372036854775808", "0", "1", "9223372036854775807")),
    "numeric_scaled": ("numeric(12,2)", ("1.5", "-0.01", "0", "1234567890.12", "'NaN'")),
    "numeric": (
        "numeric",
        (
            "0",
            "1.50",
            "-0.001",
            "123456789012345678901234567890.123",
            "0.00000000000000000001",
            "1e20",
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
        ),
    ),
    "double": (
        "double precision",
        (
            "-0.0",
            "1.5",
            "0.1",
            "1e-5",
            "1e7",
            "123456789.125",
            "5e-324",
            "1.7976931348623157e308",
            "1e23",
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
        ),
    ),
    "text": ("text", _TEXTS),
    "varchar": ("varchar(10)", ("'abc'", "''", "'Ünï'", r"E'a\tb'", "'\"q\"'")),
    "char": ("char(5)", ("'ab'", "''", "'abcde'", "'é'")),
    "boolean": ("boolean", ("true", "false")),
    "uuid": (
        "uuid",
        (
            "'00000000-0000-0000-0000-000000000000'",
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
            "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
        ),
    ),
    "date": ("date", ("'1969-07-20'", "'0001-01-01'", "'1970-01-01'", "'9999-12-31'")),
    "time": ("time", ("'00:00:00'", "'23:59:59.999999'", "'12:34:56.789'", "'00:00:00.000001'")),
    "timestamp": (
        "timestamp",
        (
            "'1969-12-31 23:59:59.123456'",
            "'0001-01-01 00:00:00'",
            "'2020-02-29 12:00:00'",
            "'9999-12-31 23:59:59.999999'",
        ),
    ),
    "timestamptz": (
        "timestamptz",
        (
            "'2200-01-01 00:00:00.5+05:30'",
            "'1970-01-01 00:00:00+00'",
            "'1850-01-01 00:00:00-03'",
            "'2020-06-01 12:00:00.123456+02'",
        ),
    ),
    "timestamptz3": ("timestamptz(3)", ("'2020-06-01 12:00:00.1+02'", "'1970-01-01 00:00:00Z'")),
    "bytea": ("bytea", (r"'\x00ff10'", r"'\x'", r"'\x01'", r"'\xdeadbeef'")),
    "enum": ("@.mood", ("'sad'", "'ok'", "'happy ☺'")),
}
KEY_TABLES = (*(f"k_{name}" for name in KEY_TYPES), "k_composite")
CAPTURED = ("items", "trunc", "toast", "shape", "dlq", "replay", "everything", *KEY_TABLES)

Key = tuple[str, ...]


# -- the source: a schema of tables and the connector capturing them ---------------------------


@dataclass
class Source:
    cfg: FabricConfig
    env: dict[str, str]
    name: str  # the schema, the topic prefix, the slot and the publication
    spec: Path

    def table(self, name: str) -> str:
        return f"{self.name}.{name}"

    def topic(self, name: str) -> str:
        return f"{self.name}.{self.name}.{name}"

    def execute(self, *statements: str) -> None:
        """Run ``statements`` in one transaction; ``@`` stands for the schema."""
        with db.connect(self.cfg.endpoints, autocommit=False) as conn:
            for statement in statements:
                conn.execute(statement.replace("@.", f"{self.name}."))

    def apply(self, tables: Sequence[str]) -> None:
        spec = json.loads((REPO_ROOT / "connectors" / "auction.json").read_text())
        spec["name"] = self.name.replace("_", "-")
        spec["config"].update(
            {
                "topic.prefix": self.name,
                "slot.name": self.name,
                "publication.name": self.name,
                "table.include.list": ",".join(self.table(t) for t in tables),
                "message.prefix.include.list": rf"cdc-fabric\.truncate\.{self.name}\..*",
            }
        )
        self.spec.write_text(json.dumps(spec, indent=2))
        assert cli.main(["connectors", "apply", str(self.spec)], environ=self.env) == 0


def _key_tables_ddl() -> list[str]:
    statements = []
    for name, (pg_type, literals) in KEY_TYPES.items():
        statements.append(f"CREATE TABLE @.k_{name} (k {pg_type} PRIMARY KEY, v text)")
        values = ", ".join(f"({lit}, 'row {i}')" for i, lit in enumerate(literals))
        statements.append(f"INSERT INTO @.k_{name} VALUES {values}")
    return statements


@pytest.fixture(scope="module")
def source(
    stack_env: dict[str, str], stack_config: FabricConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Source]:
    """Every table of this module, filled and captured by one connector; retired at the end."""
    name = f"it_mat_{uuid.uuid4().hex[:8]}"
    src = Source(stack_config, stack_env, name, tmp_path_factory.mktemp(name) / "spec.json")
    src.execute(
        FIDELITY_DDL.replace("fidelity", name),
        FIDELITY_ROWS.replace("fidelity", name),
        TABLES_DDL,
        *_key_tables_ddl(),
    )
    src.apply(CAPTURED)
    try:
        yield src
    finally:
        cli.main(["connectors", "delete", "--drop-slot", str(src.spec)], environ=stack_env)
        admin = AdminClient({"bootstrap.servers": stack_config.endpoints.kafka_bootstrap})
        doomed = [
            t
            for t in admin.list_topics(timeout=10).topics
            if t.startswith(f"{name}.") or t == f"__debezium-heartbeat.{name}"
        ]
        for future in admin.delete_topics(doomed).values() if doomed else []:
            future.result(timeout=30)
        src.execute(f"DROP SCHEMA {name} CASCADE")


# -- materializer instances on threads ----------------------------------------------------------


@dataclass
class Member:
    """One materializer instance running on a thread, with its read API."""

    materializer: Materializer
    tables: LocalTables
    catalog: Catalog
    stop: threading.Event
    thread: threading.Thread
    failures: list[BaseException] = field(default_factory=list)

    @property
    def instance_id(self) -> str:
        return self.materializer.settings.instance_id

    def statuses(self, topic: str) -> list[PartitionStatus]:
        return [p for p in self.materializer.status().partitions if p.topic == topic]


def dead_letter_topic(src: Source, group: str) -> str:
    # One name segment after the prefix: the table topic pattern (prefix.schema.table) skips it.
    return f"{src.name}.{group}-dead-letters"


def start_member(src: Source, group: str, instance_id: str, state_dir: Path) -> Member:
    """An instance of group ``group`` (of this module's prefix) on a thread of its own."""
    settings = dataclasses.replace(
        src.cfg.materializer,
        group=f"{src.name}.{group}",
        instance_id=instance_id,
        state_dir=state_dir,
        topic_prefix=src.name,
        dead_letter_topic=dead_letter_topic(src, group),
        metrics_port=None,
    )
    catalog = Catalog(lambda: db.connect(src.cfg.endpoints))
    materializer = Materializer(
        settings, src.cfg.endpoints.kafka_bootstrap, catalog.codec, STORE_OPTIONS
    )
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            materializer.run(stop)
        except BaseException as exc:
            failures.append(exc)
            raise

    thread = threading.Thread(target=run, name=f"materializer-{instance_id}", daemon=True)
    member = Member(
        materializer, LocalTables(materializer, catalog), catalog, stop, thread, failures
    )
    thread.start()
    return member


def stop_member(member: Member) -> None:
    member.stop.set()
    member.thread.join(timeout=30)
    assert not member.thread.is_alive(), f"{member.instance_id} did not stop within 30s"
    assert member.failures == [], f"{member.instance_id} failed: {member.failures}"


@pytest.fixture(scope="module")
def pair(source: Source, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    """Two instances of one group, sharing the partitions of every table topic."""
    folder = tmp_path_factory.mktemp("pair")
    members: list[Member] = []
    try:
        for instance in ("a", "b"):
            members.append(start_member(source, "pair", instance, folder / instance))
        yield members
    finally:
        for member in members:
            stop_member(member)


# -- reading both sides and waiting until they agree -------------------------------------------


def eventually(check: Callable[[], str | None], what: str, timeout_s: float = TIMEOUT_S) -> None:
    """Poll ``check`` (None: satisfied, else what is still wrong) until it holds or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        problem = check()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: after {timeout_s:.0f}s still {problem}")
        time.sleep(POLL_S)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:100]}... ({len(text)} chars)"


def key_of(values: Mapping[str, Any], columns: Sequence[str]) -> Key:
    """A row's primary key as a dict key: NaN equals NaN, -0.0 differs from 0.0, and a
    timestamptz is the same instant whichever zone it is shown in."""
    return tuple(repr(_utc(values[c])) for c in columns)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


def source_rows(
    src: Source, table: str, key: Sequence[str], casts: Mapping[str, str] | None = None
) -> dict[Key, dict[str, Any]]:
    """``SELECT *`` of ``table`` as psycopg returns it, by primary key."""
    casts = casts or {}
    ident = sql.Identifier(*table.split("."))
    with db.connect(src.cfg.endpoints) as conn:
        # The fabric's timestamptz values are UTC; equality must not depend on the session zone.
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        described = conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(ident)).description
        assert described is not None
        columns = [
            sql.SQL("{}::{} AS {}").format(
                sql.Identifier(d.name), sql.SQL(casts[d.name]), sql.Identifier(d.name)
            )
            if d.name in casts
            else sql.Identifier(d.name)
            for d in described
        ]
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(columns), ident)
        rows = conn.cursor(row_factory=dict_row).execute(query).fetchall()
    return {key_of(row, key): row for row in rows}


def fabric_rows(members: Sequence[Member], table: str) -> dict[Key, Row] | str:
    """Every row of ``table``, each partition scanned through the member that serves it; or why
    that is not possible right now."""
    key = members[0].catalog.schema(table).primary_key
    rows: dict[Key, Row] = {}
    for partition in range(PARTITIONS):
        for member in members:
            try:
                found = list(member.tables.scan(table, partition))
            except NotLocalError:
                continue
            except FabricError as exc:
                return f"partition {partition} unreadable on {member.instance_id}: {exc!r}"
            rows.update((key_of(row.values, key), row) for row in found)
            break
        else:
            return f"no instance serves partition {partition}"
    return rows


def serving_problem(members: Sequence[Member], topic: str) -> str | None:
    """Unless every partition of ``topic`` is ACTIVE with lag 0 on exactly one member, why."""
    for member in members:
        if not member.thread.is_alive():
            pytest.fail(f"instance {member.instance_id} stopped: {member.failures}")
    owners: dict[int, list[tuple[str, PartitionStatus]]] = {p: [] for p in range(PARTITIONS)}
    for member in members:
        for status in member.statuses(topic):
            owners[status.partition].append((member.instance_id, status))
    for partition, found in owners.items():
        if len(found) != 1:
            return f"{topic}[{partition}] is held by {[i for i, _ in found]}"
        instance, status = found[0]
        if status.state != "ACTIVE" or status.lag:
            return f"{topic}[{partition}] is {status.state} lag={status.lag} on {instance}"
    return None


def rows_difference(
    expected: Mapping[Key, Mapping[str, Any]], got: Mapping[Key, Row]
) -> str | None:
    missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    if missing or extra:
        return f"keys missing from the fabric {missing}, keys only in the fabric {extra}"
    for key, want in expected.items():
        have = got[key].values
        if list(have) != list(want):
            return f"row {key} has columns {list(have)}, the source {list(want)}"
        differ = {
            name: f"{_short(have[name])} != {_short(want[name])}"
            for name in want
            if not same(have[name], want[name])
        }
        if differ:
            return f"row {key} differs (fabric != source): {differ}"
    return None


def converge(
    members: Sequence[Member], src: Source, name: str, casts: Mapping[str, str] | None = None
) -> dict[Key, Row]:
    """Wait until ``members`` serve every partition of table ``name`` caught up, and hold exactly
    the source's rows; return them."""
    table = src.table(name)
    result: dict[Key, Row] = {}

    def check() -> str | None:
        problem = serving_problem(members, src.topic(name))
        if problem is not None:
            return problem
        key = members[0].catalog.schema(table).primary_key
        got = fabric_rows(members, table)
        if isinstance(got, str):
            return got
        problem = rows_difference(source_rows(src, table, key, casts), got)
        if problem is None:
            result.update(got)
        return problem

    eventually(check, f"{table} in the fabric equals the source")
    return result


def owner(members: Sequence[Member], topic: str, partition: int) -> Member:
    (found,) = [m for m in members if any(s.partition == partition for s in m.statuses(topic))]
    return found


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def document(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


def read_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> list[Record]:
    """Every record of ``topic`` up to its end offsets as they are now."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"it-mat-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        ends: dict[int, int] = {}
        assignment = []
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        records: list[Record] = []
        deadline = time.monotonic() + TIMEOUT_S
        while ends:
            assert time.monotonic() < deadline, f"{topic}: not read to its end in {TIMEOUT_S}s"
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            raw = msg.headers() or []
            pairs = raw.items() if isinstance(raw, dict) else raw
            headers = {k: v for k, v in pairs if isinstance(v, bytes)}
            records.append(Record(partition, offset, msg.key(), msg.value(), headers))
            if offset + 1 >= ends.get(partition, 0):
                ends.pop(partition, None)
        return records
    finally:
        consumer.close()


# -- the tests ----------------------------------------------------------------------------------


def test_two_instances_share_the_partitions_and_follow_every_kind_of_change(
    source: Source, pair: list[Member]
) -> None:
    topics = {source.topic(t) for t in CAPTURED}

    def shared() -> str | None:
        for topic in sorted(topics):
            problem = serving_problem(pair, topic)
            if problem is not None:
                return problem
        idle = [m.instance_id for m in pair if not m.materializer.status().partitions]
        return f"instances {idle} hold no partition" if idle else None

    eventually(shared, "every partition of every table topic served by one instance")
    owned = [
        {(s.topic, s.partition) for s in m.materializer.status().partitions if s.topic in topics}
        for m in pair
    ]
    assert all(owned), f"an instance owns nothing: {owned}"
    assert owned[0].isdisjoint(owned[1])
    assert owned[0] | owned[1] == {(t, p) for t in topics for p in range(PARTITIONS)}

    snapshot = converge(pair, source, "items")
    assert len(snapshot) == 12
    source.execute(
        "INSERT INTO @.items VALUES (100, 'new', 1), (101, 'new', 2), (102, 'gone soon', 3)",
        "UPDATE @.items SET qty = qty + 1, name = 'upd ☃' WHERE id IN (1, 2, 100)",
        "DELETE FROM @.items WHERE id IN (3, 4)",
    )
    source.execute("DELETE FROM @.items WHERE id = 102")
    source.execute("UPDATE @.items SET id = 500, name = 'moved' WHERE id = 5")  # a key change
    source.execute("DELETE FROM @.items WHERE id = 6", "INSERT INTO @.items VALUES (6, 'back', 6)")
    rows = converge(pair, source, "items")
    present = {int(k[0]) for k in rows}
    assert {3, 4, 5, 102}.isdisjoint(present) and {6, 100, 101, 500} <= present
    assert rows[("500",)].values == {"id": 500, "name": "moved", "qty": 50}

    # Later changes elsewhere in the topics: the deleted rows stay deleted (tombstones are no-ops).
    source.execute("UPDATE @.items SET qty = -1 WHERE id IN (7, 8, 9, 10, 11, 12)")
    rows = converge(pair, source, "items")
    assert {3, 4, 5, 102}.isdisjoint({int(k[0]) for k in rows})


def test_truncate_empties_every_partition_and_later_rows_stay(
    source: Source, pair: list[Member]
) -> None:
    assert len(converge(pair, source, "trunc")) == 9
    source.execute("TRUNCATE @.trunc")
    assert converge(pair, source, "trunc") == {}
    # Rows written before the truncate in its own transaction go with it; rows after it stay.
    source.execute(
        "INSERT INTO @.trunc SELECT g, 'doomed' FROM generate_series(1, 6) g",
        "TRUNCATE @.trunc",
        "INSERT INTO @.trunc SELECT g, 'after' FROM generate_series(4, 12) g",
    )
    rows = converge(pair, source, "trunc")
    assert sorted(int(k[0]) for k in rows) == list(range(4, 13))
    source.execute("INSERT INTO @.trunc VALUES (100, 'later')")
    assert len(converge(pair, source, "trunc")) == 10


def test_an_unchanged_toast_value_keeps_its_stored_value(
    source: Source, pair: list[Member]
) -> None:
    converge(pair, source, "toast")
    source.execute(f"INSERT INTO @.toast SELECT g, {BIG}, 0 FROM generate_series(5, 5) g")
    source.execute("UPDATE @.toast SET n = n + 1")
    source.execute("UPDATE @.toast SET n = n + 1 WHERE id IN (1, 5)")
    rows = converge(pair, source, "toast")
    assert {len(r.values["big"]) for r in rows.values()} == {3200 * 32}
    assert {r.values["n"] for r in rows.values()} == {1, 2}
    unresolved = [s for m in pair for s in m.statuses(source.topic("toast")) if s.unresolved_toast]
    assert unresolved == []
    # The premise: Debezium did send the placeholder instead of the unchanged value.
    updates = [
        r.document()
        for r in read_topic(source.cfg.endpoints.kafka_bootstrap, source.topic("toast"))
        if r.value is not None and r.document()["op"] == "u"
    ]
    assert len(updates) == 7
    assert {u["after"]["big"] for u in updates} == {"__debezium_unavailable_value"}


def test_added_and_dropped_columns_show_as_postgres_shows_them(
    source: Source, pair: list[Member]
) -> None:
    converge(pair, source, "shape")
    source.execute("ALTER TABLE @.shape ADD COLUMN c text")
    source.execute(
        "INSERT INTO @.shape VALUES (7, 'a7', 7, 'c7')", "UPDATE @.shape SET a = 'x' WHERE id = 1"
    )
    rows = converge(pair, source, "shape")
    assert rows[("2",)].values == {"id": 2, "a": "a2", "b": 2, "c": None}
    assert rows[("7",)].values == {"id": 7, "a": "a7", "b": 7, "c": "c7"}
    source.execute("ALTER TABLE @.shape DROP COLUMN b")
    source.execute(
        "INSERT INTO @.shape VALUES (8, 'a8', 'c8')", "UPDATE @.shape SET c = 'y' WHERE id = 3"
    )
    rows = converge(pair, source, "shape")
    assert rows[("2",)].values == {"id": 2, "a": "a2", "c": None}
    assert rows[("8",)].values == {"id": 8, "a": "a8", "c": "c8"}
    statuses = [s for m in pair for s in m.statuses(source.topic("shape"))]
    assert [s.dead_letters for s in statuses] == [0] * PARTITIONS


def test_an_instance_started_from_an_old_copy_of_its_state_catches_up(
    source: Source, tmp_path: Path
) -> None:
    group, state, old = "replay", tmp_path / "state", tmp_path / "old"
    topic = source.topic("replay")
    member = start_member(source, group, "r", state)
    try:
        converge([member], source, "replay")
    finally:
        stop_member(member)
    shutil.copytree(state, old)

    member = start_member(source, group, "r", state)
    try:
        source.execute(
            "UPDATE @.replay SET v = 'u1', n = n + 100 WHERE id <= 3",
            "DELETE FROM @.replay WHERE id IN (4, 5)",
            "INSERT INTO @.replay VALUES (10, 'c', 0), (11, 'c', 0)",
        )
        source.execute("UPDATE @.replay SET id = 600 WHERE id = 6")
        converge([member], source, "replay")
        source.execute(
            "UPDATE @.replay SET v = 'u2' WHERE id IN (1, 7)",
            "TRUNCATE @.replay",
            "INSERT INTO @.replay VALUES (1, 'reborn', 1), (4, 'back', 4), (200, 'new', 0)",
        )
        source.execute(
            "UPDATE @.replay SET id = 201 WHERE id = 200", "DELETE FROM @.replay WHERE id = 4"
        )
        converge([member], source, "replay")
    finally:
        stop_member(member)

    resume_at = {}
    for partition in range(PARTITIONS):
        with PartitionStore.open(old / topic / str(partition), STORE_OPTIONS) as store:
            applied = store.applied_offset()
        resume_at[partition] = 0 if applied is None else applied + 1
    assert any(resume_at.values()), "the old copy holds no rows of the table"
    member = start_member(source, group, "r", old)
    try:
        rows = converge([member], source, "replay")
        statuses = {s.partition: s for s in member.statuses(topic)}
        assert {p: s.end_offset - s.restore_total for p, s in statuses.items()} == resume_at
    finally:
        stop_member(member)
    assert sorted(int(k[0]) for k in rows) == [1, 201]


def test_every_type_reads_back_through_the_store_as_psycopg_returns_it(
    source: Source, pair: list[Member]
) -> None:
    rows = converge(pair, source, "everything", EVERYTHING_CASTS)
    assert sorted(int(k[0]) for k in rows) == [1, 2, 3, 4, 5]
    source.execute(
        "CREATE TEMP TABLE copied ON COMMIT DROP AS SELECT * FROM @.everything",
        "UPDATE copied SET id = id + 10",
        "INSERT INTO @.everything SELECT * FROM copied",
        "UPDATE @.everything SET c_numeric = c_numeric * 2, c_interval = '-3 days',"
        " a_text = a_text || ARRAY['ü'], c_jsonb = '{\"z\": [1.5e300]}',"
        " c_timestamptz = '1850-01-01 00:00:00-03' WHERE id = 1",
    )
    rows = converge(pair, source, "everything", EVERYTHING_CASTS)
    assert sorted(int(k[0]) for k in rows) == [1, 2, 3, 4, 5, 11, 12, 13, 14, 15]
    nulls = rows[("3", "'k'")].values
    assert {k: v for k, v in nulls.items() if v is not None} == {"c_extra_key": "k", "id": 3}


def test_every_key_type_routes_lookups_to_the_partition_connect_chose(
    source: Source, pair: list[Member]
) -> None:
    problems = [p for name in KEY_TABLES for p in _routing_problems(source, pair, name)]
    assert problems == [], "\n".join(problems)
    for member in pair:
        checked = sum(
            s.routing_checked
            for s in member.materializer.status().partitions
            if s.table.removeprefix(f"{source.name}.") in KEY_TABLES
        )
        assert checked > 0, member.instance_id


def _routing_problems(src: Source, members: Sequence[Member], name: str) -> list[str]:
    """Where the key table ``name`` does not route: Connect's key bytes that the codec does not
    rebuild, rows a lookup does not find, and the instances' self-check counts."""
    table, topic = src.table(name), src.topic(name)
    converge(members, src, name)
    catalog = members[0].catalog
    codec = KeyCodec(catalog.schema(table))
    problems = []
    for record in read_topic(src.cfg.endpoints.kafka_bootstrap, topic):
        if record.value is None:
            continue
        after = json.dumps(record.document()["after"]).encode()
        values = decode_image(catalog, table, after)
        try:
            rebuilt: bytes | str = codec.encode({c: values[c] for c in codec.columns})
        except InvalidKeyError as exc:
            rebuilt = f"nothing ({exc})"
        if rebuilt != record.key:
            problems.append(f"{table}: Connect wrote {record.key!r}, KeyCodec built {rebuilt!r}")
    for row in source_rows(src, table, codec.columns).values():
        lookup = {c: row[c] for c in codec.columns}
        try:
            meta = members[0].tables.key_metadata(table, lookup)
            found = owner(members, topic, meta.partition).tables.get(table, lookup)
        except InvalidKeyError as exc:
            problems.append(f"{table}: {lookup} cannot be looked up: {exc}")
            continue
        if found is None or rows_difference({(): row}, {(): found}) is not None:
            problems.append(f"{table}: {lookup} not found on partition {meta.partition}")
    statuses = [s for m in members for s in m.statuses(topic)]
    if any(s.routing_mismatches for s in statuses) or not any(s.routing_checked for s in statuses):
        counts = [(s.partition, s.routing_checked, s.routing_mismatches) for s in statuses]
        problems.append(f"{table}: (partition, routing checked, mismatches) {counts}")
    return problems


def test_bad_records_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    source: Source, pair: list[Member]
) -> None:
    topic = source.topic("dlq")
    converge(pair, source, "dlq")
    partition = 1
    serving = owner(pair, topic, partition)
    dead_before = sum(s.dead_letters for s in serving.statuses(topic))
    marker = {
        "op": "m",
        "source": {"lsn": 1},
        "message": {"prefix": f"cdc-fabric.truncate.{source.name}.dlq", "content": ""},
    }
    bad: list[tuple[bytes, bytes, str]] = [
        (b'{"id":-1}', b"\xff\xfe not json", "value is not JSON: "),
        (b'{"id":-2}', b"[]", "value is a JSON list, not an object"),
        (b'{"id":-3}', b'{"op":"c"}', "no 'source' object"),
        (b'{"id":-4}', json.dumps(marker).encode(), "truncate marker on a table topic"),
    ]
    producer = Producer({"bootstrap.servers": source.cfg.endpoints.kafka_bootstrap})
    delivered: list[Message] = []
    refused: list[KafkaError] = []

    def report(error: KafkaError | None, msg: Message) -> None:
        if error is None:
            delivered.append(msg)
        else:
            refused.append(error)

    for key, value, _ in bad:
        producer.produce(topic, value=value, key=key, partition=partition, on_delivery=report)
        producer.flush(30)
    assert [m.key() for m in delivered] == [k for k, _, _ in bad]
    # A compacted topic refuses a record without a key: it never reaches the fabric.
    producer.produce(topic, value=b'{"op":"c"}', partition=partition, on_delivery=report)
    producer.flush(30)
    assert [e.code() for e in refused] == [KafkaError.INVALID_RECORD]
    source.execute("INSERT INTO @.dlq SELECT g, 'after' FROM generate_series(100, 110) g")
    source.execute("UPDATE @.dlq SET v = 'u' WHERE id < 4")
    converge(pair, source, "dlq")

    letters = read_topic(source.cfg.endpoints.kafka_bootstrap, dead_letter_topic(source, "pair"), 1)
    assert [(r.key, r.value) for r in letters] == [(k, v) for k, v, _ in bad]
    for letter, sent, (_, _, reason) in zip(letters, delivered, bad, strict=True):
        headers = dict(letter.headers)
        assert headers[deadletters.REASON].decode().startswith(reason)
        assert {k: v for k, v in headers.items() if k != deadletters.REASON} == {
            deadletters.SOURCE_TOPIC: topic.encode(),
            deadletters.SOURCE_PARTITION: str(partition).encode(),
            deadletters.SOURCE_OFFSET: str(sent.offset()).encode(),
            deadletters.INSTANCE: serving.instance_id.encode(),
        }
    assert sum(s.dead_letters for s in serving.statuses(topic)) - dead_before == 4
    assert all(m.thread.is_alive() for m in pair)


def test_a_table_added_to_the_connector_is_picked_up_without_a_restart(
    source: Source, pair: list[Member]
) -> None:
    source.execute("CREATE TABLE @.late (id bigint PRIMARY KEY, v text)")
    source.apply([*CAPTURED, "late"])

    def published() -> str | None:
        with db.connect(source.cfg.endpoints) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s"
                " AND tablename = 'late'",
                [source.name, source.name],
            ).fetchone()
        # `connectors apply` sets the publication's tables before Connect restarts the task.
        return None if found else "missing from the connector's publication"

    eventually(published, f"{source.table('late')} captured", timeout_s=30)
    source.execute("INSERT INTO @.late SELECT g, 'late ' || g FROM generate_series(1, 15) g")
    rows = converge(pair, source, "late")
    assert len(rows) == 15
    held = {s.partition for m in pair for s in m.statuses(source.topic("late"))}
    assert held == set(range(PARTITIONS))
