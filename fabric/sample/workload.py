"""A pausable background workload on the auction sample: the generator's changes, and truncates.

The change generator (:mod:`fabric.sample.generator`) plans inserts, updates (on ``items`` also
updates that leave a TOASTed description untouched, and updates of the description itself),
deletes and primary-key changes from a model of the keys it reads when a run starts. A TRUNCATE
would invalidate that model, so the workload runs the generator in rounds: each round reads the
keys afresh, runs for :attr:`WorkloadSettings.round_s`, and between rounds, now and then, one
:class:`TruncatePlan` empties tables (the tables that refer to them go with them, as foreign keys
require), and a burst of unpaced inserts (:attr:`WorkloadSettings.refill_ops`) fills them again.

:meth:`SampleWorkload.pause` returns only once no change is in flight, so a caller can compare
the fabric with Postgres while nothing is written.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from fabric.db import translated
from fabric.errors import SourceDatabaseError
from fabric.sample.generator import ChangeGenerator
from fabric.sample.planner import DEFAULT_MIX, Op, OpKind

log = logging.getLogger(__name__)

# What each truncate empties, child tables first: a table is truncated with every table whose
# foreign keys point into it. Users are never emptied: the other tables would lose every seller.
TRUNCATES: tuple[tuple[str, ...], ...] = (
    ("public.bids",),
    ("public.bids", "public.items"),
)
# The refill after a truncate: items first (bids need one), mostly bids, as in the sample.
REFILL_MIX: Mapping[Op, int] = {Op("items", OpKind.INSERT): 1, Op("bids", OpKind.INSERT): 3}


@dataclass(frozen=True)
class WorkloadSettings:
    rate: float = 20.0  # transactions per second while running
    round_s: float = 5.0  # a generator run between two chances of a truncate
    truncate_chance: float = 0.2  # the chance that a round ends with a truncate
    refill_ops: int = 100  # inserts right after a truncate, unpaced, so the tables hold rows
    seed: int = 0

    def __post_init__(self) -> None:
        fits = self.rate > 0 and self.round_s > 0 and self.refill_ops >= 0
        if not (fits and 0 <= self.truncate_chance <= 1):
            raise ValueError(
                "a workload needs rate > 0, round_s > 0, refill_ops >= 0 and "
                f"0 <= truncate_chance <= 1, got {self}"
            )


@dataclass(frozen=True)
class TruncatePlan:
    tables: tuple[str, ...]

    @property
    def sql(self) -> str:
        return f"TRUNCATE {', '.join(self.tables)}"


def plan_truncate(rng: random.Random, chance: float) -> TruncatePlan | None:
    """The truncate that ends a round, or None; a pure function of ``rng``'s next draws."""
    if rng.random() >= chance:
        return None
    return TruncatePlan(rng.choice(TRUNCATES))


@dataclass
class WorkloadTotals:
    """What the workload has committed so far."""

    transactions: int = 0
    rows: Counter[Op] = field(default_factory=Counter)
    truncates: Counter[str] = field(default_factory=Counter)  # table -> times emptied
    errors: int = 0  # rounds ended by a database error (the next round starts afresh)


class SampleWorkload:
    """Runs the workload in a thread of its own until :meth:`close`; :meth:`pause` and
    :meth:`resume` stop and restart the writes."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        settings: WorkloadSettings,
        mix: Mapping[Op, int] = DEFAULT_MIX,
    ) -> None:
        self._conn = conn
        self._settings = settings
        self._mix = mix
        self._rng = random.Random(settings.seed)
        self.totals = WorkloadTotals()
        self._running = threading.Event()  # set: rounds may run
        self._round_stop = threading.Event()  # set: the current round ends now
        self._idle = threading.Event()  # set: no round is running
        self._closed = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._loop, name="sample-workload", daemon=True)

    def __enter__(self) -> SampleWorkload:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._running.set()
        self._thread.start()

    def pause(self, timeout_s: float = 30.0) -> None:
        """Stop writing; returns once the change in flight (if any) has committed."""
        self._running.clear()
        self._round_stop.set()
        if not self._idle.wait(timeout_s):
            raise TimeoutError(f"the workload did not pause within {timeout_s:.0f}s")

    def resume(self) -> None:
        self._round_stop.clear()
        self._running.set()

    def close(self) -> None:
        self._closed.set()
        self.pause()
        self._running.set()  # wakes the loop to see it is closed
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._running.wait()
            if self._closed.is_set():
                return
            self._idle.clear()
            try:
                if not self._round_stop.is_set():
                    self._round()
            finally:
                self._idle.set()

    def _round(self) -> None:
        settings = self._settings
        generator = ChangeGenerator(
            self._conn, rate=settings.rate, seed=self._rng.randrange(2**31), mix=self._mix
        )
        try:
            with translated("running the sample workload"):
                report = generator.run(duration_s=settings.round_s, stop=self._round_stop)
                self.totals.transactions += report.transactions
                self.totals.rows.update(report.rows)
                if self._round_stop.is_set():
                    return
                truncate = plan_truncate(self._rng, settings.truncate_chance)
                if truncate is not None:
                    with self._conn.transaction():
                        self._conn.execute(truncate.sql)
                    self.totals.transactions += 1
                    self.totals.truncates.update(truncate.tables)
                    log.info("workload truncated tables=%s", ",".join(truncate.tables))
                    self._refill()
        except SourceDatabaseError:
            # A lost connection or a clash with another writer ends a round, not the workload.
            self.totals.errors += 1
            log.exception("workload round failed; starting a new one")
            self._round_stop.wait(1.0)

    def _refill(self) -> None:
        refill = ChangeGenerator(
            self._conn, rate=None, seed=self._rng.randrange(2**31), mix=REFILL_MIX
        )
        report = refill.run(ops=self._settings.refill_ops, stop=self._round_stop)
        self.totals.transactions += report.transactions
        self.totals.rows.update(report.rows)
