"""Lookup availability, measured the way a service sees it: gets of known keys, every ~50 ms.

A :class:`LookupProber` thread looks keys up through a :class:`fabric.client.FabricClient` in
turn. A lookup that raises is a failed lookup; a missing row is an answer. An *outage* runs from
the first failed lookup to the next lookup that succeeds, so its length is the time lookups were
unavailable, to within one probe interval plus one client timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from fabric.client import FabricClient, KeyInput
from fabric.errors import FabricError

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Outage:
    start: float  # monotonic clock
    end: float
    failed: int  # lookups that failed in it
    error: str  # the first failure's message

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Availability:
    """Lookups over a window of time: how many, how many failed, and for how long."""

    lookups: int
    failed: int
    outages: tuple[Outage, ...]
    slowest_s: float  # the longest a lookup took, retries inside the client included

    @property
    def unavailable_s(self) -> float:
        return sum(o.seconds for o in self.outages)

    @property
    def longest_s(self) -> float:
        return max((o.seconds for o in self.outages), default=0.0)


@dataclass
class _Log:
    lookups: int = 0
    outages: list[Outage] = field(default_factory=list)
    open_since: float | None = None
    open_failed: int = 0
    open_error: str = ""


class LookupProber:
    """Probes until :meth:`close`; :meth:`window` reports the lookups between two instants."""

    def __init__(
        self,
        endpoints: Sequence[str],
        probes: Sequence[tuple[str, KeyInput]],
        *,
        interval_s: float = PROBE_INTERVAL_S,
        timeout_s: float = 2.0,
    ) -> None:
        if not probes:
            raise ValueError("the prober needs at least one (table, key) to look up")
        self._timeout_s = timeout_s
        self._client = FabricClient(endpoints, timeout_s=timeout_s)
        self._retired: list[FabricClient] = []
        self._probes = list(probes)
        self._interval_s = interval_s
        self._log = _Log()
        self._stamps: list[tuple[float, bool, float]] = []  # (when, succeeded, took) per lookup
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lookup-prober", daemon=True)

    def __enter__(self) -> LookupProber:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for client in (*self._retired, self._client):
            client.close()

    def use_endpoints(self, endpoints: Sequence[str]) -> None:
        """Look up through a client seeded with ``endpoints`` from now on (the instances that
        run): a client whose every seed is gone cannot read the topology."""
        fresh = FabricClient(endpoints, timeout_s=self._timeout_s)
        with self._lock:
            # Closed only at the end: a lookup in flight on it must not fail for the swap.
            self._retired.append(self._client)
            self._client = fresh

    def window(self, start: float, end: float) -> Availability:
        """The lookups made in [start, end] and the outages overlapping it (clipped to it); an
        outage still open at ``end`` counts until ``end``."""
        with self._lock:
            stamps = [s for s in self._stamps if start <= s[0] <= end]
            outages = list(self._log.outages)
            if self._log.open_since is not None:
                outages.append(Outage(self._log.open_since, end, self._log.open_failed, ""))
        clipped = tuple(
            Outage(max(o.start, start), min(o.end, end), o.failed, o.error)
            for o in outages
            if o.end >= start and o.start <= end
        )
        failed = sum(1 for _, ok, _ in stamps if not ok)
        slowest = max((took for _, _, took in stamps), default=0.0)
        return Availability(len(stamps), failed, clipped, slowest)

    def wait_answering(self, quiet_s: float = 2.0, timeout_s: float = 60.0) -> bool:
        """Wait until lookups have succeeded for ``quiet_s`` without a failure; False on timeout
        (a client routing by an old topology fails for a moment after the group settles)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            with self._lock:
                recent = [ok for when, ok, _ in self._stamps if when >= now - quiet_s]
                started = bool(self._stamps) and self._stamps[0][0] <= now - quiet_s
            if started and recent and all(recent):
                return True
            self._stop.wait(self._interval_s)
        return False

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            table, key = self._probes[n % len(self._probes)]
            n += 1
            began = time.monotonic()
            with self._lock:
                client = self._client
            try:
                client.get(table, key)
                error = None
            except FabricError as exc:
                error = str(exc)
            self._record(began, time.monotonic(), error)
            self._stop.wait(max(0.0, self._interval_s - (time.monotonic() - began)))

    def _record(self, began: float, ended: float, error: str | None) -> None:
        with self._lock:
            state = self._log
            state.lookups += 1
            self._stamps.append((ended, error is None, ended - began))
            if error is not None:
                if state.open_since is None:
                    state.open_since, state.open_failed, state.open_error = began, 0, error
                    log.info("lookups failing: %s", error)
                state.open_failed += 1
            elif state.open_since is not None:
                outage = Outage(state.open_since, ended, state.open_failed, state.open_error)
                state.outages.append(outage)
                state.open_since = None
                log.info("lookups answered again after %.2fs", outage.seconds)
