"""Shadow reads: a sampled fraction of a client's reads also read from Postgres and compared.

What an application team runs before cutting a query over to the fabric: the client answers from
the fabric as always, and a sample of its answers is handed to :class:`ShadowReads`, which reads
the same keys from Postgres on a thread of its own and compares the rows the way ``fabric
verify`` does (:func:`fabric.verify.mismatch`). A difference can be honest — a change committed
after the fabric answered, or not applied yet — so a row that differs is read again from both
sides after ``recheck_s``, and only a difference that persists is counted as diverged and
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from fabric.errors import FabricError
from fabric.verify import Key, PostgresSource, Row, mismatch

log = logging.getLogger(__name__)

FabricLookup = Callable[[str, Key], Row | None]  # the fabric's row of a key, read again


@dataclass
class ShadowStats:
    reads: int = 0  # answers offered
    sampled: int = 0  # queued for comparison
    equal: int = 0
    diverged: int = 0
    skipped: int = 0  # sampled while the queue was full
    failed: int = 0  # Postgres (or the re-read) could not be asked


@dataclass(frozen=True)
class _Sample:
    table: str
    key: Key
    row: Row | None


class ShadowReads:
    """Compares a ``fraction`` of the rows offered with Postgres, on its own connection and
    thread. ``connect`` opens that connection (e.g. ``lambda: psycopg.connect(dsn)``)."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        fraction: float,
        *,
        recheck_s: float = 2.0,
        queue_size: int = 1000,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction {fraction} is not between 0 and 1")
        self.stats = ShadowStats()
        self._fraction = fraction
        self._recheck_s = recheck_s
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Sample | None] = queue.Queue(queue_size)
        self._fabric: FabricLookup | None = None
        self._connect = connect
        self._thread = threading.Thread(target=self._run, name="shadow-reads", daemon=True)
        self._thread.start()

    def attach(self, fabric: FabricLookup) -> None:
        """The fabric reader used to re-read a row that differed (the client does this)."""
        self._fabric = fabric

    def offer(self, table: str, key: Key, row: Row | None) -> None:
        """A read the fabric answered: ``row`` for ``key`` (None: not found)."""
        with self._lock:
            self.stats.reads += 1
            if self._random.random() >= self._fraction:
                return
            self.stats.sampled += 1
        try:
            self._queue.put_nowait(_Sample(table, key, row))
        except queue.Full:
            with self._lock:
                self.stats.skipped += 1

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued sample is compared (tests, and before reading stats)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while (sample := self._queue.get()) is not None:
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                self._compare(PostgresSource(conn), sample)
            except (FabricError, psycopg.Error) as exc:
                log.warning("shadow read failed table=%s error=%s", sample.table, exc)
                with self._lock:
                    self.stats.failed += 1
            finally:
                self._queue.task_done()
        self._queue.task_done()
        if conn is not None:
            conn.close()

    def _compare(self, source: PostgresSource, sample: _Sample) -> None:
        theirs = _row_of(source, sample.table, sample.key)
        if mismatch(theirs, sample.row) is None:
            self._count("equal")
            return
        # Perhaps a change committed after one side read: ask both again once it has arrived.
        time.sleep(self._recheck_s)
        ours = self._fabric(sample.table, sample.key) if self._fabric else sample.row
        theirs = _row_of(source, sample.table, sample.key)
        difference = mismatch(theirs, ours)
        if difference is None:
            self._count("equal")
            return
        self._count("diverged")
        kind, columns = difference
        log.warning(
            "shadow read diverged table=%s key=%s kind=%s columns=%s",
            sample.table,
            sample.key,
            kind,
            ",".join(columns) or "-",
        )

    def _count(self, outcome: str) -> None:
        with self._lock:
            setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)


def _row_of(source: PostgresSource, table: str, key: Key) -> Row | None:
    rows = source.rows_for(table, [key])
    return rows[0] if rows else None
