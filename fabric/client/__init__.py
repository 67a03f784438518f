"""The Python client of the fabric's query service: typed rows, routed to their owner.

Routing (``smart=True``). The client reads the topology once (tables, key column types,
partition owners), computes a key's partition exactly as the service does
(:class:`fabric.core.keys.KeyCodec`, then Kafka's murmur2 over the record key) and calls the
partition's owner directly, so no call is forwarded between instances. The topology is read again
after any UNAVAILABLE, after an answer served by another instance than the owner it targeted, and
every :data:`~fabric.client.topology.TOPOLOGY_MAX_AGE_S`. A call that meets UNAVAILABLE goes next
to another instance, which forwards it to the owner. ``smart=False`` sends every call to the
instances in turn; they forward what they do not own (``stats.forwarded`` counts those calls).

Every unary call has a deadline of ``timeout_s``, shared by its retries (``retries`` more
attempts on UNAVAILABLE, with a short backoff). gRPC errors are translated once, in
:mod:`fabric.client.grpc_errors`, into :mod:`fabric.errors`: NOT_FOUND is
:class:`UnknownTableError`, INVALID_ARGUMENT :class:`InvalidKeyError`, UNAVAILABLE after the
retries :class:`FabricUnavailableError`, DEADLINE_EXCEEDED :class:`FabricTimeoutError`, anything
else :class:`FabricClientError`; each carries the service's message. A missing key is ``None``,
never an error. A lookup bounded by ``min_lsn`` (a :func:`consistency_token`) or
``max_staleness`` and not answered in time raises :class:`FabricTimeoutError` or
:class:`TooStaleError` (FAILED_PRECONDITION) saying how far behind the partition is.

Scans and watches are streams: when one breaks, the client continues it on another instance from
the last resume token, so the caller sees every row (change) once.
"""

from fabric.client.client import MAX_BATCH, FabricClient
from fabric.client.consistency import consistency_token, format_lsn, parse_lsn
from fabric.client.messages import Change, ChangeKind, FabricRow, Freshness, KeyInput
from fabric.client.topology import InstanceInfo, KeyColumn, PartitionInfo, TableInfo, Topology
from fabric.client.transport import ClientStats

__all__ = [
    "MAX_BATCH",
    "Change",
    "ChangeKind",
    "ClientStats",
    "FabricClient",
    "FabricRow",
    "Freshness",
    "InstanceInfo",
    "KeyColumn",
    "KeyInput",
    "PartitionInfo",
    "TableInfo",
    "Topology",
    "consistency_token",
    "format_lsn",
    "parse_lsn",
]
