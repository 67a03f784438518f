"""PartitionApplier: real confluent-kafka Messages applied to a real PartitionStore in tmp_path."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from fabric.core.apply import UNAVAILABLE
from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.materialize.applier import CodecLookup, PartitionApplier, PartitionCounters
from fabric.state import PartitionStore, StoredRow, StoreOptions

SMALL = StoreOptions(write_buffer_bytes=1 << 20, block_cache_bytes=1 << 20)
TOPIC = "auction.public.items"
TABLE = "public.items"
NUM_PARTITIONS = 3
ITEMS = TableSchema(
    "public",
    "items",
    (
        Column("id", ColumnType("integer", "int4"), not_null=True),
        Column("title", ColumnType("text", "text")),
        Column("description", ColumnType("text", "text")),
        Column("thumbnail", ColumnType("bytea", "bytea")),
    ),
    ("id",),
)
CODECS: dict[str, KeyCodec] = {TABLE: KeyCodec(ITEMS)}
BYTEA_PLACEHOLDER = base64.b64encode(UNAVAILABLE.encode()).decode()


def key(item_id: int) -> bytes:
    return b'{"id":%d}' % item_id


PARTITION = partition_for(key(1), NUM_PARTITIONS)
# Ids whose keys Connect's producer put on PARTITION, and one it put elsewhere.
A, B, C = [i for i in range(1, 100) if partition_for(key(i), NUM_PARTITIONS) == PARTITION][:3]
ELSEWHERE = next(i for i in range(1, 100) if partition_for(key(i), NUM_PARTITIONS) != PARTITION)


def item(item_id: int, title: str = "lamp", description: str = "a lamp") -> dict[str, Any]:
    return {"id": item_id, "title": title, "description": description, "thumbnail": "AP8Q"}


def change(
    op: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    lsn: int | None = 100,
) -> bytes:
    """A Debezium change event value as JsonConverter (schemas disabled) writes it."""
    source = {
        "version": "3.6.1.Final",
        "connector": "postgresql",
        "name": "auction",
        "ts_ms": commit_ts(lsn),
        "snapshot": "true" if op == "r" else "false",
        "db": "auction",
        "schema": "public",
        "table": "items",
        "txId": 771,
        "lsn": lsn,
    }
    doc = {"before": before, "after": after, "source": source, "op": op, "ts_ms": 1764000000999}
    return json.dumps(doc).encode()


def commit_ts(lsn: int | None) -> int:
    return 1_764_000_000_000 + (lsn or 0)


def upsert(op: str, image: dict[str, Any], lsn: int) -> bytes:
    return change(op, after=image, lsn=lsn)


def delete(item_id: int, lsn: int) -> bytes:
    return change("d", before={"id": item_id, "title": None, "description": None}, lsn=lsn)


def truncate_marker(lsn: int) -> bytes:
    doc = {
        "op": "m",
        "source": {"schema": "", "table": "", "lsn": lsn, "ts_ms": commit_ts(lsn)},
        "message": {
            "prefix": "cdc-fabric.truncate." + TABLE,
            "content": base64.b64encode(TABLE.encode()).decode(),
        },
    }
    return json.dumps(doc).encode()


def msg(
    offset: int, record_key: bytes | None, value: bytes | None, partition: int = PARTITION
) -> Message:
    return Message(topic=TOPIC, partition=partition, offset=offset, key=record_key, value=value)


@dataclass
class RecordingSink:
    """A dead-letter sink that remembers what it got and where the store was at each flush."""

    store: PartitionStore
    sent: list[tuple[int | None, str]] = field(default_factory=list)
    flushed_at: list[int | None] = field(default_factory=list)

    def send(self, msg: Message, reason: str) -> None:
        self.sent.append((msg.offset(), reason))

    def flush(self) -> None:
        self.flushed_at.append(self.store.applied_offset())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    with PartitionStore.open(tmp_path / "store", SMALL) as opened:
        yield opened


@pytest.fixture
def sink(store: PartitionStore) -> RecordingSink:
    return RecordingSink(store)


def make_applier(
    store: PartitionStore, sink: RecordingSink, codecs: CodecLookup = CODECS.get
) -> PartitionApplier:
    return PartitionApplier(
        topic=TOPIC,
        partition=PARTITION,
        num_partitions=NUM_PARTITIONS,
        table=TABLE,
        store=store,
        dead_letters=sink,
        codecs=codecs,
    )


@pytest.fixture
def applier(store: PartitionStore, sink: RecordingSink) -> PartitionApplier:
    return make_applier(store, sink)


def image_of(store: PartitionStore, item_id: int) -> dict[str, Any] | None:
    stored = store.get(key(item_id))
    if stored is None:
        return None
    image: dict[str, Any] = orjson.loads(stored.image)
    return image


def contents(store: PartitionStore) -> dict[bytes, tuple[int | None, dict[str, Any]]]:
    return {k: (row.lsn, orjson.loads(row.image)) for k, row in store.scan()}


# --- the apply rules ---------------------------------------------------------------------------


def test_snapshot_create_and_update_store_the_after_image(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    updated = item(A, title="desk lamp")
    last = applier.apply(
        [
            msg(10, key(A), upsert("r", item(A), lsn=100)),
            msg(11, key(B), upsert("c", item(B), lsn=110)),
            msg(12, key(A), upsert("u", updated, lsn=120)),
        ]
    )
    assert last == 12
    assert store.applied_offset() == 12
    assert store.get(key(A)) == StoredRow(120, commit_ts(120), 12, orjson.dumps(updated))
    assert store.get(key(B)) == StoredRow(110, commit_ts(110), 11, orjson.dumps(item(B)))
    assert image_of(store, A) == updated
    assert applier.counters == PartitionCounters(applied=3, routing_checked=3)


def test_event_without_lsn_is_stored_without_one(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    applier.apply([msg(0, key(A), change("c", after=item(A), lsn=None))])
    assert store.get(key(A)) == StoredRow(None, commit_ts(None), 0, orjson.dumps(item(A)))


def test_delete_removes_the_row(applier: PartitionApplier, store: PartitionStore) -> None:
    applier.apply(
        [msg(0, key(A), upsert("c", item(A), 100)), msg(1, key(B), upsert("c", item(B), 101))]
    )
    applier.apply([msg(2, key(A), delete(A, 102))])
    assert store.get(key(A)) is None
    assert image_of(store, B) == item(B)
    applier.apply([msg(3, key(C), upsert("c", item(C), 103)), msg(4, key(C), delete(C, 104))])
    assert store.get(key(C)) is None
    assert list(contents(store)) == [key(B)]
    assert applier.counters.applied == 5


def test_tombstone_never_removes_a_row_recreated_after_it(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    recreated = item(A, title="back")
    applier.apply(
        [
            msg(0, key(A), upsert("c", item(A), 100)),
            msg(1, key(A), delete(A, 101)),
            msg(2, key(A), None),
            msg(3, key(A), upsert("c", recreated, 102)),
            msg(4, key(A), None),  # a re-delivered tombstone, later in the same batch
        ]
    )
    assert store.get(key(A)) == StoredRow(102, commit_ts(102), 3, orjson.dumps(recreated))
    applier.apply([msg(5, key(A), None)])  # and in a later batch
    assert image_of(store, A) == recreated
    assert store.applied_offset() == 5
    assert applier.counters.skipped == 3
    assert applier.counters.applied == 3


def test_primary_key_change_moves_the_row(applier: PartitionApplier, store: PartitionStore) -> None:
    applier.apply([msg(0, key(A), upsert("c", item(A, title="moved"), 100))])
    moved = item(B, title="moved")
    applier.apply(
        [
            msg(1, key(A), delete(A, 110)),
            msg(2, key(A), None),
            msg(3, key(B), upsert("c", moved, 110)),
        ]
    )
    assert store.get(key(A)) is None
    assert store.get(key(B)) == StoredRow(110, commit_ts(110), 3, orjson.dumps(moved))


def test_redelivered_suffix_converges_to_the_same_state(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    stream = [
        (key(A), upsert("c", item(A), 100)),
        (key(B), upsert("c", item(B), 101)),
        (key(A), upsert("u", item(A, title="v2"), 102)),
        (key(B), delete(B, 103)),
        (key(B), None),
        (key(C), upsert("c", item(C), 104)),
        (key(A), upsert("u", item(A, title="v3"), 105)),
    ]
    applier.apply([msg(offset, k, v) for offset, (k, v) in enumerate(stream)])
    once = contents(store)
    assert once == {
        key(A): (105, item(A, title="v3")),
        key(C): (104, item(C)),
    }
    # Debezium re-sends from an older LSN after a restart: the suffix lands again at new offsets.
    suffix = stream[2:]
    applier.apply([msg(len(stream) + i, k, v) for i, (k, v) in enumerate(suffix)])
    assert contents(store) == once
    assert store.applied_offset() == len(stream) + len(suffix) - 1


def test_events_below_the_truncate_watermark_are_skipped(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    applier.apply([msg(0, key(A), upsert("c", item(A), 100))])
    applier.apply([msg(1, key(B), upsert("c", item(B), 600))])
    assert store.truncate_below(500) == 1
    applier.apply(
        [
            msg(2, key(A), upsert("u", item(A, title="stale"), 400)),  # predates the truncate
            msg(3, key(B), delete(B, 499)),  # so does this delete: B was written at 600
            msg(4, key(C), upsert("c", item(C), 500)),  # at the watermark: after the truncate
        ]
    )
    assert store.get(key(A)) is None
    assert image_of(store, B) == item(B)
    assert image_of(store, C) == item(C)
    assert store.applied_offset() == 4
    assert applier.counters.skipped == 2
    assert applier.counters.applied == 3


# --- unchanged TOAST values ----------------------------------------------------------------


def toasted(item_id: int, title: str) -> dict[str, Any]:
    """An update's after-image whose description and thumbnail were not changed (TOASTed)."""
    return {
        "id": item_id,
        "title": title,
        "description": UNAVAILABLE,
        "thumbnail": BYTEA_PLACEHOLDER,
    }


def test_toast_placeholder_keeps_the_committed_value(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    applier.apply([msg(0, key(A), upsert("c", item(A, description="x" * 5000), 100))])
    applier.apply([msg(1, key(A), upsert("u", toasted(A, "renamed"), 101))])
    merged = item(A, title="renamed", description="x" * 5000)
    assert store.get(key(A)) == StoredRow(101, commit_ts(101), 1, orjson.dumps(merged))
    assert applier.counters.unresolved_toast == 0


def test_toast_placeholder_keeps_a_value_written_earlier_in_the_batch(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    applier.apply([msg(0, key(A), upsert("c", item(A, description="committed"), 100))])
    applier.apply(
        [
            msg(1, key(A), upsert("u", item(A, description="in this batch"), 101)),
            msg(2, key(A), upsert("u", toasted(A, "first"), 102)),
            msg(3, key(A), upsert("u", toasted(A, "second"), 103)),
        ]
    )
    assert image_of(store, A) == item(A, title="second", description="in this batch")
    assert applier.counters.unresolved_toast == 0


def test_toast_placeholder_without_stored_value_is_counted_and_kept(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    applier.apply([msg(0, key(A), upsert("u", toasted(A, "only image"), 100))])
    assert image_of(store, A) == toasted(A, "only image")
    assert applier.counters.unresolved_toast == 1
    # The next update carrying the column repairs the row.
    applier.apply([msg(1, key(A), upsert("u", item(A, description="repaired"), 101))])
    assert image_of(store, A) == item(A, description="repaired")
    assert applier.counters.unresolved_toast == 1


def test_toast_after_a_delete_in_the_batch_does_not_use_the_committed_row(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    applier.apply([msg(0, key(A), upsert("c", item(A, description="deleted"), 100))])
    applier.apply(
        [msg(1, key(A), delete(A, 101)), msg(2, key(A), upsert("u", toasted(A, "t"), 102))]
    )
    assert image_of(store, A) == toasted(A, "t")
    assert applier.counters.unresolved_toast == 1


# --- offsets and dead letters --------------------------------------------------------------


def test_committed_offset_is_the_last_message_even_when_it_changes_nothing(
    applier: PartitionApplier, store: PartitionStore, sink: RecordingSink
) -> None:
    assert applier.apply([msg(40, key(A), upsert("c", item(A), 100)), msg(41, key(A), None)]) == 41
    assert store.applied_offset() == 41
    assert applier.apply([msg(42, key(A), b"not json")]) == 42
    assert store.applied_offset() == 42
    assert store.get(key(A)) == StoredRow(100, commit_ts(100), 40, orjson.dumps(item(A)))


def test_malformed_records_go_to_the_dead_letter_sink_and_the_batch_goes_on(
    applier: PartitionApplier, store: PartitionStore, sink: RecordingSink
) -> None:
    applier.apply([msg(0, key(A), upsert("c", item(A), 100))])
    applier.apply(
        [
            msg(1, key(B), b"\x00garbage"),
            msg(2, key(B), upsert("c", item(B), 101)),
            msg(3, key(C), b"[1, 2, 3]"),
            msg(4, key(C), change("x", after=item(C), lsn=102)),
            msg(5, None, upsert("c", item(C), 103)),
            msg(6, key(C), truncate_marker(104)),
            msg(7, key(C), change("d", lsn=105)),
            msg(8, key(A), upsert("u", item(A, title="after the garbage"), 106)),
        ]
    )
    assert [offset for offset, _ in sink.sent] == [1, 3, 4, 5, 6, 7]
    reasons = [reason for _, reason in sink.sent]
    assert reasons[0].startswith("value is not JSON: ")
    assert reasons[1:] == [
        "value is a JSON list, not an object",
        "unknown op 'x'",
        "record without a key on a table topic",
        "truncate marker on a table topic",
        "op 'd' without a 'before' image",
    ]
    assert image_of(store, A) == item(A, title="after the garbage")
    assert image_of(store, B) == item(B)
    assert store.get(key(C)) is None
    assert store.applied_offset() == 8
    # The dead letters were flushed once, before the store committed past them.
    assert sink.flushed_at == [0]
    assert applier.counters == PartitionCounters(applied=3, dead_letters=6, routing_checked=3)


def test_no_flush_without_dead_letters(applier: PartitionApplier, sink: RecordingSink) -> None:
    applier.apply([msg(0, key(A), upsert("c", item(A), 100)), msg(1, key(A), None)])
    assert sink.sent == []
    assert sink.flushed_at == []


# --- the routing self-check ----------------------------------------------------------------


def test_correctly_routed_records_are_checked_and_match(applier: PartitionApplier) -> None:
    applier.apply(
        [
            msg(0, key(A), upsert("r", item(A), 100)),
            msg(1, key(B), upsert("c", item(B), 101)),
            msg(2, key(A), delete(A, 102)),  # checked on its before-image
            msg(3, key(A), None),  # a tombstone has no image to check
        ]
    )
    assert applier.counters.routing_checked == 3
    assert applier.counters.routing_mismatches == 0


def test_record_on_the_wrong_partition_is_a_mismatch(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    applier.apply([msg(0, key(ELSEWHERE), upsert("c", item(ELSEWHERE), 100))])
    assert applier.counters.routing_checked == 1
    assert applier.counters.routing_mismatches == 1
    # The record is still applied: the check reports, it does not judge.
    assert image_of(store, ELSEWHERE) == item(ELSEWHERE)


def test_key_spelled_otherwise_than_the_rebuilt_key_is_a_mismatch(
    applier: PartitionApplier, store: PartitionStore
) -> None:
    spaced = b'{"id": %d}' % A  # a space Connect never writes, but the row's own key
    applier.apply([msg(0, spaced, upsert("c", item(A), 100))])
    assert applier.counters.routing_checked == 1
    assert applier.counters.routing_mismatches == 1
    assert store.get(spaced) is not None


@pytest.mark.parametrize(
    ("record_key", "reason"),
    [
        (b'{"id":"%d"}' % A, f"record key has id='{A}', the row id={A}"),
        (key(B), f"record key has id={B}, the row id={A}"),
        (b'{"item":%d}' % A, "record key field item is not a column of the row"),
        (b"\xff\x00garbage", "record key is not JSON"),
        (b"[1]", "record key is not a JSON object of key columns"),
    ],
)
def test_record_whose_key_is_not_its_rows_goes_to_dead_letters(
    applier: PartitionApplier,
    sink: RecordingSink,
    store: PartitionStore,
    record_key: bytes,
    reason: str,
) -> None:
    applier.apply([msg(0, record_key, upsert("c", item(A), 100))])
    assert sink.sent == [(0, reason)]
    assert (applier.counters.dead_letters, applier.counters.applied) == (1, 0)
    assert store.get(record_key) is None and image_of(store, A) is None


def test_image_whose_key_columns_make_no_key_goes_to_dead_letters(
    applier: PartitionApplier, sink: RecordingSink, store: PartitionStore
) -> None:
    no_id = {"title": "lamp", "description": "a lamp"}
    null_id = {"id": None, "title": "lamp"}
    wrong_type = {"id": "1", "title": "lamp"}
    applier.apply(
        [
            msg(0, key(A), upsert("c", no_id, 100)),
            msg(1, key(A), upsert("c", null_id, 101)),
            msg(2, b'{"id":"1"}', upsert("c", wrong_type, 102)),
        ]
    )
    assert sink.sent == [
        (0, "public.items: key column id is missing or null"),
        (1, "public.items: key column id is missing or null"),
        (2, "public.items.id (integer): '1' is not an integer in [-2147483648, 2147483647]"),
    ]
    assert applier.counters.applied == 0 and image_of(store, A) is None


def test_event_of_another_table_goes_to_dead_letters(
    applier: PartitionApplier, sink: RecordingSink, store: PartitionStore
) -> None:
    ghost = json.loads(upsert("c", item(A), 100))
    ghost["source"]["table"] = "no_such_table"
    applier.apply([msg(0, key(A), json.dumps(ghost).encode())])
    assert sink.sent == [(0, "event of table public.no_such_table on the topic of public.items")]
    assert image_of(store, A) is None


def test_tombstone_with_a_garbage_key_goes_to_dead_letters(
    applier: PartitionApplier, sink: RecordingSink
) -> None:
    applier.apply([msg(0, b"\x00\x01", None), msg(1, b'{"id":null}', None), msg(2, key(A), None)])
    assert sink.sent == [(0, "record key is not JSON"), (1, "record key field id is null")]
    assert applier.counters.skipped == 1


@pytest.mark.parametrize(
    "codecs",
    [
        pytest.param(lambda table: None, id="definition-unknown"),
        pytest.param({"public.other": KeyCodec(ITEMS)}.get, id="other-table-only"),
    ],
)
def test_routing_is_unchecked_without_a_codec(
    store: PartitionStore, sink: RecordingSink, codecs: CodecLookup
) -> None:
    applier = make_applier(store, sink, codecs)
    applier.apply(
        [
            msg(0, key(ELSEWHERE), upsert("c", item(ELSEWHERE), 100)),
            msg(1, b'{"id": %d}' % A, upsert("c", item(A), 101)),
        ]
    )
    assert applier.counters == PartitionCounters(applied=2)


def test_codec_is_looked_up_by_the_applier_table(
    store: PartitionStore, sink: RecordingSink
) -> None:
    asked: list[str] = []

    def codecs(table: str) -> KeyCodec | None:
        asked.append(table)
        return CODECS.get(table)

    applier = make_applier(store, sink, codecs)
    applier.apply(
        [msg(0, key(A), upsert("c", item(A), 100)), msg(1, key(B), upsert("c", item(B), 101))]
    )
    applier.apply([msg(2, key(A), None)])
    assert asked == [TABLE, TABLE]  # once per batch
    assert applier.counters.routing_checked == 2
