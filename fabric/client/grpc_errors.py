"""gRPC errors, translated once, here, into :mod:`fabric.errors`: NOT_FOUND is
:class:`UnknownTableError`, INVALID_ARGUMENT :class:`InvalidKeyError`, UNAVAILABLE
:class:`FabricUnavailableError`, DEADLINE_EXCEEDED :class:`FabricTimeoutError`,
FAILED_PRECONDITION (a lookup's ``max_staleness`` not met) :class:`TooStaleError`, anything else
:class:`FabricClientError`; each carries the service's message."""

from __future__ import annotations

import grpc

from fabric.errors import (
    FabricClientError,
    FabricError,
    FabricTimeoutError,
    FabricUnavailableError,
    InvalidKeyError,
    TooStaleError,
    UnknownTableError,
)

_ERRORS: dict[str, type[FabricError]] = {
    "NOT_FOUND": UnknownTableError,
    "INVALID_ARGUMENT": InvalidKeyError,
    "UNAVAILABLE": FabricUnavailableError,
    "DEADLINE_EXCEEDED": FabricTimeoutError,
    "FAILED_PRECONDITION": TooStaleError,
}


def translated(exc: grpc.RpcError, what: str) -> FabricError:
    return status_error(status_code(exc).name, f"{what}: ", status_details(exc))


def status_error(status: str, context: str, message: str) -> FabricError:
    """The error for a status name, as a call's or a batch lookup's answer carries it."""
    kind = _ERRORS.get(status, FabricClientError)
    suffix = "" if kind is not FabricClientError else f" ({status})"
    return kind(f"{context}{message or status}{suffix}")


def status_code(exc: grpc.RpcError) -> grpc.StatusCode:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def status_details(exc: grpc.RpcError) -> str:
    details = exc.details() if isinstance(exc, grpc.Call) else None
    return details or str(exc)
