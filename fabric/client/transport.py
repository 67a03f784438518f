"""Calls to the fabric's instances: one gRPC channel per instance, opened when first used; the
instances in turn; unary calls with one deadline shared by their retries (``retries`` more
attempts on UNAVAILABLE, with a short backoff, each on another instance)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import grpc

from fabric.client.grpc_errors import status_code, status_details, translated
from fabric.client.topology import PartitionInfo, TopologyCache
from fabric.errors import FabricClientError, FabricUnavailableError
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc

_BACKOFF_S = (0.05, 0.1, 0.2, 0.4)
# A restarted instance must be reachable again within a call's deadline, not after gRPC's default
# reconnect backoff (up to two minutes).
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)

T = TypeVar("T")


class Stub(pb_grpc.FabricStub):
    """The generated stub, and ``BatchGet`` answering the serialized response, whose rows the
    client reads natively (:func:`fabric.client.messages.decode_lookup_results`)."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)  # type: ignore[no-untyped-call]
        self.BatchGetSerialized: grpc.UnaryUnaryMultiCallable[pb.BatchGetRequest, bytes] = (
            channel.unary_unary(
                "/fabric.rpc.v1.Fabric/BatchGet",
                request_serializer=pb.BatchGetRequest.SerializeToString,
                response_deserializer=None,
            )
        )


@dataclass(frozen=True)
class ClientStats:
    calls: int = 0  # calls answered
    forwarded: int = 0  # of them, answered (partly) by another instance than the one called
    retries: int = 0
    topology_reads: int = 0


class Transport:
    """Thread-safe. Any UNAVAILABLE, and any answer an owner did not serve itself, marks
    ``topology`` stale: the partition may have moved."""

    def __init__(
        self, seeds: tuple[str, ...], topology: TopologyCache, *, timeout_s: float, retries: int
    ) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self._seeds = seeds
        self._topology = topology
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, Stub] = {}
        self._rotation = itertools.count()
        self._stats = ClientStats()
        self._closed = threading.Event()

    @property
    def stats(self) -> ClientStats:
        return self._stats

    @property
    def topology(self) -> TopologyCache:
        return self._topology

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()

    def unary(
        self, preferred: str | None, call: Callable[[Stub, float], T], what: str
    ) -> tuple[T, str]:
        """``call`` on ``preferred`` (or the next instance), then on others while UNAVAILABLE,
        within one deadline; returns the answer and the endpoint that gave it."""
        deadline = time.monotonic() + self.timeout_s
        avoid: list[str] = []
        endpoint = preferred or self.next_endpoint(avoid)
        last = "no attempt"
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return call(self.stub(endpoint), remaining), endpoint
            except grpc.RpcError as exc:
                if status_code(exc) is not grpc.StatusCode.UNAVAILABLE:
                    raise translated(exc, what) from exc
                last = f"{endpoint}: {status_details(exc)}"
            self._topology.mark_stale()
            if attempt < self.retries:
                self.count(retries=1)
                if not self.pause(attempt, deadline):
                    break
            avoid.append(endpoint)
            endpoint = self.next_endpoint(avoid)
        raise FabricUnavailableError(
            f"{what}: no instance answered within {self.timeout_s:g}s ({last})"
        )

    def observe(self, called: str, answers: Sequence[tuple[PartitionInfo | None, str]]) -> None:
        """Count a call whose answers came from another instance than ``called``; mark the
        topology stale when an owner did not answer for its own partition."""
        topology = self._topology.known
        ids = {i.endpoint: i.instance_id for i in topology.instances} if topology else {}
        called_id = ids.get(called)
        forwarded = any(served and served != called_id for _, served in answers) and bool(called_id)
        if any(t is not None and t.owner and served != t.owner for t, served in answers):
            self._topology.mark_stale()
        self.count(calls=1, forwarded=int(forwarded))

    def next_endpoint(self, avoid: Sequence[str]) -> str:
        """The next instance in turn, other than those in ``avoid`` when there are others."""
        topology = self._topology.known
        known = [i.endpoint for i in topology.instances] if topology else []
        candidates = list(dict.fromkeys([*known, *self._seeds]))
        others = [e for e in candidates if e not in avoid] or candidates
        return others[next(self._rotation) % len(others)]

    def stub(self, endpoint: str) -> Stub:
        if self._closed.is_set():
            raise FabricClientError("the client is closed")
        with self._lock:
            stub = self._stubs.get(endpoint)
            if stub is None:
                channel = grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
                self._channels[endpoint] = channel
                stub = self._stubs[endpoint] = Stub(channel)
            return stub

    def pause(self, attempt: int, deadline: float) -> bool:
        """Back off before attempt ``attempt + 1``; False when the deadline leaves no time."""
        pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
        if time.monotonic() + pause >= deadline:
            return False
        time.sleep(pause)
        return True

    def count(self, **increments: int) -> None:
        with self._lock:
            self._stats = replace(
                self._stats,
                **{name: getattr(self._stats, name) + n for name, n in increments.items()},
            )
