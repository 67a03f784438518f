"""The fabric's client: lookups routed to their partition's owner, scans, watches and
virtualized primary-key reads."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import psycopg

from fabric.client.consistency import position_bound
from fabric.client.fallback import run_on_postgres, wants_dicts
from fabric.client.grpc_errors import status_error
from fabric.client.messages import (
    Change,
    FabricRow,
    KeyInput,
    decode_fabric_row,
    decode_lookup_results,
    key_message,
    key_tuple,
    partial_key,
    shown,
)
from fabric.client.streams import scan_rows, watch_changes
from fabric.client.topology import PartitionInfo, TableInfo, Topology, TopologyCache
from fabric.client.transport import ClientStats, Transport
from fabric.errors import FabricUnavailableError, UnknownTableError, UnsupportedQueryError
from fabric.query import bind, parse
from fabric.rpc.v1 import fabric_pb2 as pb

if TYPE_CHECKING:
    from fabric.shadow import ShadowStats

MAX_BATCH = 1000  # the service's limit on lookups per BatchGet

T = TypeVar("T")


class ReadObserver(Protocol):
    """Sees every row a client's get and get_many answered (:class:`fabric.shadow.ShadowReads`),
    and may read a key again through the client, unobserved, with a ``min_lsn``."""

    def attach(
        self, fabric: Callable[[str, tuple[Any, ...], int], dict[str, Any] | None]
    ) -> None: ...

    @property
    def stats(self) -> ShadowStats: ...

    def offer(self, table: str, key: tuple[Any, ...], row: dict[str, Any] | None) -> None: ...


class FabricClient:
    """A thread-safe client of the fabric; one gRPC channel per instance, opened when first used."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        smart: bool = True,
        shadow: ReadObserver | None = None,
    ) -> None:
        seeds = (endpoints,) if isinstance(endpoints, str) else tuple(endpoints)
        if not seeds:
            raise ValueError("give at least one endpoint, host:port")
        self._smart = smart
        self._topology = TopologyCache(self._read_topology)
        self._transport = Transport(seeds, self._topology, timeout_s=timeout_s, retries=retries)
        self._columns: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._fan_out: ThreadPoolExecutor | None = None
        self._shadow = shadow
        if shadow is not None:
            shadow.attach(self._reread)

    def __enter__(self) -> FabricClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every channel. A watch still running ends quietly; a scan raises (its rows would
        otherwise look complete)."""
        with self._lock:
            pool, self._fan_out = self._fan_out, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._transport.close()

    @property
    def stats(self) -> ClientStats:
        return self._transport.stats

    # -- reads -----------------------------------------------------------------------------------

    def get(
        self,
        table: str,
        key: KeyInput,
        *,
        min_lsn: int | str | None = None,
        max_staleness: float | timedelta | None = None,
    ) -> dict[str, Any] | None:
        """The row whose primary key is ``key`` (a mapping of the key columns, their values in
        key order, or the value of a one-column key), or ``None``.

        ``min_lsn`` (a :func:`~fabric.client.consistency_token`): answer only once the key's
        partition has applied every transaction committed before it. ``max_staleness``
        (seconds, or a timedelta): only from a partition reflecting the database as of at most
        that long ago. Not met within ``timeout_s``: :class:`FabricTimeoutError`
        (``min_lsn``) or :class:`TooStaleError`, saying how far behind the partition is
        (docs/consistency.md)."""
        row = self.get_row(table, key, min_lsn=min_lsn, max_staleness=max_staleness)
        return row.values if row is not None else None

    def get_row(
        self,
        table: str,
        key: KeyInput,
        *,
        min_lsn: int | str | None = None,
        max_staleness: float | timedelta | None = None,
    ) -> FabricRow | None:
        """Like :meth:`get`, with the answer's :class:`Freshness`."""
        row = self._read_row(table, key, min_lsn, max_staleness)
        if self._shadow is not None:
            info = self._topology.table(table)
            self._shadow.offer(info.table, key_tuple(info, key), row.values if row else None)
        return row

    @property
    def shadow_stats(self) -> ShadowStats | None:
        """The shadow reads' counters (``shadow=``), or None without shadow reads."""
        return self._shadow.stats if self._shadow is not None else None

    def _reread(self, table: str, key: tuple[Any, ...], min_lsn: int) -> dict[str, Any] | None:
        row = self._read_row(table, key, min_lsn, None)
        return row.values if row is not None else None

    def _read_row(
        self,
        table: str,
        key: KeyInput,
        min_lsn: int | str | None,
        max_staleness: float | timedelta | None,
    ) -> FabricRow | None:
        info = self._topology.table(table)
        values = key_tuple(info, key)
        target = self._owner(info, values)
        request = pb.GetRequest(
            table=info.table,
            key=key_message(info, values),
            bound=position_bound(min_lsn, max_staleness),
        )
        response, endpoint = self._transport.unary(
            target.endpoint if target else None,
            lambda stub, timeout: stub.Get(request, timeout=timeout),
            f"{info.table} key {shown(values)}",
        )
        self._transport.observe(endpoint, [(target, response.freshness.served_by)])
        return decode_fabric_row(response.row, response.freshness) if response.found else None

    def get_many(
        self,
        table: str,
        keys: Sequence[KeyInput],
        *,
        min_lsn: int | str | None = None,
        max_staleness: float | timedelta | None = None,
    ) -> list[dict[str, Any] | None]:
        """The rows of ``keys``, in their order (``None`` where no such key); one BatchGet per
        owner and at most :data:`MAX_BATCH` keys. A key a lookup fails for raises an error
        naming it. ``min_lsn`` and ``max_staleness`` bound every lookup, as in :meth:`get`."""
        rows = self.get_many_rows(table, keys, min_lsn=min_lsn, max_staleness=max_staleness)
        return [r.values if r is not None else None for r in rows]

    def get_many_rows(
        self,
        table: str,
        keys: Sequence[KeyInput],
        *,
        min_lsn: int | str | None = None,
        max_staleness: float | timedelta | None = None,
    ) -> list[FabricRow | None]:
        bound = position_bound(min_lsn, max_staleness)
        info = self._topology.table(table)
        values = [key_tuple(info, key) for key in keys]
        results: list[FabricRow | None] = [None] * len(values)
        pending = list(range(len(values)))
        retries = self._transport.retries
        deadline = time.monotonic() + self._transport.timeout_s
        last = ""
        for attempt in range(retries + 1):
            if attempt:
                info = self._topology.table(info.table)
            groups: dict[str | None, list[tuple[int, PartitionInfo | None]]] = {}
            for index in pending:
                target = self._owner(info, values[index])
                groups.setdefault(target.endpoint if target else None, []).append((index, target))
            retry: list[int] = []
            batches = [
                functools.partial(
                    self._batch, info, endpoint, items[start : start + MAX_BATCH], values, bound
                )
                for endpoint, items in groups.items()
                for start in range(0, len(items), MAX_BATCH)
            ]
            for answers, unavailable, message in self._all_at_once(batches):
                for index, row in answers.items():
                    results[index] = row
                retry.extend(unavailable)
                last = message or last
            if not retry:
                if self._shadow is not None:
                    for key, row in zip(values, results, strict=True):
                        self._shadow.offer(info.table, key, row.values if row else None)
                return results
            pending = retry
            self._topology.mark_stale()
            if not self._transport.pause(attempt, deadline):
                break
        raise FabricUnavailableError(
            f"{info.table} key {shown(values[pending[0]])}: not answered after "
            f"{retries + 1} attempts: {last}"
        )

    def _all_at_once(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """The results of ``calls``, made at the same time: each owner answers its own batch
        while the others answer theirs. The last call runs on the caller's thread."""
        if len(calls) <= 1:
            return [call() for call in calls]
        with self._lock:
            if self._fan_out is None:
                self._fan_out = ThreadPoolExecutor(thread_name_prefix="fabric-client")
            pool = self._fan_out
        started = [pool.submit(call) for call in calls[:-1]]
        last = calls[-1]()
        return [future.result() for future in started] + [last]

    def _batch(
        self,
        info: TableInfo,
        endpoint: str | None,
        items: list[tuple[int, PartitionInfo | None]],
        keys: list[tuple[Any, ...]],
        bound: pb.PositionBound | None,
    ) -> tuple[dict[int, FabricRow | None], list[int], str]:
        """One BatchGet: the answered lookups by index, the lookups to try again (their
        partition was moving) and the service's message for those."""
        request = pb.BatchGetRequest(
            lookups=[
                pb.GetRequest(table=info.table, key=key_message(info, keys[i]), bound=bound)
                for i, _ in items
            ]
        )
        response, called = self._transport.unary(
            endpoint,
            lambda stub, timeout: stub.BatchGetSerialized(request, timeout=timeout),
            f"{info.table}: a batch of {len(items)} keys",
        )
        answers: dict[int, FabricRow | None] = {}
        unavailable: list[int] = []
        message = ""
        served = []
        for (index, target), (status, said, row, served_by) in zip(
            items, decode_lookup_results(response), strict=True
        ):
            if status == "UNAVAILABLE":
                unavailable.append(index)
                message = said
            elif status != "OK":
                raise status_error(status, f"{info.table} key {shown(keys[index])}: ", said)
            else:
                served.append((target, served_by))
                answers[index] = row
        self._transport.observe(called, served)
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
        info = self._topology.table(table)
        request = pb.ScanRequest(table=info.table)
        for name, part in (("prefix", prefix), ("range_start", start), ("range_end", end)):
            if part is not None:
                getattr(request, name).CopyFrom(partial_key(info, part))
        if limit is not None and limit <= 0:
            return
        targets: Sequence[PartitionInfo | None] = info.partitions if self._smart else [None]
        yield from scan_rows(self._transport, request, targets, limit)

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
        info = self._topology.table(table)
        base = pb.WatchRequest(table=info.table)
        if key is not None:
            base.key.CopyFrom(key_message(info, key_tuple(info, key)))
        if prefix is not None:
            base.prefix.CopyFrom(partial_key(info, prefix))
        yield from watch_changes(self._transport, base, resume_token or "", idle_timeout_s)

    def topology(self) -> Topology:
        """The fabric's topology as an instance reports it now."""
        return self._topology.read()

    def partition_of(self, table: str, key: KeyInput) -> PartitionInfo:
        """The partition holding ``key`` and its owner, as the service places it (Kafka Streams'
        ``queryMetadataForKey``)."""
        info = self._topology.table(table)
        return self._topology.partition(info, key_tuple(info, key))

    def table_info(self, table: str) -> TableInfo:
        """``table``'s key and partitions; raises :class:`UnknownTableError` for a table the
        fabric does not materialize."""
        return self._topology.table(table)

    # -- virtualized reads -----------------------------------------------------------------------

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        row_factory: Any = None,
        fallback: psycopg.Connection[Any] | None = None,
        min_lsn: int | str | None = None,
        max_staleness: float | timedelta | None = None,
    ) -> list[Any]:
        """Run a primary-key ``SELECT`` (:mod:`fabric.query` lists the shapes) on the fabric and
        return what a psycopg cursor's ``fetchall()`` would: tuples, or dicts with
        ``row_factory=psycopg.rows.dict_row`` (or ``"dict"``).

        Another statement, or a table the fabric does not hold, raises
        :class:`UnsupportedQueryError` (:class:`UnknownTableError`), unless ``fallback`` is a
        psycopg connection: then it runs there. ``min_lsn`` and ``max_staleness`` bound the
        lookups as in :meth:`get`.
        """
        try:
            as_dicts = wants_dicts(row_factory)
            parsed = parse(sql, with_params=params is not None)
            info = self._topology.table(parsed.qualified)
            plan = bind(parsed, info.key_columns, params)
        except (UnsupportedQueryError, UnknownTableError):
            if fallback is None:
                raise
            return run_on_postgres(fallback, sql, params, row_factory)
        rows: list[dict[str, Any] | None] = []
        if plan.keys:
            rows = self.get_many(
                info.table, plan.keys, min_lsn=min_lsn, max_staleness=max_staleness
            )
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

    def _owner(self, info: TableInfo, key: tuple[Any, ...]) -> PartitionInfo | None:
        """The partition of ``key`` with its owner (``None`` for a client that does not route)."""
        if not self._smart or not info.partitions:
            return None
        return self._topology.partition(info, key)

    def _read_topology(self) -> pb.Topology:
        answer: pb.Topology
        answer, _ = self._transport.unary(
            None,
            lambda stub, timeout: stub.GetTopology(pb.GetTopologyRequest(), timeout=timeout),
            "reading the topology",
        )
        self._transport.count(topology_reads=1)
        return answer
