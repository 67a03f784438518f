"""The Python client of the fabric's query service: typed rows, routed to their owner.

Routing (``smart=True``). The client reads the topology once (tables, key column types,
partition owners), computes a key's partition exactly as the service does
(:class:`fabric.core.keys.KeyCodec`, then Kafka's murmur2 over the record key) and calls the
partition's owner directly, so no call is forwarded between instances. The topology is read again
after any UNAVAILABLE, after an answer served by another instance than the owner it targeted, and
every :data:`TOPOLOGY_MAX_AGE_S`. A call that meets UNAVAILABLE goes next to another instance,
which forwards it to the owner. ``smart=False`` sends every call to the instances in turn; they
forward what they do not own (``stats.forwarded`` counts those calls).

Every unary call has a deadline of ``timeout_s``, shared by its retries (``retries`` more
attempts on UNAVAILABLE, with a short backoff). gRPC errors are translated once, here, into
:mod:`fabric.errors`: NOT_FOUND is :class:`UnknownTableError`, INVALID_ARGUMENT
:class:`InvalidKeyError`, UNAVAILABLE after the retries :class:`FabricUnavailableError`,
DEADLINE_EXCEEDED :class:`FabricTimeoutError`, anything else :class:`FabricClientError`; each
carries the service's message. A missing key is ``None``, never an error.

Scans and watches are streams: when one breaks, the client continues it on another instance from
the last resume token, so the caller sees every row (change) once.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import grpc
import psycopg
from psycopg.rows import dict_row, tuple_row

from fabric.core.keys import KeyCodec
from fabric.core.partitioner import partition_for
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.errors import (
    FabricClientError,
    FabricError,
    FabricTimeoutError,
    FabricUnavailableError,
    InvalidKeyError,
    UnknownTableError,
    UnsupportedQueryError,
)
from fabric.query import bind, parse
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc
from fabric.rpc.values import decode_row, decode_value, encode_key

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # the service's limit on lookups per BatchGet
TOPOLOGY_MAX_AGE_S = 30.0
_BACKOFF_S = (0.05, 0.1, 0.2, 0.4)
# A restarted instance must be reachable again within a call's deadline, not after gRPC's default
# reconnect backoff (up to two minutes).
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)

T = TypeVar("T")
KeyInput = Mapping[str, Any] | Sequence[Any] | Any
ChangeKind = Literal["upsert", "delete", "truncate"]
Stub = pb_grpc.FabricStub


# -- what the client returns -------------------------------------------------------------------


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


@dataclass(frozen=True)
class Freshness:
    lsn: int  # source LSN of the change that wrote the row (0: unknown)
    commit_time_ms: int
    partition: int
    offset: int  # Kafka offset of the record that wrote the row
    applied_offset: int  # the partition's last applied offset when answering
    lag_records: int
    served_by: str  # the instance that read its store


@dataclass(frozen=True)
class FabricRow:
    values: dict[str, Any]  # psycopg values, in table column order
    freshness: Freshness


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    key: dict[str, Any]  # empty for a truncate
    row: dict[str, Any] | None  # upserts only
    lsn: int
    commit_time_ms: int
    resume_token: str  # pass to watch(resume_token=...) to continue after this change


@dataclass(frozen=True)
class ClientStats:
    calls: int = 0  # calls answered
    forwarded: int = 0  # of them, answered (partly) by another instance than the one called
    retries: int = 0
    topology_reads: int = 0


# -- the client ----------------------------------------------------------------------------------


class FabricClient:
    """A thread-safe client of the fabric; one gRPC channel per instance, opened when first used."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        smart: bool = True,
    ) -> None:
        seeds = (endpoints,) if isinstance(endpoints, str) else tuple(endpoints)
        if not seeds:
            raise ValueError("give at least one endpoint, host:port")
        self._seeds = seeds
        self._timeout_s = timeout_s
        self._retries = retries
        self._smart = smart
        self._lock = threading.Lock()
        self._topology_lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, Stub] = {}
        self._topology: Topology | None = None
        self._topology_read_at = 0.0
        self._refresh_after = 0.0  # monotonic time when the topology is to be read again
        self._codecs: dict[tuple[str, tuple[KeyColumn, ...]], KeyCodec] = {}
        self._columns: dict[str, tuple[str, ...]] = {}
        self._rotation = itertools.count()
        self._stats = ClientStats()
        self._closed = threading.Event()

    def __enter__(self) -> FabricClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every channel. A watch still running ends quietly; a scan raises (its rows would
        otherwise look complete)."""
        self._closed.set()
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()

    @property
    def stats(self) -> ClientStats:
        return self._stats

    # -- reads -----------------------------------------------------------------------------------

    def get(self, table: str, key: KeyInput) -> dict[str, Any] | None:
        """The row whose primary key is ``key`` (a mapping of the key columns, their values in
        key order, or the value of a one-column key), or ``None``."""
        row = self.get_row(table, key)
        return row.values if row is not None else None

    def get_row(self, table: str, key: KeyInput) -> FabricRow | None:
        """Like :meth:`get`, with the answer's :class:`Freshness`."""
        info = self._table(table)
        values = _key_tuple(info, key)
        target = self._owner(info, values)
        request = pb.GetRequest(table=info.table, key=_key_message(info, values))
        response, endpoint = self._unary(
            target.endpoint if target else None,
            lambda stub, timeout: stub.Get(request, timeout=timeout),
            f"{info.table} key {_shown(values)}",
        )
        self._observe(endpoint, [(target, response.freshness.served_by)])
        return _row(response.row, response.freshness) if response.found else None

    def get_many(self, table: str, keys: Sequence[KeyInput]) -> list[dict[str, Any] | None]:
        """The rows of ``keys``, in their order (``None`` where no such key); one BatchGet per
        owner and at most :data:`MAX_BATCH` keys. A key a lookup fails for raises an error
        naming it."""
        return [r.values if r is not None else None for r in self.get_many_rows(table, keys)]

    def get_many_rows(self, table: str, keys: Sequence[KeyInput]) -> list[FabricRow | None]:
        info = self._table(table)
        values = [_key_tuple(info, key) for key in keys]
        results: list[FabricRow | None] = [None] * len(values)
        pending = list(range(len(values)))
        deadline = time.monotonic() + self._timeout_s
        last = ""
        for attempt in range(self._retries + 1):
            if attempt:
                info = self._table(info.table)
            groups: dict[str | None, list[tuple[int, PartitionInfo | None]]] = {}
            for index in pending:
                target = self._owner(info, values[index])
                groups.setdefault(target.endpoint if target else None, []).append((index, target))
            retry: list[int] = []
            for endpoint, items in groups.items():
                for start in range(0, len(items), MAX_BATCH):
                    chunk = items[start : start + MAX_BATCH]
                    answers, unavailable, message = self._batch(info, endpoint, chunk, values)
                    for index, row in answers.items():
                        results[index] = row
                    retry.extend(unavailable)
                    last = message or last
            if not retry:
                return results
            pending = retry
            self._stale()
            if not self._pause(attempt, deadline):
                break
        raise FabricUnavailableError(
            f"{info.table} key {_shown(values[pending[0]])}: not answered after "
            f"{self._retries + 1} attempts: {last}"
        )

    def _batch(
        self,
        info: TableInfo,
        endpoint: str | None,
        items: list[tuple[int, PartitionInfo | None]],
        keys: list[tuple[Any, ...]],
    ) -> tuple[dict[int, FabricRow | None], list[int], str]:
        """One BatchGet: the answered lookups by index, the lookups to try again (their
        partition was moving) and the service's message for those."""
        request = pb.BatchGetRequest(
            lookups=[
                pb.GetRequest(table=info.table, key=_key_message(info, keys[i])) for i, _ in items
            ]
        )
        response, called = self._unary(
            endpoint,
            lambda stub, timeout: stub.BatchGet(request, timeout=timeout),
            f"{info.table}: a batch of {len(items)} keys",
        )
        answers: dict[int, FabricRow | None] = {}
        unavailable: list[int] = []
        message = ""
        served = []
        for (index, target), result in zip(items, response.results, strict=True):
            if result.status == "UNAVAILABLE":
                unavailable.append(index)
                message = result.message
            elif result.status != "OK":
                context = f"{info.table} key {_shown(keys[index])}: "
                raise _error(result.status, context, result.message)
            else:
                served.append((target, result.freshness.served_by))
                answers[index] = _row(result.row, result.freshness) if result.found else None
        self._observe(called, served)
        return answers, unavailable, message

    def scan(
        self,
        table: str,
        *,
        prefix: KeyInput | None = None,
        start: KeyInput | None = None,
        end: KeyInput | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The rows of ``table``, of a key ``prefix`` (its first columns), or of the key range
        [``start``, ``end``), partition by partition in each partition's key byte order (not SQL
        order). A stream that breaks is continued from its last row on another instance."""
        info = self._table(table)
        request = pb.ScanRequest(table=info.table)
        for name, part in (("prefix", prefix), ("range_start", start), ("range_end", end)):
            if part is not None:
                getattr(request, name).CopyFrom(_partial_key(info, part))
        if limit is not None and limit <= 0:
            return
        left = limit
        targets: Sequence[PartitionInfo | None] = info.partitions if self._smart else [None]
        for target in targets:
            for response in self._stream_scan(request, target, left):
                yield decode_row(response.row)
                if left is not None:
                    left -= 1
                    if left == 0:
                        return

    def _stream_scan(
        self, base: pb.ScanRequest, target: PartitionInfo | None, limit: int | None
    ) -> Iterator[pb.ScanResponse]:
        token = ""
        failures = 0
        avoid: list[str] = []
        endpoint = (target.endpoint if target else "") or self._next_endpoint(avoid)
        while True:
            request = pb.ScanRequest()
            request.CopyFrom(base)
            request.resume_token = token
            if target is not None:
                request.partition = target.partition
            call = self._stub(endpoint).Scan(request, timeout=self._timeout_s)
            received = 0
            try:
                for response in call:
                    if received == 0:
                        self._observe(endpoint, [(target, response.freshness.served_by)])
                    received += 1
                    token = response.resume_token
                    yield response
                    if limit is not None:
                        limit -= 1
                        if limit == 0:
                            return
                if received == 0:
                    self._count(calls=1)
                return
            except grpc.RpcError as exc:
                code = _code(exc)
                resumable = code is grpc.StatusCode.UNAVAILABLE or (
                    code is grpc.StatusCode.DEADLINE_EXCEEDED and received > 0
                )
                failures = 0 if received else failures + 1
                if not resumable or failures > self._retries:
                    raise _translated(exc, f"scanning {base.table}") from exc
            finally:
                call.cancel()
            log.debug("scan resumes table=%s endpoint=%s rows=%d", base.table, endpoint, received)
            self._stale()
            self._count(retries=1)
            self._pause(failures, time.monotonic() + 1.0)
            avoid.append(endpoint)
            endpoint = self._next_endpoint(avoid)

    def watch(
        self,
        table: str,
        *,
        key: KeyInput | None = None,
        prefix: KeyInput | None = None,
        resume_token: str | None = None,
        idle_timeout_s: float | None = None,
    ) -> Iterator[Change]:
        """The changes of a key, a key prefix or the whole table as the fabric applies them: from
        now on, or after the change whose ``resume_token`` is given. Runs until the caller stops
        iterating, or ``idle_timeout_s`` passes without a change. When the serving instance goes
        away the watch continues on another one from the last change seen."""
        info = self._table(table)
        base = pb.WatchRequest(table=info.table)
        if key is not None:
            base.key.CopyFrom(_key_message(info, _key_tuple(info, key)))
        if prefix is not None:
            base.prefix.CopyFrom(_partial_key(info, prefix))
        token = resume_token or ""
        failures = 0
        avoid: list[str] = []
        while True:
            endpoint = self._next_endpoint(avoid)
            request = pb.WatchRequest()
            request.CopyFrom(base)
            request.resume_token = token
            call = self._stub(endpoint).Watch(request)
            idle = _IdleWatchdog(call, idle_timeout_s)
            try:
                for event in call:
                    idle.touch()
                    failures = 0
                    change = _change(event)
                    token = change.resume_token
                    yield change
                return
            except grpc.RpcError as exc:
                if idle.fired or self._closed.is_set():
                    return
                failures += 1
                if _code(exc) is not grpc.StatusCode.UNAVAILABLE or failures > self._retries:
                    raise _translated(exc, f"watching {info.table}") from exc
            finally:
                idle.stop()
                call.cancel()
            log.info("watch reconnects table=%s from=%s", info.table, endpoint)
            self._stale()
            self._count(retries=1)
            self._pause(failures - 1, time.monotonic() + 1.0)
            avoid = [endpoint]

    def topology(self) -> Topology:
        """The fabric's topology as an instance reports it now."""
        return self._read_topology()

    def partition_of(self, table: str, key: KeyInput) -> PartitionInfo:
        """The partition holding ``key`` and its owner, as the service places it (Kafka Streams'
        ``queryMetadataForKey``)."""
        info = self._table(table)
        return _partition(info, self._codec(info), _key_tuple(info, key))

    def table_info(self, table: str) -> TableInfo:
        """``table``'s key and partitions; raises :class:`UnknownTableError` for a table the
        fabric does not materialize."""
        return self._table(table)

    # -- virtualized reads -----------------------------------------------------------------------

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        row_factory: Any = None,
        fallback: psycopg.Connection[Any] | None = None,
    ) -> list[Any]:
        """Run a primary-key ``SELECT`` (:mod:`fabric.query` lists the shapes) on the fabric and
        return what a psycopg cursor's ``fetchall()`` would: tuples, or dicts with
        ``row_factory=psycopg.rows.dict_row`` (or ``"dict"``).

        Another statement, or a table the fabric does not hold, raises
        :class:`UnsupportedQueryError` (:class:`UnknownTableError`), unless ``fallback`` is a
        psycopg connection: then it runs there.
        """
        try:
            as_dicts = _wants_dicts(row_factory)
            parsed = parse(sql, with_params=params is not None)
            info = self._table(parsed.qualified)
            plan = bind(parsed, info.key_columns, params)
        except (UnsupportedQueryError, UnknownTableError):
            if fallback is None:
                raise
            return _on_postgres(fallback, sql, params, row_factory)
        rows = self.get_many(info.table, plan.keys) if plan.keys else []
        seen = next((row for row in rows if row is not None), None)
        if seen is not None:
            self._columns[info.table] = tuple(seen)
        elif plan.columns:
            plan.check_columns(self._table_columns(info))
        return plan.result(rows, as_dicts=as_dicts)

    def _table_columns(self, info: TableInfo) -> tuple[str, ...]:
        """The table's columns, as its rows show them (read with one row when not known yet)."""
        columns = self._columns.get(info.table)
        if columns is None:
            row = next(iter(self.scan(info.table, limit=1)), None)
            if row is None:  # an empty table: nothing to check names against
                return tuple(info.primary_key)
            columns = self._columns[info.table] = tuple(row)
        return columns

    # -- routing -----------------------------------------------------------------------------------

    def _table(self, name: str) -> TableInfo:
        topology = self._current_topology()
        info = topology.table(name)
        if info is None and self._topology_read_at < time.monotonic() - 1.0:
            info = self._read_topology().table(name)
        if info is None:
            raise UnknownTableError(
                f"table {_qualified(name)} is not materialized by the fabric (it serves "
                f"{', '.join(t.table for t in topology.tables) or 'no tables'})"
            )
        return info

    def _owner(self, info: TableInfo, key: tuple[Any, ...]) -> PartitionInfo | None:
        """The partition of ``key`` with its owner (``None`` for a client that does not route)."""
        if not self._smart or not info.partitions:
            return None
        return _partition(info, self._codec(info), key)

    def _codec(self, info: TableInfo) -> KeyCodec:
        codec = self._codecs.get((info.table, info.key_columns))
        if codec is None:
            codec = self._codecs[(info.table, info.key_columns)] = _codec(info)
        return codec

    def _current_topology(self) -> Topology:
        topology = self._topology
        if topology is not None and time.monotonic() < self._refresh_after:
            return topology
        try:
            return self._read_topology(reuse_if_fresh=True)
        except FabricUnavailableError as exc:
            if topology is None:
                raise
            # The calls themselves may still get through (instances forward): keep routing with
            # what is known, and try to read the topology again shortly.
            log.warning("topology not refreshed, using the last one error=%s", exc)
            self._refresh_after = time.monotonic() + 1.0
            return topology

    def _stale(self) -> None:
        """Read the topology again before the next call."""
        self._refresh_after = 0.0

    def _read_topology(self, *, reuse_if_fresh: bool = False) -> Topology:
        requested = time.monotonic()
        with self._topology_lock:
            # Another thread may have read it while this one waited for the lock.
            if reuse_if_fresh and self._topology is not None and self._topology_read_at > requested:
                return self._topology
            answer, _ = self._unary(
                None,
                lambda stub, timeout: stub.GetTopology(pb.GetTopologyRequest(), timeout=timeout),
                "reading the topology",
            )
            topology = _topology(answer)
            self._topology, self._topology_read_at = topology, time.monotonic()
            self._refresh_after = self._topology_read_at + TOPOLOGY_MAX_AGE_S
            self._count(topology_reads=1)
            return topology

    def _observe(self, called: str, answers: Sequence[tuple[PartitionInfo | None, str]]) -> None:
        """Count a call whose answers came from another instance than ``called``; mark the
        topology stale when an owner did not answer for its own partition."""
        topology = self._topology
        ids = {i.endpoint: i.instance_id for i in topology.instances} if topology else {}
        called_id = ids.get(called)
        forwarded = any(served and served != called_id for _, served in answers) and bool(called_id)
        if any(t is not None and t.owner and served != t.owner for t, served in answers):
            self._stale()
        self._count(calls=1, forwarded=int(forwarded))

    def _unary(
        self, preferred: str | None, call: Callable[[Stub, float], T], what: str
    ) -> tuple[T, str]:
        """``call`` on ``preferred`` (or the next instance), then on others while UNAVAILABLE,
        within one deadline; returns the answer and the endpoint that gave it."""
        deadline = time.monotonic() + self._timeout_s
        avoid: list[str] = []
        endpoint = preferred or self._next_endpoint(avoid)
        last = "no attempt"
        for attempt in range(self._retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return call(self._stub(endpoint), remaining), endpoint
            except grpc.RpcError as exc:
                if _code(exc) is not grpc.StatusCode.UNAVAILABLE:
                    raise _translated(exc, what) from exc
                last = f"{endpoint}: {_details(exc)}"
            self._stale()
            if attempt < self._retries:
                self._count(retries=1)
                if not self._pause(attempt, deadline):
                    break
            avoid.append(endpoint)
            endpoint = self._next_endpoint(avoid)
        raise FabricUnavailableError(
            f"{what}: no instance answered within {self._timeout_s:g}s ({last})"
        )

    def _next_endpoint(self, avoid: Sequence[str]) -> str:
        """The next instance in turn, other than those in ``avoid`` when there are others."""
        topology = self._topology
        known = [i.endpoint for i in topology.instances] if topology else []
        candidates = list(dict.fromkeys([*known, *self._seeds]))
        others = [e for e in candidates if e not in avoid] or candidates
        return others[next(self._rotation) % len(others)]

    def _stub(self, endpoint: str) -> Stub:
        if self._closed.is_set():
            raise FabricClientError("the client is closed")
        with self._lock:
            stub = self._stubs.get(endpoint)
            if stub is None:
                channel = grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
                self._channels[endpoint] = channel
                stub = self._stubs[endpoint] = pb_grpc.FabricStub(channel)  # type: ignore[no-untyped-call]
            return stub

    def _pause(self, attempt: int, deadline: float) -> bool:
        """Back off before attempt ``attempt + 1``; False when the deadline leaves no time."""
        pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
        if time.monotonic() + pause >= deadline:
            return False
        time.sleep(pause)
        return True

    def _count(self, **increments: int) -> None:
        with self._lock:
            self._stats = replace(
                self._stats,
                **{name: getattr(self._stats, name) + n for name, n in increments.items()},
            )


# -- translation at the gRPC boundary --------------------------------------------------------------

_ERRORS: dict[str, type[FabricError]] = {
    "NOT_FOUND": UnknownTableError,
    "INVALID_ARGUMENT": InvalidKeyError,
    "UNAVAILABLE": FabricUnavailableError,
    "DEADLINE_EXCEEDED": FabricTimeoutError,
}


def _translated(exc: grpc.RpcError, what: str) -> FabricError:
    return _error(_code(exc).name, f"{what}: ", _details(exc))


def _error(status: str, context: str, message: str) -> FabricError:
    kind = _ERRORS.get(status, FabricClientError)
    suffix = "" if kind is not FabricClientError else f" ({status})"
    return kind(f"{context}{message or status}{suffix}")


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _details(exc: grpc.RpcError) -> str:
    details = exc.details() if isinstance(exc, grpc.Call) else None
    return details or str(exc)


# -- messages ↔ values ---------------------------------------------------------------------------


def _qualified(table: str) -> str:
    return table if "." in table else f"public.{table}"


def _key_tuple(info: TableInfo, key: KeyInput) -> tuple[Any, ...]:
    names = info.primary_key
    if isinstance(key, Mapping):
        missing = [n for n in names if n not in key]
        extra = [n for n in key if n not in names]
        if missing or extra:
            raise InvalidKeyError(
                f"{info.table}: the key is ({', '.join(names)})"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; {', '.join(map(str, extra))} not in the key" if extra else ""),
                (missing or extra)[0],
            )
        return tuple(key[n] for n in names)
    if isinstance(key, list | tuple):
        if len(key) != len(names):
            raise InvalidKeyError(
                f"{info.table}: the key is ({', '.join(names)}), {len(names)} value(s); "
                f"got {len(key)}"
            )
        return tuple(key)
    if len(names) != 1:
        raise InvalidKeyError(
            f"{info.table}: the key is ({', '.join(names)}): pass a mapping or a sequence"
        )
    return (key,)


def _key_message(info: TableInfo, values: Sequence[Any]) -> pb.Key:
    return _encoded(info, info.primary_key[: len(values)], values)


def _partial_key(info: TableInfo, part: KeyInput) -> pb.Key:
    """A key prefix or range bound: its first columns, by name or in key order."""
    if isinstance(part, Mapping):
        return _encoded(info, list(part), list(part.values()))
    values = list(part) if isinstance(part, list | tuple) else [part]
    if len(values) > len(info.primary_key):
        raise InvalidKeyError(f"{info.table}: the key has {len(info.primary_key)} columns")
    return _encoded(info, info.primary_key[: len(values)], values)


def _encoded(info: TableInfo, names: Sequence[str], values: Sequence[Any]) -> pb.Key:
    try:
        return encode_key(names, values)
    except TypeError as exc:
        raise InvalidKeyError(f"{info.table}: {exc}") from None


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


def _partition(info: TableInfo, codec: KeyCodec, key: tuple[Any, ...]) -> PartitionInfo:
    if not info.partitions:
        raise FabricUnavailableError(f"{info.table}: the topology lists no partitions yet; retry")
    return info.partitions[partition_for(codec.encode(key), len(info.partitions))]


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


def _freshness(message: pb.Freshness) -> Freshness:
    return Freshness(
        lsn=message.lsn,
        commit_time_ms=message.commit_time_ms,
        partition=message.partition,
        offset=message.offset,
        applied_offset=message.applied_offset,
        lag_records=message.lag_records,
        served_by=message.served_by,
    )


def _row(row: pb.Row, freshness: pb.Freshness) -> FabricRow:
    return FabricRow(decode_row(row), _freshness(freshness))


_KINDS: dict[int, ChangeKind] = {
    pb.WatchEvent.UPSERT: "upsert",
    pb.WatchEvent.DELETE: "delete",
    pb.WatchEvent.TRUNCATE: "truncate",
}


def _change(event: pb.WatchEvent) -> Change:
    kind = _KINDS.get(event.kind)
    if kind is None:
        raise FabricClientError(f"a watch event of unknown kind {event.kind}")
    return Change(
        kind=kind,
        key={f.name: decode_value(f.value) for f in event.key.fields},
        row=decode_row(event.row) if kind == "upsert" else None,
        lsn=event.freshness.lsn,
        commit_time_ms=event.freshness.commit_time_ms,
        resume_token=event.resume_token,
    )


def _shown(values: Sequence[Any]) -> str:
    text = repr(values[0]) if len(values) == 1 else repr(tuple(values))
    return text if len(text) <= 80 else text[:77] + "..."


class _IdleWatchdog:
    """Cancels a watch call once ``timeout_s`` passes without an event (None: never)."""

    def __init__(self, call: grpc.RpcContext, timeout_s: float | None) -> None:
        self._call = call
        self._timeout_s = timeout_s
        self._last = time.monotonic()
        self._stop = threading.Event()
        self.fired = False
        if timeout_s is not None:
            threading.Thread(target=self._run, name="watch-idle", daemon=True).start()

    def touch(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        assert self._timeout_s is not None
        while not self._stop.wait(max(0.0, self._last + self._timeout_s - time.monotonic())):
            if time.monotonic() - self._last >= self._timeout_s:
                self.fired = True
                self._call.cancel()
                return


# -- the fallback: the caller's own Postgres connection -------------------------------------------


def _wants_dicts(row_factory: Any) -> bool:
    if row_factory is None or row_factory is tuple_row or row_factory == "tuple":
        return False
    if row_factory is dict_row or row_factory == "dict":
        return True
    raise UnsupportedQueryError(
        f"row_factory {getattr(row_factory, '__name__', row_factory)!r}: the fabric returns "
        "tuples or dicts (tuple_row, dict_row)"
    )


def _on_postgres(
    conn: psycopg.Connection[Any],
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None,
    row_factory: Any,
) -> list[Any]:
    # The caller's own connection, used as the caller would use it: its psycopg errors reach the
    # caller unchanged, exactly as if the statement had never been routed through the fabric.
    factory = {None: tuple_row, "tuple": tuple_row, "dict": dict_row}.get(row_factory, row_factory)
    with conn.cursor(row_factory=factory) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
