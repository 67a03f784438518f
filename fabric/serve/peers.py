"""Channels to the other instances of the fabric, one per endpoint, kept for the instance's life."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc

_GET = "/fabric.rpc.v1.Fabric/Get"
_BATCH_GET = "/fabric.rpc.v1.Fabric/BatchGet"


class Peers:
    """One channel per peer endpoint, kept for the life of the instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stubs: dict[str, pb_grpc.FabricStub] = {}
        # Calls whose answers stay serialized, by endpoint and method.
        self._unparsed_calls: dict[tuple[str, str], grpc.UnaryUnaryMultiCallable[Any, bytes]] = {}
        self._channels: dict[str, grpc.Channel] = {}

    def stub(self, endpoint: str) -> pb_grpc.FabricStub:
        with self._lock:
            stub = self._stubs.get(endpoint)
            if stub is None:
                stub = pb_grpc.FabricStub(self._channel(endpoint))  # type: ignore[no-untyped-call]
                self._stubs[endpoint] = stub
            return stub

    def get(self, endpoint: str) -> grpc.UnaryUnaryMultiCallable[pb.GetRequest, bytes]:
        """``Get`` on a peer, answering the serialized ``GetResponse``: a forwarded answer is
        passed on as the owner wrote it, never parsed and written again."""
        return self._unparsed(endpoint, _GET, pb.GetRequest.SerializeToString)

    def batch_get(self, endpoint: str) -> grpc.UnaryUnaryMultiCallable[pb.BatchGetRequest, bytes]:
        """``BatchGet`` on a peer, answering the serialized ``BatchGetResponse``, whose results
        are passed on as the owner wrote them."""
        return self._unparsed(endpoint, _BATCH_GET, pb.BatchGetRequest.SerializeToString)

    def _unparsed(
        self, endpoint: str, method: str, serializer: Callable[[Any], bytes]
    ) -> grpc.UnaryUnaryMultiCallable[Any, bytes]:
        with self._lock:
            call = self._unparsed_calls.get((endpoint, method))
            if call is None:
                call = self._channel(endpoint).unary_unary(
                    method, request_serializer=serializer, response_deserializer=None
                )
                self._unparsed_calls[(endpoint, method)] = call
            return call

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
            self._unparsed_calls.clear()
