"""gRPC channels to the other instances of the fabric, one per endpoint, kept for the instance's
life: for the calls between instances that are not lookups (``Scan``, ``GetTopology``, health).
Lookups go over the forwarding link (:mod:`fabric.serve.forwarding`)."""

from __future__ import annotations

import threading

import grpc

from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc
from fabric.serve.forwarding import ForwardError
from fabric.serve.routing import PREVIOUS_OWNER


class Peers:
    """One channel per peer endpoint, kept for the life of the instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stubs: dict[str, pb_grpc.FabricStub] = {}
        self._channels: dict[str, grpc.Channel] = {}

    def stub(self, endpoint: str) -> pb_grpc.FabricStub:
        with self._lock:
            stub = self._stubs.get(endpoint)
            if stub is None:
                stub = pb_grpc.FabricStub(self._channel(endpoint))  # type: ignore[no-untyped-call]
                self._stubs[endpoint] = stub
            return stub

    def scan(
        self,
        endpoint: str,
        request: pb.ScanRequest,
        timeout: float,
        metadata: tuple[tuple[str, str], ...],
    ) -> list[pb.ScanResponse]:
        """A partition's rows from the peer that serves it; :class:`ForwardError` for its
        failure, as for a forwarded lookup."""
        try:
            return list(self.stub(endpoint).Scan(request, timeout=timeout, metadata=metadata))
        except grpc.RpcError as exc:
            if not isinstance(exc, grpc.Call):
                raise ForwardError(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
            previous = next(
                (v for k, v in exc.trailing_metadata() or () if k == PREVIOUS_OWNER), ""
            )
            raise ForwardError(exc.code(), exc.details() or "", str(previous)) from None

    def channel(self, endpoint: str) -> grpc.Channel:
        with self._lock:
            return self._channel(endpoint)

    def _channel(self, endpoint: str) -> grpc.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = grpc.insecure_channel(endpoint)
            self._channels[endpoint] = channel
        return channel

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()
