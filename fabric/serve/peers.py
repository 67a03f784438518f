"""Channels to the other instances of the fabric, one per endpoint, kept for the instance's life."""

from __future__ import annotations

import threading

import grpc

from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc


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
