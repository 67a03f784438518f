"""Connectors as data: Debezium connector specs, validated and applied to Kafka Connect by script.

A spec (``connectors/*.json``) declares one connector; ``fabric connectors apply`` makes Connect
run exactly that, idempotently. Modules, from the edge inwards:

- :mod:`~fabric.connect.manager`: the operations (validate, apply, diff, status, restart, pause,
  resume, delete) for scripts and the CLI;
- :mod:`~fabric.connect.rest`: the Connect REST boundary (``requests`` errors translated there);
- :mod:`~fabric.connect.source`: the source Postgres as the connector's user sees it — role and
  WAL checks, the truncate-marker triggers, the replication slot and publication;
- :mod:`~fabric.connect.spec`: spec files and ``${NAME}`` / ``${NAME:-default}`` rendering;
- :mod:`~fabric.connect.capture`: which tables a spec captures and the fabric's rules on specs;
- :mod:`~fabric.connect.waiting`: waiting until Connect reports a state that holds;
- :mod:`~fabric.connect.status`, :mod:`~fabric.connect.diff`: Connect's answers as values;
- :mod:`~fabric.connect.masking`: secrets masked out of everything shown or logged.

Truncates and keyless tables, which would otherwise produce records without a key (a compacted
topic rejects them, and the rejection kills the task), are handled as :mod:`fabric.connect.capture`
describes: Debezium's truncate events are skipped and replaced by transactional logical-decoding
messages that a trigger on each captured table emits, published keyed by table to
``<topic.prefix>.message``; a table without a primary key is refused unless
``message.key.columns`` names its key.
"""

from fabric.connect.diff import ConfigDiff
from fabric.connect.manager import (
    ApplyOutcome,
    ApplyResult,
    ConnectorManager,
    DeleteResult,
    Validation,
)
from fabric.connect.masking import MASK, Masker, mask
from fabric.connect.rest import ConnectClient
from fabric.connect.source import PostgresSource, SourceDatabase, SourceParams
from fabric.connect.spec import ConnectorSpec, SpecTemplate, load_spec, load_specs, select_specs
from fabric.connect.status import ConnectorStatus, TaskStatus
from fabric.connect.waiting import Timing

__all__ = [
    "MASK",
    "ApplyOutcome",
    "ApplyResult",
    "ConfigDiff",
    "ConnectClient",
    "ConnectorManager",
    "ConnectorSpec",
    "ConnectorStatus",
    "DeleteResult",
    "Masker",
    "PostgresSource",
    "SourceDatabase",
    "SourceParams",
    "SpecTemplate",
    "TaskStatus",
    "Timing",
    "Validation",
    "load_spec",
    "load_specs",
    "mask",
    "select_specs",
]
