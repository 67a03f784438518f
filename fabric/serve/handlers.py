"""The ``Fabric`` service's method handlers on a server.

They are the generated ones (``fabric_pb2_grpc.add_FabricServicer_to_server``) with two
differences: a method may answer with bytes, a message already written to the wire
(:mod:`fabric.rpc.wire`, or a peer's answer passed on), and those bytes are sent as they are;
and ``Get`` takes the request's bytes, which its native handler
(:meth:`FabricService.get_handler`) reads without parsing them into a message, and parses only
the requests it leaves to :meth:`FabricService.Get`.

A request body that does not parse as the method's request message is answered
INVALID_ARGUMENT saying so; gRPC's own handling of a failed deserializer answers INTERNAL, which
tells the caller nothing.

Once the server's :class:`Refusal` is on (the last second of a graceful stop), every new call
is answered UNAVAILABLE, which clients retry on another instance; a call that reaches a server as
it stops would be answered CANCELLED instead (grpc/grpc#41785), which clients rightly do not
retry. The check is here rather than in a server interceptor, which every call would pay for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.serve.service import FabricService

SERVICE_NAME = "fabric.rpc.v1.Fabric"


# Methods whose handlers always answer a serialized message: gRPC sends their bytes without
# calling a serializer, one Python call fewer on the lookup path.
_ANSWERING_BYTES = frozenset({"Get", "BatchGet"})


class Refusal:
    """Whether the server refuses new calls: set in the last second of a graceful stop. A plain
    attribute, read on every call without a method call."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


def add_fabric_service(service: FabricService, server: grpc.Server, refusal: Refusal) -> None:
    """One handler per RPC of the service in the proto, each the servicer method of its name;
    ``Get``'s is the native handler, which takes the request's bytes and leaves what it does not
    answer to the parsed way."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in pb.DESCRIPTOR.services_by_name["Fabric"].methods:
        handler = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        checked = _checked(getattr(service, method.name), refusal)
        parse = _parser(getattr(pb, method.input_type.name))
        serializer = None if method.name in _ANSWERING_BYTES else _serialized
        if method.name == "Get":
            handlers[method.name] = handler(
                service.get_handler(refusal, _parsing(parse, checked)),
                request_deserializer=None,
                response_serializer=serializer,
            )
        else:
            handlers[method.name] = handler(
                checked, request_deserializer=parse, response_serializer=serializer
            )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _serialized(answer: Any) -> bytes:
    if type(answer) is bytes:
        return answer
    serialized: bytes = answer.SerializeToString()
    return serialized


class UndecodableRequest:
    """A request body that is not a serialized message of the method's request type."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _parser(message: Any) -> Callable[[bytes], Any]:
    parse = message.FromString
    name = message.DESCRIPTOR.full_name

    def parse_request(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return UndecodableRequest(
                f"the request is not a serialized {name} ({exc}); build it from "
                "protos/fabric/rpc/v1/fabric.proto"
            )

    return parse_request


def _parsing(
    parse: Callable[[bytes], Any], method: Callable[[Any, grpc.ServicerContext], Any]
) -> Callable[[bytes, grpc.ServicerContext], Any]:
    """``method`` for a request still in bytes: parsed first, as the other methods' are."""

    def handle(request: bytes, context: grpc.ServicerContext) -> Any:
        return method(parse(request), context)

    return handle


def _checked(
    method: Callable[[Any, grpc.ServicerContext], Any], refusal: Refusal
) -> Callable[..., Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if refusal.on:
            context.abort(grpc.StatusCode.UNAVAILABLE, "this instance is stopping; ask another one")
        if type(request) is UndecodableRequest:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return method(request, context)

    return handle
