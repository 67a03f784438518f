"""The ``Fabric`` service's method handlers on a server.

They are the generated ones (``fabric_pb2_grpc.add_FabricServicer_to_server``) with one
difference: a method may answer with bytes, a message already written to the wire
(:mod:`fabric.rpc.wire`, or a peer's answer passed on), and those bytes are sent as they are.
"""

from __future__ import annotations

from typing import Any

import grpc

from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.serve.service import FabricService

SERVICE_NAME = "fabric.rpc.v1.Fabric"


def add_fabric_service(service: FabricService, server: grpc.Server) -> None:
    handlers = {
        "Get": grpc.unary_unary_rpc_method_handler(
            service.Get,
            request_deserializer=pb.GetRequest.FromString,
            response_serializer=_serialized,
        ),
        "BatchGet": grpc.unary_unary_rpc_method_handler(
            service.BatchGet,
            request_deserializer=pb.BatchGetRequest.FromString,
            response_serializer=_serialized,
        ),
        "Scan": grpc.unary_stream_rpc_method_handler(
            service.Scan,
            request_deserializer=pb.ScanRequest.FromString,
            response_serializer=_serialized,
        ),
        "GetTopology": grpc.unary_unary_rpc_method_handler(
            service.GetTopology,
            request_deserializer=pb.GetTopologyRequest.FromString,
            response_serializer=_serialized,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            service.Watch,
            request_deserializer=pb.WatchRequest.FromString,
            response_serializer=_serialized,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _serialized(answer: Any) -> bytes:
    if type(answer) is bytes:
        return answer
    serialized: bytes = answer.SerializeToString()
    return serialized
