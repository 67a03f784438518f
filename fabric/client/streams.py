"""Scans and watches: server streams that, when one breaks, continue on another instance from
the last resume token, so the caller sees every row (change) once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from fabric.client.grpc_errors import status_code, translated
from fabric.client.messages import Change, decode_change
from fabric.client.topology import PartitionInfo
from fabric.client.transport import Transport
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import decode_row

log = logging.getLogger(__name__)


def scan_rows(
    transport: Transport,
    request: pb.ScanRequest,
    targets: Sequence[PartitionInfo | None],
    limit: int | None,
) -> Iterator[dict[str, Any]]:
    """The rows ``request`` asks for, target by target (a partition and its owner; ``None``:
    every partition, through any instance), at most ``limit``."""
    left = limit
    for target in targets:
        for response in _scan_target(transport, request, target, left):
            yield decode_row(response.row)
            if left is not None:
                left -= 1
                if left == 0:
                    return


def _scan_target(
    transport: Transport, base: pb.ScanRequest, target: PartitionInfo | None, limit: int | None
) -> Iterator[pb.ScanResponse]:
    token = ""
    failures = 0
    avoid: list[str] = []
    endpoint = (target.endpoint if target else "") or transport.next_endpoint(avoid)
    while True:
        request = pb.ScanRequest()
        request.CopyFrom(base)
        request.resume_token = token
        if target is not None:
            request.partition = target.partition
        call = transport.stub(endpoint).Scan(request, timeout=transport.timeout_s)
        received = 0
        try:
            for response in call:
                if received == 0:
                    transport.observe(endpoint, [(target, response.freshness.served_by)])
                received += 1
                token = response.resume_token
                yield response
                if limit is not None:
                    limit -= 1
                    if limit == 0:
                        return
            if received == 0:
                transport.count(calls=1)
            return
        except grpc.RpcError as exc:
            code = status_code(exc)
            resumable = code is grpc.StatusCode.UNAVAILABLE or (
                code is grpc.StatusCode.DEADLINE_EXCEEDED and received > 0
            )
            failures = 0 if received else failures + 1
            if not resumable or failures > transport.retries:
                raise translated(exc, f"scanning {base.table}") from exc
        finally:
            call.cancel()
        log.debug("scan resumes table=%s endpoint=%s rows=%d", base.table, endpoint, received)
        _before_resuming(transport, failures)
        avoid.append(endpoint)
        endpoint = transport.next_endpoint(avoid)


def watch_changes(
    transport: Transport, base: pb.WatchRequest, resume_token: str, idle_timeout_s: float | None
) -> Iterator[Change]:
    """The changes ``base`` asks for, after ``resume_token`` (empty: from now on), until the
    caller stops iterating, ``idle_timeout_s`` passes without a change or the client closes."""
    token = resume_token
    failures = 0
    avoid: list[str] = []
    while True:
        endpoint = transport.next_endpoint(avoid)
        request = pb.WatchRequest()
        request.CopyFrom(base)
        request.resume_token = token
        call = transport.stub(endpoint).Watch(request)
        idle = _IdleWatchdog(call, idle_timeout_s)
        try:
            for event in call:
                idle.touch()
                failures = 0
                change = decode_change(event)
                token = change.resume_token
                yield change
            return
        except grpc.RpcError as exc:
            if idle.fired or transport.closed:
                return
            failures += 1
            if status_code(exc) is not grpc.StatusCode.UNAVAILABLE or failures > transport.retries:
                raise translated(exc, f"watching {base.table}") from exc
        finally:
            idle.stop()
            call.cancel()
        log.info("watch reconnects table=%s from=%s", base.table, endpoint)
        _before_resuming(transport, failures - 1)
        avoid = [endpoint]


def _before_resuming(transport: Transport, attempt: int) -> None:
    # The instance that broke the stream may have left: its partitions may have moved.
    transport.topology.mark_stale()
    transport.count(retries=1)
    transport.pause(attempt, time.monotonic() + 1.0)


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
