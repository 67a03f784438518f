"""How an instance presents itself to the consumer group: its id and its advertised endpoint.

The endpoint travels in the member's ``client.id`` (``<instance-id>@<host>:<port>+<peer-port>``),
which the group coordinator reports with each member's assignment: that is how any instance, or
a client, learns who owns a partition and where to reach it, with no registry to run. The peer
port is the instance's forwarding link (:mod:`fabric.serve.forwarding`), on the same host.
"""

from __future__ import annotations

from dataclasses import dataclass

_SEPARATOR = "@"
_PEER = "+"


@dataclass(frozen=True)
class HostInfo:
    """A fabric instance as the group sees it: its id, where it serves gRPC, and the port of its
    forwarding link (None: it takes no forwarded lookups)."""

    instance_id: str
    endpoint: str
    peer_port: int | None = None

    @property
    def client_id(self) -> str:
        return member_client_id(self.instance_id, self.endpoint, self.peer_port)

    @property
    def peer_address(self) -> str | None:
        """Where other instances forward lookups to this one: the endpoint's host, the peer
        port."""
        if self.peer_port is None:
            return None
        return f"{self.endpoint.rpartition(':')[0]}:{self.peer_port}"


def member_client_id(instance_id: str, endpoint: str | None, peer_port: int | None = None) -> str:
    """The consumer ``client.id`` that advertises an instance's endpoints to the group."""
    if endpoint is None:
        return instance_id
    peer = "" if peer_port is None else f"{_PEER}{peer_port}"
    return f"{instance_id}{_SEPARATOR}{endpoint}{peer}"


def parse_client_id(client_id: str) -> HostInfo | None:
    """The instance behind a member's ``client.id``; None for a member that serves no gRPC."""
    instance_id, separator, advertised = client_id.rpartition(_SEPARATOR)
    endpoint, plus, peer = advertised.partition(_PEER)
    if not separator or not instance_id or ":" not in endpoint:
        return None
    if not plus:
        return HostInfo(instance_id, endpoint)
    if not peer.isdigit() or not 0 < int(peer) < 65536:
        return None
    return HostInfo(instance_id, endpoint, int(peer))
