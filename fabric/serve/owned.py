"""The shortest path for the commonest lookup: a ``Get`` of one integer key, on the partition's
owner, with no consistency bound; and the routing of such keys in a ``BatchGet``, done natively
from the request's bytes (:mod:`fabric.serve._locate`).

On a two-core machine every Python step of a lookup is paid again in cold caches between calls
(a step that takes 1 µs in a loop takes 5 to 15 µs between two lookups), so such a ``Get`` takes
no Python step of its own: the gRPC handler is a native :class:`GetPath` that reads the
request's bytes, finds the table's route, the key's partition and its store, and writes the
whole serialized ``GetResponse`` (:mod:`fabric.rpc.wire`), calling Python only for the
partition's store and position (under the materializer's lock) and the store's read.

A table's route (definition, record-key codec, topic, partition count, row writer) is kept per
request table name and checked against the catalog's current definition by identity. The
native path uses a route it was given for at most :data:`ROUTE_CHECK_S`; then a ``Get`` takes
the Python path once, which checks the route again (and lets the catalog read a definition
that has aged) and gives it back. Anything else — another key shape, a bound, a partition not
served here, a value outside the key's type, an unknown table, a row the native writer
declines — gets no answer here, and :class:`fabric.serve.service.FabricService` takes the
general path, which answers it or says what is wrong (from the key's location, when this path
found it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from fabric.catalog import Catalog
from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.core.types import TableSchema
from fabric.errors import FabricError
from fabric.materialize.instance import Materializer
from fabric.materialize.tables import KeyQueryMetadata
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import decode_table
from fabric.rpc.wire import AnswerWriter, RowWriter
from fabric.serve._locate import GetPath, locate

if TYPE_CHECKING:
    from fabric.serve._locate import PublishedRoute, RouteSpec

# How long the native Get path uses a route before the Python path checks it against the
# catalog again: a definition change reaches it within this, on top of the catalog's own delay.
ROUTE_CHECK_S = 0.5


@dataclass(frozen=True, slots=True)
class _Route:
    schema: TableSchema  # the definition this route was built from
    table: str
    topic: str
    partitions: int
    names: frozenset[str]  # the key field's accepted names: unnamed, or the key column's
    codec: KeyCodec | None  # None: the table's key is not one integer column
    writer: RowWriter
    spec: RouteSpec | None  # the route as the native locate takes it


@dataclass(frozen=True, slots=True)
class LocatedPartition:
    """Lookups of a BatchGet that live in one partition: their indexes and record keys."""

    table: str
    topic: str
    partition: int
    indexes: list[int]
    keys: list[bytes]

    def metadata(self) -> list[tuple[int, KeyQueryMetadata]]:
        return [
            (index, KeyQueryMetadata(self.table, self.topic, self.partition, key))
            for index, key in zip(self.indexes, self.keys, strict=True)
        ]

    @staticmethod
    def of(part: LocatedPartition, items: list[tuple[int, KeyQueryMetadata]]) -> LocatedPartition:
        """``part`` narrowed to ``items``, some of its lookups."""
        return LocatedPartition(
            part.table, part.topic, part.partition, [i for i, _ in items], [m.key for _, m in items]
        )

    @staticmethod
    def grouped(items: Sequence[tuple[int, KeyQueryMetadata]]) -> list[LocatedPartition]:
        """Lookups located one by one, grouped by partition."""
        parts: dict[tuple[str, int], LocatedPartition] = {}
        for index, meta in items:
            part = parts.get((meta.topic, meta.partition))
            if part is None:
                part = parts[(meta.topic, meta.partition)] = LocatedPartition(
                    meta.table, meta.topic, meta.partition, [], []
                )
            part.indexes.append(index)
            part.keys.append(meta.key)
        return list(parts.values())


class OwnedGets:
    def __init__(
        self,
        catalog: Catalog,
        materializer: Materializer,
        answers: AnswerWriter,
        writer: Callable[[str], RowWriter],
    ) -> None:
        self._catalog = catalog
        self._materializer = materializer
        self._answers = answers
        self._writer = writer
        self._routes: dict[str, _Route] = {}
        # What the native path reads: request table name (as sent) → its checked route.
        self._published: dict[bytes, PublishedRoute] = {}
        self._path = GetPath(self._published, materializer.serving_at, answers.served_by_bytes)

    def handler(
        self, refusal: object, general: Callable[[bytes, Any], Any]
    ) -> Callable[[bytes, Any], Any]:
        """The ``Get`` handler: a serialized request answered natively, or by ``general``
        (request bytes, context), which also answers every call once ``refusal.on``."""
        return self._path.handling(refusal, general)

    def answer_serialized(self, request: bytes) -> bytes | None:
        """:meth:`answer` of a serialized ``GetRequest``, natively; None: parse it and ask
        :meth:`answer`, or the general path."""
        return self._path.answer(request)

    def answer(self, request: pb.GetRequest) -> tuple[bytes | None, KeyQueryMetadata | None]:
        """The serialized ``GetResponse``; else None and, for a key this path could locate
        (a bound to wait for, a partition not served here), where it lives, for the general
        path to go on from without routing it again."""
        located = self._locate(request)
        if located is None:
            return None, None
        route, meta = located
        if request.HasField("bound"):
            return None, meta
        served = self._materializer.serving(meta.topic, meta.partition)
        if served is None:
            return None, meta
        store, position = served
        try:
            stored = store.get_stored(meta.key)
        except FabricError:
            return None, meta  # closed as the partition moves away: the general path retries
        answer = self._answers.get_response(
            route.writer,
            stored,
            partition=meta.partition,
            applied_offset=position.position - 1,
            lag_records=position.lag,
        )
        return answer, meta

    def locate(self, request: bytes) -> tuple[list[LocatedPartition], list[int]] | None:
        """A serialized batch's lookups of one integer key grouped by partition, and the
        indexes of the others (for the general routing); None when a lookup has a bound, or the
        request is not one this path reads: :meth:`metadata` then routes it."""
        located = locate(request, self._route_spec)
        if located is None or located[2]:
            return None
        groups, unlocated, _ = located
        partitions = []
        for spec, by_partition in groups.items():
            table, topic = cast(tuple[str, str], spec[5])
            for partition, (indexes, keys) in by_partition.items():
                partitions.append(LocatedPartition(table, topic, partition, indexes, keys))
        return partitions, unlocated

    def metadata(
        self, lookups: Sequence[pb.GetRequest]
    ) -> tuple[list[KeyQueryMetadata | None], bool]:
        """Where each lookup of one integer key lives (a ``BatchGet`` with a bound routes its
        lookups here first), or None where the general routing must say; and whether any lookup
        has a bound. A table's route is checked once per call."""
        routes: dict[str, _Route | None] = {}
        located: list[KeyQueryMetadata | None] = []
        bounded = False
        for request in lookups:
            name = request.table
            route = routes[name] if name in routes else routes.setdefault(name, self._route(name))
            located.append(None if route is None else _key_metadata(route, request))
            bounded = bounded or request.HasField("bound")
        return located, bounded

    def _route_spec(self, name: str) -> RouteSpec | None:
        route = self._route(name)
        return None if route is None else route.spec

    def _locate(self, request: pb.GetRequest) -> tuple[_Route, KeyQueryMetadata] | None:
        route = self._route(request.table)
        meta = None if route is None else _key_metadata(route, request)
        return None if route is None or meta is None else (route, meta)

    def _route(self, name: str) -> _Route | None:
        """The route of a table whose key is one integer column, checked against the catalog's
        current definition (one identity test); None for any other table."""
        route = self._routes.get(name)
        try:
            stale = route is None or self._catalog.schema(route.table) is not route.schema
        except FabricError:
            return None  # the general path says what is wrong
        if stale:
            route = self._rebuild(name)
        sent_as = name.encode()
        if route is None or route.spec is None:
            self._published.pop(sent_as, None)
        else:
            check_at = time.monotonic() + ROUTE_CHECK_S
            self._published[sent_as] = (route.spec, route.writer.plan, check_at)
        return None if route is None or route.codec is None else route

    def _rebuild(self, name: str) -> _Route | None:
        route = self._build(name)
        if route is not None:
            self._routes[name] = route
        return route

    def _build(self, name: str) -> _Route | None:
        try:
            table = decode_table(name)
            schema = self._catalog.schema(table)
            topic = self._materializer.topic_of(table)
            partitions = self._materializer.partition_count(topic)
            if partitions is None:
                return None  # not captured (yet): asked again next time
            codec = self._catalog.codec(table)
            if codec is None or not codec.integer_key:
                codec = None
            writer = self._writer(table)
        except FabricError:
            return None  # the general path says what is wrong
        names = frozenset(("", codec.columns[0])) if codec else frozenset()
        spec: RouteSpec | None = None
        if codec is not None and codec.integer_layout is not None:
            head, low, high = codec.integer_layout
            where = (table, topic)
            spec = (head, low, high, codec.columns[0].encode(), partitions, where)
        return _Route(schema, table, topic, partitions, names, codec, writer, spec)


def _key_metadata(route: _Route, request: pb.GetRequest) -> KeyQueryMetadata | None:
    """Where ``request``'s key lives, when it is one integer within the key column's type."""
    fields = request.key.fields
    if len(fields) != 1 or route.codec is None:
        return None
    field = fields[0]
    value = field.value
    if value.WhichOneof("kind") != "int" or field.name not in route.names:
        return None
    try:
        record_key = route.codec.encode_integer(value.int)
    except FabricError:
        return None  # outside the column's type: the general path names the column
    partition = partition_for(record_key, route.partitions)
    return KeyQueryMetadata(route.table, route.topic, partition, record_key)
