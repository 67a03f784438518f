"""How an instance presents itself to the consumer group: its id and its advertised endpoint.

The endpoint travels in the member's ``client.id`` (``<instance-id>@<host>:<port>``), which the
group coordinator reports with each member's assignment: that is how any instance, or a client,
learns who owns a partition and where to reach it, with no registry to run.
"""

from __future__ import annotations

from dataclasses import dataclass

_SEPARATOR = "@"


@dataclass(frozen=True)
class HostInfo:
    """A fabric instance as the group sees it: its id and where it serves gRPC."""

    instance_id: str
    endpoint: str


def member_client_id(instance_id: str, endpoint: str | None) -> str:
    """The consumer ``client.id`` that advertises an instance's endpoint to the group."""
    return instance_id if endpoint is None else f"{instance_id}{_SEPARATOR}{endpoint}"


def parse_client_id(client_id: str) -> HostInfo | None:
    """The instance behind a member's ``client.id``; None for a member that serves no gRPC."""
    instance_id, separator, endpoint = client_id.rpartition(_SEPARATOR)
    if not separator or not instance_id or ":" not in endpoint:
        return None
    return HostInfo(instance_id, endpoint)
