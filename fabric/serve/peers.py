"""Channels to the other instances of the fabric, one per endpoint, kept for the instance's life."""

from __future__ import annotations

import threading

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
        self._gets: dict[str, grpc.UnaryUnaryMultiCallable[pb.GetRequest, bytes]] = {}
        self._batch_gets: dict[str, grpc.UnaryUnaryMultiCallable[pb.BatchGetRequest, bytes]] = {}
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
        with self._lock:
            call = self._gets.get(endpoint)
            if call is None:
                call = self._channel(endpoint).unary_unary(
                    _GET,
                    request_serializer=pb.GetRequest.SerializeToString,
                    response_deserializer=None,
                )
                self._gets[endpoint] = call
            return call

    def batch_get(self, endpoint: str) -> grpc.UnaryUnaryMultiCallable[pb.BatchGetRequest, bytes]:
        """``BatchGet`` on a peer, answering the serialized ``BatchGetResponse``, whose results
        are passed on as the owner wrote them."""
        with self._lock:
            call = self._batch_gets.get(endpoint)
            if call is None:
                call = self._channel(endpoint).unary_unary(
                    _BATCH_GET,
                    request_serializer=pb.BatchGetRequest.SerializeToString,
                    response_deserializer=None,
                )
                self._batch_gets[endpoint] = call
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
            self._gets.clear()
