"""Postgres → Debezium → Kafka, for real: the events a change produces, and where they land."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from fabric import cli, db, topics
from fabric.config import FabricConfig
from fabric.core.events import ChangeEvent, Op, TruncateMarker
from fabric.core.partitioner import partition_for
from fabric.topics import TopicRecord

PARTITIONS = 3  # FABRIC_TOPIC_PARTITIONS in the session's environment
TABLES = ("users", "items", "bids")
TIMEOUT_S = 90.0


@pytest.fixture(scope="session")
def auction(stack_env: dict[str, str], stack_config: FabricConfig) -> FabricConfig:
    """The sample database loaded and the auction connector applied, once per session."""
    load = ["sample", "load", "--users", "40", "--items", "25", "--bids", "60", "--reset"]
    assert cli.main(load, environ=stack_env) == 0
    assert cli.main(["connectors", "apply"], environ=stack_env) == 0
    return stack_config


def _records(cfg: FabricConfig) -> Iterator[TopicRecord]:
    return topics.tail(cfg.endpoints.kafka_bootstrap, "auction", from_beginning=True)


def _read_until(
    cfg: FabricConfig,
    done: Callable[[list[TopicRecord]], bool],
    keep: Callable[[TopicRecord], bool],
) -> list[TopicRecord]:
    """Read every auction topic from the start until ``done(kept records)`` or a timeout."""
    kept: list[TopicRecord] = []
    deadline = time.monotonic() + TIMEOUT_S
    for record in _records(cfg):
        if keep(record):
            kept.append(record)
            if done(kept):
                return kept
        if time.monotonic() > deadline:
            break
    pytest.fail(f"timed out after {TIMEOUT_S:.0f}s; read {len(kept)} matching records: {kept}")


def _assert_murmur2_placement(records: list[TopicRecord]) -> None:
    for r in records:
        assert r.key is not None, f"{r.topic}@{r.offset} has a null key"
        assert r.partition == partition_for(r.key, PARTITIONS), (
            f"{r.topic}[{r.partition}]@{r.offset} key {r.key!r} belongs on partition "
            f"{partition_for(r.key, PARTITIONS)}"
        )


def test_table_topics_are_compacted_with_the_configured_partition_count(
    auction: FabricConfig,
) -> None:
    # The snapshot creates the topics; wait until they exist.
    _read_until(auction, lambda kept: len({r.topic for r in kept}) == 3, lambda r: True)
    admin = AdminClient({"bootstrap.servers": auction.endpoints.kafka_bootstrap})
    names = [f"auction.public.{t}" for t in TABLES]
    metadata = admin.list_topics(timeout=10)
    for name in names:
        assert len(metadata.topics[name].partitions) == PARTITIONS, name
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    for resource, future in admin.describe_configs(resources).items():
        assert future.result(timeout=10)["cleanup.policy"].value == "compact", resource


def test_snapshot_reads_every_row_onto_its_murmur2_partition(auction: FabricConfig) -> None:
    with db.connect(auction.endpoints) as conn:
        expected = {
            f"auction.public.{t}": conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in TABLES
        }

    def is_snapshot(r: TopicRecord) -> bool:
        return isinstance(r.event, ChangeEvent) and r.event.op is Op.READ

    def complete(kept: list[TopicRecord]) -> bool:
        return Counter(r.topic for r in kept) == Counter(expected)

    snapshot = _read_until(auction, complete, is_snapshot)
    _assert_murmur2_placement(snapshot)
    users = [r for r in snapshot if r.topic == "auction.public.users"]
    assert all(r.key == f'{{"id":{r.event.after["id"]}}}'.encode() for r in users)  # type: ignore[union-attr,index]


def test_insert_update_delete_produce_c_u_d_and_tombstone_in_order(auction: FabricConfig) -> None:
    user_id = 900_001
    with db.connect(auction.endpoints) as conn:
        conn.execute(
            "INSERT INTO users (id, email, display_name, external_id) "
            "VALUES (%s, 'pipeline@example.com', 'Ünïcode ☃', gen_random_uuid())",
            [user_id],
        )
        conn.execute("UPDATE users SET display_name = 'renamed' WHERE id = %s", [user_id])
        conn.execute("DELETE FROM users WHERE id = %s", [user_id])
    key = f'{{"id":{user_id}}}'.encode()

    def ours(r: TopicRecord) -> bool:
        return r.topic == "auction.public.users" and r.key == key

    records = _read_until(auction, lambda kept: len(kept) == 4, ours)
    kinds = [r.event.op.value if isinstance(r.event, ChangeEvent) else None for r in records]
    assert kinds == ["c", "u", "d", None]
    create, update, delete, tombstone = records
    assert isinstance(create.event, ChangeEvent) and create.event.after is not None
    assert create.event.after["display_name"] == "Ünïcode ☃"
    assert isinstance(update.event, ChangeEvent) and update.event.after is not None
    assert update.event.after["display_name"] == "renamed"
    assert isinstance(delete.event, ChangeEvent) and delete.event.before is not None
    assert delete.event.before["id"] == user_id
    assert tombstone.value is None
    lsns = [r.event.source.lsn for r in records[:3] if isinstance(r.event, ChangeEvent)]
    assert lsns == sorted(lsns)
    assert [r.offset for r in records] == sorted(r.offset for r in records)
    _assert_murmur2_placement(records)


def test_composite_key_follows_the_primary_key_constraint_order(auction: FabricConfig) -> None:
    with db.connect(auction.endpoints) as conn:
        row = conn.execute("SELECT id, seller_id FROM items ORDER BY id LIMIT 1").fetchone()
        assert row is not None
        item_id, bidder = row
        conn.execute(
            "INSERT INTO bids (bid_no, item_id, bidder_id, amount) VALUES (9001, %s, %s, 12.50)",
            [item_id, bidder],
        )
    key = f'{{"item_id":{item_id},"bid_no":9001}}'.encode()

    def ours(r: TopicRecord) -> bool:
        return r.topic == "auction.public.bids" and r.key == key

    (record,) = _read_until(auction, lambda kept: len(kept) == 1, ours)
    assert isinstance(record.event, ChangeEvent) and record.event.after is not None
    assert record.event.after["amount"] == "12.50"  # decimal.handling.mode=string: exact
    _assert_murmur2_placement([record])


def test_truncate_arrives_as_a_keyed_marker_and_the_connector_survives(
    auction: FabricConfig,
) -> None:
    with db.connect(auction.endpoints) as conn:
        lsn_before = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'").fetchone()[0]  # type: ignore[index]
        conn.execute("TRUNCATE bids")
        row = conn.execute("SELECT id, seller_id FROM items ORDER BY id LIMIT 1").fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO bids (bid_no, item_id, bidder_id, amount) VALUES (1, %s, %s, 1.00)", row
        )
    key = f'{{"item_id":{row[0]},"bid_no":1}}'.encode()

    def interesting(r: TopicRecord) -> bool:
        if isinstance(r.event, TruncateMarker):
            return r.event.table == "public.bids" and r.event.lsn > lsn_before
        return (
            r.key == key
            and isinstance(r.event, ChangeEvent)
            and r.event.op is Op.CREATE
            and (r.event.source.lsn or 0) > lsn_before
        )

    records = _read_until(auction, lambda kept: len(kept) == 2, interesting)
    # Two topics: the marker and the insert may be read in either order.
    markers = [r for r in records if isinstance(r.event, TruncateMarker)]
    assert len(markers) == 1, f"lsn_before={lsn_before} records={records}"
    (marker,) = markers
    (after,) = [r for r in records if isinstance(r.event, ChangeEvent)]
    assert isinstance(marker.event, TruncateMarker)
    assert marker.topic == "auction.message"
    assert marker.event.table == "public.bids"
    assert marker.key == b'{"prefix":"cdc-fabric.truncate.public.bids"}'
    # The insert after the truncate still flows: the task did not die on a null key.
    assert isinstance(after.event, ChangeEvent)
    assert (after.event.source.lsn or 0) > marker.event.lsn
