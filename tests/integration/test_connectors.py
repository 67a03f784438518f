"""`fabric connectors` against the real stack: Connect with Debezium, Postgres and Kafka.

Self-contained: every test captures tables of its own schema in the application database through a
connector of its own (own name, slot, publication and topic prefix), derived from the shipped
connectors/auction.json, and retires it afterwards with `delete --drop-slot`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from psycopg import sql

from fabric import cli, db
from fabric.config import REPO_ROOT, FabricConfig
from fabric.connect.rest import ConnectClient
from fabric.core.events import TruncateMarker, decode

pytestmark = pytest.mark.integration

TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Case:
    """One connector of one test, with the CLI bound to its spec folder."""

    name: str
    ident: str  # slot, publication and topic prefix
    spec: Path
    run: Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def schema(stack_config: FabricConfig) -> Iterator[str]:
    """A schema with two keyed tables and one keyless table, owned by the application role."""
    name = f"it_conn_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(name)
    with db.connect(stack_config.endpoints) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(
            sql.SQL("CREATE TABLE {}.accounts (id bigint PRIMARY KEY, owner text NOT NULL)").format(
                ident
            )
        )
        conn.execute(
            sql.SQL("CREATE TABLE {}.notes (id bigint PRIMARY KEY, body text)").format(ident)
        )
        conn.execute(sql.SQL("CREATE TABLE {}.audit (at timestamptz, what text)").format(ident))
        conn.execute(sql.SQL("INSERT INTO {}.accounts VALUES (1, 'ann'), (2, 'bob')").format(ident))
        conn.execute(sql.SQL("INSERT INTO {}.notes VALUES (1, 'hello')").format(ident))
    yield name
    with db.connect(stack_config.endpoints) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))


@pytest.fixture
def case(
    schema: str,
    stack_env: dict[str, str],
    stack_config: FabricConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., Case]]:
    """Factory: ``case(**settings)`` writes a spec overriding the auction spec's settings."""
    made: list[Case] = []

    def make(**settings: str) -> Case:
        ident = f"it_{uuid.uuid4().hex[:8]}"
        doc = json.loads((REPO_ROOT / "connectors" / "auction.json").read_text())
        doc["name"] = ident.replace("_", "-")
        doc["config"].update(
            {
                "topic.prefix": ident,
                "slot.name": ident,
                "publication.name": ident,
                "table.include.list": f"{schema}.accounts,{schema}.notes",
                # Logical-decoding messages are database-wide: narrowed to this schema, the topic
                # holds no marker of another test's tables.
                "message.prefix.include.list": rf"cdc-fabric\.truncate\.{schema}\..*",
                **settings,
            }
        )
        folder = tmp_path / ident
        folder.mkdir()
        spec = folder / "spec.json"
        spec.write_text(json.dumps(doc, indent=2))
        env = {**stack_env, "FABRIC_CONNECTORS_DIR": str(folder)}

        def run(*argv: str) -> tuple[int, str, str]:
            code = cli.main(list(argv), environ=env)
            captured = capsys.readouterr()
            return code, captured.out, captured.err

        made.append(Case(doc["name"], ident, spec, run))
        return made[-1]

    yield make
    admin = AdminClient({"bootstrap.servers": stack_config.endpoints.kafka_bootstrap})
    for c in made:
        c.run("connectors", "delete", "--drop-slot", str(c.spec))
        topics = [
            t
            for t in admin.list_topics(timeout=10).topics
            if t.startswith(f"{c.ident}.") or t == f"__debezium-heartbeat.{c.ident}"
        ]
        for future in admin.delete_topics(topics).values() if topics else []:
            future.result(timeout=30)


def test_apply_creates_then_the_second_apply_is_unchanged(
    case: Callable[..., Case], schema: str
) -> None:
    c = case()
    assert c.run("connectors", "apply", str(c.spec))[:2] == (
        0,
        f"{c.name}: created; RUNNING (task 0 RUNNING); truncate triggers added on "
        f"{schema}.accounts, {schema}.notes\n",
    )
    assert c.run("connectors", "apply", str(c.spec))[:2] == (
        0,
        f"{c.name}: unchanged; RUNNING (task 0 RUNNING)\n",
    )
    assert c.run("connectors", "diff", str(c.spec))[:2] == (0, f"{c.name}: no differences\n")


def test_a_truncate_arrives_keyed_on_the_message_topic(
    case: Callable[..., Case], schema: str, stack_config: FabricConfig
) -> None:
    c = case()
    assert c.run("connectors", "apply", str(c.spec))[0] == 0
    with db.connect(stack_config.endpoints) as conn:
        conn.execute(sql.SQL("TRUNCATE {}.notes").format(sql.Identifier(schema)))
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    wal_end = int(str(row[0]))
    key = f'{{"prefix":"cdc-fabric.truncate.{schema}.notes"}}'.encode()
    consumer = Consumer(
        {
            "bootstrap.servers": stack_config.endpoints.kafka_bootstrap,
            "group.id": f"it-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([f"{c.ident}.message"])
    keys: list[bytes | None] = []
    marker = None
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while marker is None and time.monotonic() < deadline:
            polled = consumer.poll(0.5)
            if polled is None or polled.error() is not None:
                continue
            keys.append(polled.key())
            if polled.key() == key:
                marker = decode(polled.value())
    finally:
        consumer.close()
    assert marker is not None, f"no {key!r} on {c.ident}.message in {TIMEOUT_S:.0f}s: {keys}"
    assert isinstance(marker, TruncateMarker)
    assert marker.table == f"{schema}.notes"
    assert 0 < marker.lsn <= wal_end
    assert keys == [key]
    code, out, _ = c.run("connectors", "status", str(c.spec))
    assert (code, out.splitlines()[1].split()[:3]) == (0, [c.name, "RUNNING", "0:RUNNING"])


def test_an_invalid_setting_is_refused_with_connects_message_for_it(
    case: Callable[..., Case],
) -> None:
    c = case(**{"snapshot.mode": "sometimes"})
    code, out, err = c.run("connectors", "apply", str(c.spec))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == f"fabric: connector {c.name} ({c.spec}) is invalid:"
    assert lines[1].startswith("  snapshot.mode: The 'snapshot.mode' value is invalid: ")
    code, out, _ = c.run("connectors", "status", str(c.spec))
    assert code == 3 and "not registered" in out


def test_a_keyless_table_is_refused_until_its_key_and_identity_are_set(
    case: Callable[..., Case], schema: str
) -> None:
    tables = f"{schema}.accounts,{schema}.audit"
    c = case(**{"table.include.list": tables})
    code, _, err = c.run("connectors", "validate", str(c.spec))
    assert code == 1
    assert err.splitlines()[1] == (
        f"  message.key.columns: {schema}.audit has no primary key: name its key columns in "
        f"message.key.columns (e.g. {schema}.audit:col1,col2), or add a primary key; without a "
        "key its changes would be published with a null key, which the compacted topic rejects"
    )
    keyed = case(**{"table.include.list": tables, "message.key.columns": f"{schema}.audit:at"})
    code, _, err = keyed.run("connectors", "validate", str(keyed.spec))
    assert code == 1
    assert err.splitlines()[1] == (
        f"  message.key.columns: {schema}.audit has no primary key and no REPLICA IDENTITY: once "
        f"published, every UPDATE and DELETE on it fails; run ALTER TABLE {schema}.audit "
        "REPLICA IDENTITY FULL"
    )


def test_secrets_never_reach_stdout_or_stderr(
    case: Callable[..., Case], stack_config: FabricConfig
) -> None:
    secret = stack_config.spec_values["FABRIC_PG_CDC_PASSWORD"]
    c = case(**{"fabric.note": "echo ${FABRIC_PG_CDC_PASSWORD}"})
    seen = ""
    for argv in (
        ("-vv", "connectors", "diff", str(c.spec)),
        ("-vv", "connectors", "validate", str(c.spec)),
        ("-vv", "connectors", "apply", str(c.spec)),
        ("-vv", "connectors", "status", "--json", str(c.spec)),
    ):
        code, out, err = c.run(*argv)
        assert code in (0, 3), err
        seen += out + err
    assert "fabric.note=echo ********" in seen
    assert secret not in seen


def test_delete_drop_slot_removes_slot_publication_and_connector(
    case: Callable[..., Case], stack_config: FabricConfig
) -> None:
    c = case()
    assert c.run("connectors", "apply", str(c.spec))[0] == 0
    slot_query = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s"
    pub_query = "SELECT count(*) FROM pg_publication WHERE pubname = %s"
    with db.connect(stack_config.endpoints) as conn:
        assert conn.execute(slot_query, [c.ident]).fetchone() == (1,)
        assert conn.execute(pub_query, [c.ident]).fetchone() == (1,)
    assert c.run("connectors", "delete", "--drop-slot", str(c.spec))[:2] == (
        0,
        f"{c.name}: deleted; Connect offsets reset; slot {c.ident} dropped; "
        f"publication {c.ident} dropped\n",
    )
    with db.connect(stack_config.endpoints) as conn:
        assert conn.execute(slot_query, [c.ident]).fetchone() == (0,)
        assert conn.execute(pub_query, [c.ident]).fetchone() == (0,)
    assert ConnectClient(stack_config.endpoints.connect_url).config(c.name) is None
