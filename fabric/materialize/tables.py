"""The read API on an instance's stores: rows as psycopg values, with where they came from.

A lookup names a table and its primary-key values. :meth:`LocalTables.key_metadata` finds the
key's partition the way Connect's producer placed it (:class:`fabric.core.keys.KeyCodec`, then
murmur2); if this instance owns that partition the row is read from its store, otherwise
:class:`NotLocalError` says which partition to ask for. Stored images are decoded with the
table's current definition (:class:`fabric.catalog.Catalog`): a column added since the row was
written reads as NULL, a column dropped since is left out, as Postgres itself would show them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from fabric.catalog import Catalog
from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.core.types import TableSchema, UnknownColumnsError, decode_row
from fabric.errors import FabricError, UnknownTableError
from fabric.materialize.instance import Materializer
from fabric.materialize.partition import PartitionPosition, PartitionState
from fabric.state.row import StoredRow
from fabric.state.store import PartitionStore

KeyValues = Mapping[str, Any] | Sequence[Any]


class NotLocalError(FabricError):
    """The key's partition is not assigned to this instance (or not ACTIVE yet)."""

    def __init__(self, table: str, partition: int, state: PartitionState | None) -> None:
        where = "not assigned to this instance" if state is None else f"{state.value} here"
        super().__init__(f"{table}: partition {partition} is {where}")
        self.partition = partition
        self.state = state


class KeyQueryMetadata(NamedTuple):
    """Where a key lives: its table topic, partition and record key bytes."""

    table: str
    topic: str
    partition: int
    key: bytes


@dataclass(frozen=True)
class Lookup:
    """A lookup's answer: the row (None: no such key) and the partition's position then."""

    row: Row | None
    position: PartitionPosition


@dataclass(frozen=True)
class Row:
    """One materialized row: its values as psycopg returns them, in table column order, and the
    change that wrote it (source LSN, commit time in Postgres, Kafka offset and partition)."""

    table: str
    values: dict[str, Any]
    lsn: int | None
    commit_ts_ms: int | None
    offset: int
    partition: int


class LocalTables:
    def __init__(self, materializer: Materializer, catalog: Catalog) -> None:
        self._materializer = materializer
        self._catalog = catalog

    def key_metadata(self, table: str, key: KeyValues) -> KeyQueryMetadata:
        """The partition and record key of ``key``; raises :class:`InvalidKeyError` naming the
        column when the key does not fit the table, :class:`UnknownTableError` for a table the
        fabric does not hold."""
        return self.route(table, self._codec(table).encode(key))

    def route(self, table: str, record_key: bytes) -> KeyQueryMetadata:
        """Where the record key ``record_key`` of ``table`` lives (its :class:`KeyCodec`
        wrote it); raises :class:`UnknownTableError` as :meth:`key_metadata` does."""
        topic = self._materializer.topic_of(table)
        partitions = self._materializer.partition_count(topic)
        if partitions is None:
            self._codec(table)  # names what is missing
            raise UnknownTableError(f"table {table} has no topic {topic}")
        return KeyQueryMetadata(table, topic, partition_for(record_key, partitions), record_key)

    def _codec(self, table: str) -> KeyCodec:
        codec = self._catalog.codec(table)
        topic = self._materializer.topic_of(table)
        if codec is None or self._materializer.partition_count(topic) is None:
            self._catalog.schema(table)  # raises UnknownTableError when Postgres has no such table
            raise UnknownTableError(
                f"table {table} is not materialized by this instance (no topic {topic} assigned"
                " yet, or the table has no primary key)"
            )
        return codec

    def get(self, table: str, key: KeyValues) -> Row | None:
        """The row with primary key ``key``, or None when there is none."""
        return self.lookup(self.key_metadata(table, key)).row

    def lookup(self, meta: KeyQueryMetadata) -> Lookup:
        """The row under ``meta``'s key, read from this instance's ACTIVE store of its
        partition, with the partition's position; raises :class:`NotLocalError` otherwise."""
        stored, position = self.read(meta)
        row = None if stored is None else self.row_of(meta.table, meta.partition, stored)
        return Lookup(row, position)

    def read(self, meta: KeyQueryMetadata) -> tuple[StoredRow | None, PartitionPosition]:
        """:meth:`lookup` without decoding: the stored row as the materializer wrote it."""
        store, position = self._local(meta)
        return store.get(meta.key), position

    def get_many(self, table: str, keys: Sequence[KeyValues]) -> list[Row | None]:
        """The rows of ``keys``, in the order of ``keys``, None where a key has no row."""
        metas = [self.key_metadata(table, key) for key in keys]
        by_partition: dict[int, list[int]] = {}
        for index, meta in enumerate(metas):
            by_partition.setdefault(meta.partition, []).append(index)
        rows: list[Row | None] = [None] * len(keys)
        for partition, indexes in by_partition.items():
            store = self._store(metas[indexes[0]])
            found = store.get_many([metas[i].key for i in indexes])
            for index, stored in zip(indexes, found, strict=True):
                if stored is not None:
                    rows[index] = self.row_of(table, partition, stored)
        return rows

    def scan(self, table: str, partition: int, limit: int | None = None) -> Iterator[Row]:
        """Every row of ``table`` in one of its partitions, in the byte order of their keys."""
        topic = self._materializer.topic_of(table)
        store = self._store(KeyQueryMetadata(table, topic, partition, b""))
        for _, stored in store.scan(limit=limit):
            yield self.row_of(table, partition, stored)

    def _store(self, meta: KeyQueryMetadata) -> PartitionStore:
        return self._local(meta)[0]

    def _local(self, meta: KeyQueryMetadata) -> tuple[PartitionStore, PartitionPosition]:
        served = self._materializer.serving(meta.topic, meta.partition)
        if served is None:
            position = self._materializer.partition_position(meta.topic, meta.partition)
            raise NotLocalError(meta.table, meta.partition, position.state if position else None)
        return served

    def row_of(self, table: str, partition: int, stored: StoredRow) -> Row:
        """A stored row decoded with the table's current definition."""
        values = decode_image(self._catalog, table, stored.image)
        return Row(table, values, stored.lsn, stored.commit_ts_ms, stored.offset, partition)

    def decode(self, table: str, image: bytes | dict[str, Any]) -> dict[str, Any]:
        return decode_image(self._catalog, table, image)


def decode_image(catalog: Catalog, table: str, image: bytes | dict[str, Any]) -> dict[str, Any]:
    """A row image (stored bytes, or a change event's image) as psycopg values under the
    table's current definition."""
    schema: TableSchema = catalog.schema(table)
    document = orjson.loads(image) if isinstance(image, bytes) else image
    try:
        return decode_row(schema, document)
    except UnknownColumnsError:
        # The table changed shape since this definition was read: read it again. A column still
        # unknown afterwards was dropped after the row was written, and Postgres no longer
        # shows it either.
        return decode_row(catalog.refresh(table), document, ignore_unknown=True)
