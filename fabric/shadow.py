"""Shadow reads: a sampled fraction of a client's reads also read from Postgres and compared.

What an application team runs before cutting a query over to the fabric: the client answers from
the fabric as always, and a sample of its answers is handed to :class:`ShadowReads`, which reads
the same keys from Postgres on a thread and connection of its own and compares the rows the way
``fabric verify`` does (:func:`fabric.verify.mismatch`).

A difference can be honest: the fabric trails Postgres, so a change committed just before (or
after) the read makes the two sides differ for a moment. A row that differs is therefore checked
once more after its partition has caught up: Postgres's row is read with a consistency token
(``pg_current_wal_insert_lsn()`` right after it), the fabric's is read again with ``min_lsn`` set
to that token — answered only once the partition has applied every change committed before it
(docs/consistency.md) — and, should the fabric now be ahead of that reading, Postgres is read
once more. Only a fabric row that matches neither Postgres reading counts as diverged, and is
logged with its table, key and columns.

Shadowing never slows or fails the caller's read: the sample goes into a bounded queue, and when
the queue is full the sample is dropped and counted as skipped.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from fabric.client.consistency import consistency_token
from fabric.db import translated
from fabric.errors import FabricError, SourceDatabaseError
from fabric.verify import Key, PostgresSource, Row, mismatch

log = logging.getLogger(__name__)

# The fabric's row of a key, read once the partition has applied every change before the LSN.
FabricLookup = Callable[[str, Key, int], Row | None]
Connect = Callable[[], psycopg.Connection[Any]]

_OUTCOMES = ("equal", "diverged", "skipped", "failed")


@dataclass(frozen=True)
class ShadowStats:
    reads: int = 0  # answers offered
    sampled: int = 0  # chosen for comparison
    equal: int = 0
    diverged: int = 0
    skipped: int = 0  # chosen while the queue was full
    failed: int = 0  # Postgres or the fabric's re-read could not answer: not compared


@dataclass(frozen=True)
class _Sample:
    table: str
    key: Key
    row: Row | None


class PostgresSide:
    """Rows by key and consistency tokens on one autocommit connection: each read sees every
    commit made before it, as the re-check needs."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        if not conn.autocommit:
            conn.autocommit = True
        self._conn = conn
        self._source = PostgresSource(conn)

    def row(self, table: str, key: Key) -> Row | None:
        rows = self._source.rows_for(table, [key])
        return rows[0] if rows else None

    def token(self) -> int:
        return consistency_token(self._conn)

    def close(self) -> None:
        self._conn.close()


class ShadowReads:
    """Compares a ``fraction`` of the rows offered with Postgres, off the caller's thread.

    ``postgres`` is a DSN or a function that opens a connection (e.g. ``lambda:
    psycopg.connect(dsn)``); the connection is the shadow's own, opened on first use and again
    after an error. ``queue_size`` bounds the samples waiting to be compared.
    """

    def __init__(
        self,
        postgres: str | Connect,
        fraction: float,
        *,
        queue_size: int = 1000,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction {fraction!r} must be between 0.0 and 1.0 (0.01 is 1%)")
        if queue_size < 1:
            raise ValueError(f"queue_size {queue_size!r} must be at least 1")
        self._connect: Connect = (
            (lambda: psycopg.connect(postgres, autocommit=True, connect_timeout=10))
            if isinstance(postgres, str)
            else postgres
        )
        self._fraction = fraction
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(ShadowStats.__dataclass_fields__, 0)
        self._queue: queue.Queue[_Sample | None] = queue.Queue(queue_size)
        self._fabric: FabricLookup | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="shadow-reads", daemon=True)
        self._thread.start()

    def __enter__(self) -> ShadowReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> ShadowStats:
        with self._lock:
            return ShadowStats(**self._counts)

    def attach(self, fabric: FabricLookup) -> None:
        """How to read a key from the fabric again for the re-check (the client does this)."""
        self._fabric = fabric

    def offer(self, table: str, key: Key, row: Row | None) -> None:
        """A read the fabric answered: ``row`` for ``key`` of ``table`` (None: not found)."""
        with self._lock:
            self._counts["reads"] += 1
            if self._random.random() >= self._fraction:
                return
            self._counts["sampled"] += 1
            if self._closed:
                self._counts["skipped"] += 1
                return
        try:
            self._queue.put_nowait(_Sample(table, key, row))
        except queue.Full:
            self._count("skipped")

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued sample is compared; False if some still wait at the end."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Compare what is queued, then stop the worker and close its connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=60)

    def register(self, registry: CollectorRegistry = REGISTRY) -> None:
        """Export the counters to Prometheus: ``fabric_shadow_reads_total{outcome=…}`` (equal,
        diverged, skipped, failed), ``fabric_shadow_sampled_total`` and
        ``fabric_shadow_offered_total`` (every answer the client offered)."""
        registry.register(_ShadowCollector(self))

    def _open(self) -> PostgresSide:
        with translated("opening the shadow reads' connection to Postgres"):
            return PostgresSide(self._connect())

    def _run(self) -> None:
        side: PostgresSide | None = None
        while (sample := self._queue.get()) is not None:
            try:
                if side is None:
                    side = self._open()
                self._count(self._compare(side, sample))
            except FabricError as exc:
                log.warning(
                    "shadow read failed table=%s key=%s error=%s", sample.table, sample.key, exc
                )
                self._count("failed")
                if isinstance(exc, SourceDatabaseError) and side is not None:
                    side.close()  # perhaps broken: the next sample opens another
                    side = None
            except Exception:
                # A bug here must not end shadowing for the client's lifetime: log and go on.
                log.exception("shadow read failed table=%s key=%s", sample.table, sample.key)
                self._count("failed")
            finally:
                self._queue.task_done()
        self._queue.task_done()
        if side is not None:
            side.close()

    def _compare(self, side: PostgresSide, sample: _Sample) -> str:
        before = side.row(sample.table, sample.key)
        if mismatch(before, sample.row) is None:
            return "equal"
        if self._fabric is None:
            ours, after = sample.row, side.row(sample.table, sample.key)
        else:
            ours = self._fabric(sample.table, sample.key, side.token())
            if mismatch(before, ours) is None:
                return "equal"
            after = side.row(sample.table, sample.key)  # the fabric may have moved past `before`
        difference = mismatch(after, ours)
        if difference is None:
            return "equal"
        kind, columns = difference
        log.warning(
            "shadow read diverged table=%s key=%s kind=%s columns=%s",
            sample.table,
            sample.key,
            kind,
            ",".join(columns) or "-",
        )
        return "diverged"

    def _count(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] += 1


class _ShadowCollector(Collector):
    def __init__(self, shadow: ShadowReads) -> None:
        self._shadow = shadow

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self._shadow.stats
        outcomes = CounterMetricFamily(
            "fabric_shadow_reads",
            "Sampled client reads compared with Postgres, by outcome",
            labels=["outcome"],
        )
        for outcome in _OUTCOMES:
            outcomes.add_metric([outcome], getattr(stats, outcome))
        yield outcomes
        yield CounterMetricFamily(
            "fabric_shadow_sampled", "Client reads chosen for comparison", value=stats.sampled
        )
        yield CounterMetricFamily(
            "fabric_shadow_offered", "Client reads seen by shadow reads", value=stats.reads
        )
