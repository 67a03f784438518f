"""A paced stream of inserts, updates, deletes and key changes on the auction sample.

Each run reads the keys present, then commits the changes :mod:`fabric.sample.planner` plans, one
transaction each, paced to a rate. A run is a deterministic function of the seed and the rows
present at its start; only when each change happens depends on the clock. The planner's model
assumes the generator is the only writer of the sample tables while it runs: other sessions may
read them, but a row another session deletes or adds can make a planned change fail or miss.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from fabric.sample.planner import DEFAULT_MIX, Change, ChangePlanner, Op, SampleState, Statement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pacer:
    """Op ``n`` (counted from 0) is due at ``start + n / rate`` seconds on the monotonic clock.

    Due times come from the start, never from the previous op, so waiting and work do not add up
    to drift: an op that runs late is followed by the next without a wait until the schedule is
    caught up. ``rate=None`` means no pacing: every op is due at once.
    """

    rate: float | None
    start: float

    def __post_init__(self) -> None:
        _check_rate(self.rate)

    def due(self, n: int) -> float:
        return self.start if self.rate is None else self.start + n / self.rate

    def wait_s(self, n: int, now: float) -> float:
        """Seconds to wait at ``now`` before op ``n``; 0 when it is due or overdue."""
        return max(0.0, self.due(n) - now)


@dataclass(frozen=True)
class GenerationReport:
    """What a run did: committed transactions, rows changed per (table, kind), elapsed time."""

    transactions: int
    rows: Mapping[Op, int]
    elapsed_s: float


class ChangeGenerator:
    """Runs planned changes against Postgres, each in its own transaction, at a paced rate.

    ``conn`` may be in autocommit mode or not: every read and every change is wrapped in its own
    ``conn.transaction()``. psycopg errors propagate (wrap calls in :func:`fabric.db.translated`).
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        rate: float | None = 20.0,
        seed: int = 0,
        mix: Mapping[Op, int] = DEFAULT_MIX,
    ) -> None:
        _check_rate(rate)
        self.conn = conn
        self.rate = rate
        self.seed = seed
        self.mix = mix

    def run(
        self,
        *,
        duration_s: float | None = None,
        ops: int | None = None,
        stop: threading.Event | None = None,
    ) -> GenerationReport:
        """Run until ``ops`` changes are committed, ``duration_s`` has passed or ``stop`` is set.

        With none of the three, runs until interrupted. Each call reads the current keys, so two
        runs with the same seed over the same rows plan the same changes.
        """
        planner = ChangePlanner(self.load_state(), random.Random(self.seed), self.mix)
        rows: Counter[Op] = Counter()
        start = time.monotonic()
        pacer = Pacer(self.rate, start)
        deadline = math.inf if duration_s is None else start + duration_s
        log.info("generator started rate=%s seed=%d", self.rate, self.seed)
        done = 0
        with self.conn.cursor() as cur:
            while ops is None or done < ops:
                if stop is not None and stop.is_set():
                    break
                if pacer.due(done) >= deadline:
                    # A run given a duration lasts that long, so its achieved rate reads true.
                    _wait(deadline - time.monotonic(), stop)
                    break
                if _wait(pacer.wait_s(done, time.monotonic()), stop):
                    break
                if time.monotonic() >= deadline:  # a schedule still catching up ends on time
                    break
                change = planner.next()
                self._apply(cur, change, rows)
                done += 1
                log.debug("change n=%d op=%s.%s", done, change.op.table, change.op.kind)
        elapsed = time.monotonic() - start
        log.info("generator stopped transactions=%d elapsed_s=%.1f", done, elapsed)
        return GenerationReport(transactions=done, rows=dict(rows), elapsed_s=elapsed)

    def _apply(self, cur: psycopg.Cursor[Any], change: Change, rows: Counter[Op]) -> None:
        """Run one change in its own transaction and add the rows it changed to ``rows``."""
        with self.conn.transaction():
            changed = [
                (statement, cur.execute(statement.sql, statement.params).rowcount)
                for statement in change.statements
            ]
        for statement, rowcount in changed:
            rows[statement.counts_as] += _checked_rowcount(rowcount, statement)

    def load_state(self) -> SampleState:
        """Read the keys and references of the sample tables, in key order."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            users = [r[0] for r in cur.execute("SELECT id FROM public.users ORDER BY id")]
            items = cur.execute("SELECT id, seller_id FROM public.items ORDER BY id").fetchall()
            bids = cur.execute(
                "SELECT item_id, bid_no, bidder_id FROM public.bids ORDER BY item_id, bid_no"
            ).fetchall()
        return SampleState.from_rows(users, items, bids)


def _check_rate(rate: float | None) -> None:
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of ops/s, got {rate}")


def _wait(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep, waking early if ``stop`` is set; returns whether it was set."""
    if seconds <= 0:
        return False
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def _checked_rowcount(rowcount: int, statement: Statement) -> int:
    if rowcount != statement.rows:
        log.warning(
            "unexpected rowcount=%d expected=%d sql=%r: another session changed the sample",
            rowcount,
            statement.rows,
            statement.sql,
        )
    return max(rowcount, 0)
