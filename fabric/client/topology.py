"""The fabric's topology as the client knows it: tables, their key columns and partition owners.

A key's partition is computed exactly as the service computes it: the table's
:class:`fabric.core.keys.KeyCodec`, built from the topology's key column types, then Kafka's
murmur2 over the record key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.errors import FabricUnavailableError, UnknownTableError
from fabric.rpc.v1 import fabric_pb2 as pb

log = logging.getLogger(__name__)

TOPOLOGY_MAX_AGE_S = 30.0


@dataclass(frozen=True)
class KeyColumn:
    name: str
    pg_type: str  # format_type(): "numeric(12,2)"
    base_type: str  # the element type's typname: "numeric"
    is_enum: bool


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    owner: str  # instance id; empty while unassigned
    endpoint: str  # the owner's gRPC endpoint
    state: str  # RESTORING, ACTIVE, UNKNOWN or UNASSIGNED
    lag_records: int


@dataclass(frozen=True)
class TableInfo:
    table: str  # schema.table
    topic: str
    primary_key: tuple[str, ...]
    key_columns: tuple[KeyColumn, ...]
    partitions: tuple[PartitionInfo, ...]  # indexed by partition number


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    endpoint: str


@dataclass(frozen=True)
class Topology:
    tables: tuple[TableInfo, ...]
    instances: tuple[InstanceInfo, ...]

    def table(self, name: str) -> TableInfo | None:
        qualified = _qualified(name)
        return next((t for t in self.tables if t.table == qualified), None)

    @property
    def all_active(self) -> bool:
        return all(p.state == "ACTIVE" for t in self.tables for p in t.partitions)


class TopologyCache:
    """The topology last read with ``read``; read again after :meth:`mark_stale` and every
    :data:`TOPOLOGY_MAX_AGE_S`. Thread-safe."""

    def __init__(self, read: Callable[[], pb.Topology]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._topology: Topology | None = None
        self._read_at = 0.0
        self._refresh_after = 0.0  # monotonic time when the topology is to be read again
        self._codecs: dict[tuple[str, tuple[KeyColumn, ...]], KeyCodec] = {}

    @property
    def known(self) -> Topology | None:
        """The topology last read, as it is (``None`` before the first read)."""
        return self._topology

    def table(self, name: str) -> TableInfo:
        topology = self.current()
        info = topology.table(name)
        if info is None and self._read_at < time.monotonic() - 1.0:
            info = self.read().table(name)
        if info is None:
            raise UnknownTableError(
                f"table {_qualified(name)} is not materialized by the fabric (it serves "
                f"{', '.join(t.table for t in topology.tables) or 'no tables'})"
            )
        return info

    def partition(self, info: TableInfo, key: tuple[Any, ...]) -> PartitionInfo:
        """The partition of ``key`` with its owner."""
        codec = self._codec(info)
        if not info.partitions:
            raise FabricUnavailableError(
                f"{info.table}: the topology lists no partitions yet; retry"
            )
        return info.partitions[partition_for(codec.encode(key), len(info.partitions))]

    def current(self) -> Topology:
        topology = self._topology
        if topology is not None and time.monotonic() < self._refresh_after:
            return topology
        try:
            return self.read(reuse_if_fresh=True)
        except FabricUnavailableError as exc:
            if topology is None:
                raise
            # The calls themselves may still get through (instances forward): keep routing with
            # what is known, and try to read the topology again shortly.
            log.warning("topology not refreshed, using the last one error=%s", exc)
            self._refresh_after = time.monotonic() + 1.0
            return topology

    def mark_stale(self) -> None:
        """Read the topology again before the next call."""
        self._refresh_after = 0.0

    def read(self, *, reuse_if_fresh: bool = False) -> Topology:
        requested = time.monotonic()
        with self._lock:
            # Another thread may have read it while this one waited for the lock.
            if reuse_if_fresh and self._topology is not None and self._read_at > requested:
                return self._topology
            topology = _topology(self._read())
            self._topology, self._read_at = topology, time.monotonic()
            self._refresh_after = self._read_at + TOPOLOGY_MAX_AGE_S
            return topology

    def _codec(self, info: TableInfo) -> KeyCodec:
        codec = self._codecs.get((info.table, info.key_columns))
        if codec is None:
            codec = self._codecs[(info.table, info.key_columns)] = _codec(info)
        return codec


def _qualified(table: str) -> str:
    return table if "." in table else f"public.{table}"


def _codec(info: TableInfo) -> KeyCodec:
    """The table's key codec, built from the topology's key columns as the service builds it
    from the catalog. An enum is routed as its label's text; its labels do not matter here."""
    schema, _, name = info.table.partition(".")
    columns = tuple(
        Column(
            c.name,
            ColumnType(
                c.pg_type, c.base_type, c.pg_type.endswith("[]"), ("?",) if c.is_enum else ()
            ),
        )
        for c in info.key_columns
    )
    return KeyCodec(TableSchema(schema, name, columns, info.primary_key))


def _topology(answer: pb.Topology) -> Topology:
    return Topology(
        tables=tuple(
            TableInfo(
                table=t.table,
                topic=t.topic,
                primary_key=tuple(t.primary_key),
                key_columns=tuple(
                    KeyColumn(c.name, c.pg_type, c.base_type, c.is_enum) for c in t.key_columns
                ),
                partitions=tuple(
                    PartitionInfo(p.partition, p.owner, p.endpoint, p.state, p.lag_records)
                    for p in sorted(t.partitions, key=lambda p: p.partition)
                ),
            )
            for t in answer.tables
        ),
        instances=tuple(InstanceInfo(i.instance_id, i.endpoint) for i in answer.instances),
    )
