"""Where a lookup is answered: here, or once at the instance that serves its partition.

A lookup's partition is computed exactly as Connect's producer placed the record
(:class:`fabric.core.keys.KeyCodec`, then murmur2). If this instance serves the partition, the
answer comes from its store. Otherwise the request goes, once, to the owner the group's
assignment names (:mod:`fabric.serve.topology`), with the remaining deadline: a ``Get`` or
``BatchGet`` over the owner's forwarding link (:mod:`fabric.serve.forwarding`), a ``Scan`` over
gRPC with the ``fabric-forwarded`` header. A forwarded request is never forwarded again: an
instance that does not serve the partition answers UNAVAILABLE (naming the instance handing the
partition over, when it knows one), which makes the forwarder read the topology again and
retry. While a partition moves or restores, lookups are retried within their
deadline, then answered UNAVAILABLE with a ``fabric-retry-after-ms`` hint: never a wrong answer,
never a stale one that does not say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import grpc

from fabric.errors import StoreError
from fabric.materialize.membership import HostInfo, parse_client_id
from fabric.materialize.tables import KeyQueryMetadata, NotLocalError
from fabric.serve.forwarding import ForwardError
from fabric.serve.topology import GroupTopology, TopologySnapshot

FORWARDED = "fabric-forwarded"
NOT_OWNER = "fabric-not-owner"
PREVIOUS_OWNER = "fabric-previous-owner"
RETRY_AFTER_MS = "fabric-retry-after-ms"
DEFAULT_DEADLINE_S = 10.0
_BACKOFF_S = (0.02, 0.05, 0.1, 0.2, 0.3)
# Routing trusts an owners map this old; an owner answering "not mine" makes it read again.
_ROUTE_MAX_AGE_S = 5.0
_FORWARD_RESERVE_S = 0.05
# What a batch keeps of its deadline to write its answer and get it to the caller: lookups still
# waiting then are answered UNAVAILABLE, rather than the whole call reaching DEADLINE_EXCEEDED.
_ANSWER_RESERVE_S = 0.1

T = TypeVar("T")


class NotServedHereError(Exception):
    """A forwarded request reached an instance that does not serve its partition; ``previous``
    is the instance handing it over, if this one knows it."""

    def __init__(self, previous: HostInfo | None = None) -> None:
        super().__init__()
        self.previous = previous


class UnavailableError(Exception):
    """The partition moved or restored for the whole deadline: the caller should retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Router:
    """Runs a lookup here or at the instance serving its partition, retrying while it moves."""

    def __init__(self, me: HostInfo, topology: GroupTopology) -> None:
        self._me = me
        self._topology = topology
        self.forward_metadata = ((FORWARDED, me.instance_id),)

    def routed(
        self,
        meta: KeyQueryMetadata,
        deadline: float,
        forwarded: bool,
        local: Callable[[], T],
        remote: Callable[[HostInfo, float], T],
    ) -> T:
        """``local()`` when this instance serves ``meta``'s partition, else ``remote()`` on the
        instance that can: its owner, or while the owner restores it, the previous owner that
        keeps a copy for it (any other instance, when this one never saw the previous owner).
        Retried within ``deadline`` while the partition moves; ``remote`` raises
        :class:`ForwardError` for the owner's failure."""
        attempt = 0
        while True:
            try:
                return local()
            except (NotLocalError, StoreError) as exc:
                restoring_here = isinstance(exc, NotLocalError) and exc.state is not None
            snapshot = self.snapshot(deadline, max_age_s=0.0 if attempt else _ROUTE_MAX_AGE_S)
            previous = snapshot.previous_owner(meta.topic, meta.partition)
            if forwarded:
                raise NotServedHereError(previous if previous != self._me else None)
            targets = [] if restoring_here else [snapshot.owner(meta.topic, meta.partition)]
            targets.append(previous)
            if previous is None:
                # Moving, from an instance this one never saw own it: whichever instance the
                # group took it from keeps a current copy until the new owner serves it
                # (fabric.materialize), and asking each costs a link round trip.
                targets.extend(snapshot.instances)
            asked: set[HostInfo] = set()
            for target in targets:
                if target is None or target == self._me or target in asked:
                    continue
                asked.add(target)
                try:
                    return remote(target, forward_timeout(deadline))
                except ForwardError as exc:
                    if exc.code is not grpc.StatusCode.UNAVAILABLE:
                        raise
                    self._topology.invalidate()
                    hinted = parse_client_id(exc.previous) if exc.previous else None
                    if hinted is not None:
                        targets.append(hinted)
            pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            if time.monotonic() + pause >= deadline:
                raise moving(meta)
            time.sleep(pause)
            attempt += 1

    def snapshot(self, deadline: float, max_age_s: float = _ROUTE_MAX_AGE_S) -> TopologySnapshot:
        """The partition owners, read again when older than ``max_age_s``. A lookup waits for
        Kafka's answer at most half of what its deadline leaves, keeping the rest to forward,
        retry or say UNAVAILABLE."""
        wait_s = max(0.0, (deadline - time.monotonic()) / 2)
        return self._topology.refresh(max_age_s=max_age_s, wait_s=wait_s)


def moving(meta: KeyQueryMetadata) -> UnavailableError:
    """What a lookup whose partition moved or restored for its whole deadline is answered."""
    message = f"{meta.table}: partition {meta.partition} is moving or restoring; retry"
    return UnavailableError(message)


def retried_in_time(
    waiting: Sequence[tuple[int, KeyQueryMetadata]],
    deadline: float,
    retry: Callable[[int, KeyQueryMetadata, float], bytes],
    unavailable: Callable[[UnavailableError], bytes],
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[int, bytes]]:
    """A batch's lookups that could not be answered at once, each retried on its own
    (``retry(index, meta, until)``) until a moment that leaves the batch time to send its
    answer before ``deadline``. Past it, and for a retry that stays unavailable, a lookup's
    result is ``unavailable(error)``: the caller gets every other answer and retries those,
    where running to the deadline would fail the whole call."""
    until = deadline - _ANSWER_RESERVE_S
    for index, meta in waiting:
        if clock() >= until:
            yield index, unavailable(moving(meta))
            continue
        try:
            yield index, retry(index, meta, until)
        except UnavailableError as exc:
            yield index, unavailable(exc)


def forward_timeout(deadline: float) -> float:
    """The timeout of a call forwarded to an owner: what the deadline leaves, less the moment
    this instance needs to pass the owner's answer (or its failure) back."""
    remaining = deadline - time.monotonic()
    return max(0.001, remaining - min(_FORWARD_RESERVE_S, remaining / 10))


def deadline_of(context: grpc.ServicerContext) -> float:
    """A call's deadline on the monotonic clock (a default one for a call without)."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 3600:
        remaining = DEFAULT_DEADLINE_S
    return time.monotonic() + remaining


def is_forwarded(context: grpc.ServicerContext) -> bool:
    return any(k == FORWARDED for k, _ in context.invocation_metadata())
