"""The one error hierarchy of cdc-fabric.

Every error names what is wrong and what to do about it, so the CLI can print ``str(error)`` and
exit. Foreign errors (``requests``, ``psycopg``, ``subprocess``) are translated into these at the
module that talks to the foreign system, with ``raise ... from exc``.
"""

from __future__ import annotations


class FabricError(Exception):
    """Base of every error cdc-fabric raises on purpose."""


class ConfigError(FabricError):
    """A setting is missing or malformed: fix the environment variable or file it names."""


class StackError(FabricError):
    """The local stack could not be started, stopped or inspected."""


class MissingToolError(StackError):
    """A program the stack needs (Java, Maven, Postgres binaries, apt-get) is not available."""


class PortInUseError(StackError):
    """A port the stack wants is already taken by a process the stack did not start."""


class ComponentStartError(StackError):
    """A component exited, or never became healthy, while starting; carries its log tail."""


class SpecError(FabricError):
    """A connector spec is malformed or refers to a value that was not provided."""


class ConnectError(FabricError):
    """The Kafka Connect cluster refused or failed an operation."""


class ConnectUnreachableError(ConnectError):
    """No Connect worker answers at the configured REST URL."""


class ConnectorInvalidError(ConnectError):
    """Connect's validation rejected a connector config; ``field_errors`` says which fields."""

    def __init__(self, message: str, field_errors: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.field_errors = field_errors


class ConnectorFailedError(ConnectError):
    """A connector or one of its tasks is FAILED, or did not reach RUNNING in time."""


class KafkaUnavailableError(FabricError):
    """The Kafka bootstrap address does not answer."""


class ConsumerFailedError(KafkaUnavailableError):
    """librdkafka declared a consumer dead for good (e.g. a static member fenced after a broker
    restart): only a new consumer can rejoin the group."""


class SourceDatabaseError(FabricError):
    """The source Postgres refused a connection or an operation the fabric needs."""


class MalformedEventError(FabricError):
    """A record on a CDC topic is not a Debezium change event this fabric can apply.

    The materializer routes such a record to the dead-letter topic with ``reason`` in its headers.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreError(FabricError):
    """A partition store could not be opened, read or written; the message names its path."""


class StoreLockedError(StoreError):
    """Another process holds the store's RocksDB LOCK (an instance still stopping, or a second
    instance given the same state folder)."""


class StoreCorruptError(StoreError):
    """A partition store holds bytes this fabric cannot decode: destroy it and rebuild it from
    the topic."""


class InvalidKeyError(FabricError):
    """A lookup key does not fit its table's primary key; the message names the column."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class UnknownTableError(FabricError):
    """A table the fabric does not materialize (not captured, or not in the catalog)."""


class InvalidBoundError(InvalidKeyError):
    """A lookup's bound is malformed: ``min_lsn`` not a WAL position, ``max_staleness`` not a
    positive duration."""


class InvalidLsnError(InvalidBoundError):
    """A consistency token that is not a WAL position: give the integer or Postgres's
    ``16/B374D848`` text that ``fabric.client.consistency_token`` returns."""


class NotUpToBoundError(FabricError):
    """A lookup's partition did not reach its :class:`PositionBound` within the deadline; the
    message says how far behind it is. Retry with a longer deadline or a looser bound."""


class PositionNotReachedError(NotUpToBoundError):
    """The partition had not applied up to the lookup's ``min_lsn`` by its deadline."""


class TooStaleError(NotUpToBoundError):
    """The partition did not reflect the database recently enough for ``max_staleness``."""


class FabricClientError(FabricError):
    """A call to the fabric's query service failed in a way the caller cannot retry: the message
    carries the service's own explanation."""


class FabricUnavailableError(FabricClientError):
    """No instance answered within the deadline and retries (instances down, or a partition
    moving or restoring): retry later; the message carries the service's last explanation."""


class FabricTimeoutError(FabricUnavailableError):
    """A call ran out of its deadline: retry, or give the client a longer ``timeout_s``."""


class UnsupportedQueryError(FabricError):
    """A SQL statement is not one of the primary-key reads the fabric answers; the message names
    the part. Run it on Postgres (``FabricClient.query(..., fallback=conn)`` does)."""


class InvalidQueryError(FabricError):
    """A SQL statement or its parameters are malformed (Postgres would refuse them too): fix the
    call; the message says what is wrong."""
