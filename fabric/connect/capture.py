"""What a Debezium Postgres spec captures, and the rules the fabric adds on top of Connect's.

Pure logic over a connector config and the source's table catalogue; no I/O.

Two kinds of change have no row key, and a compacted topic rejects a record without a key, which
kills the connector task. The fabric's answer:

- **TRUNCATE**: the spec must skip Debezium's own truncate events (``skipped.operations`` holds
  ``t``); instead ``apply`` installs on every captured table a statement-level ``AFTER TRUNCATE``
  trigger that emits a transactional logical-decoding message with the prefix
  ``cdc-fabric.truncate.<schema>.<table>``. Debezium publishes it to ``<topic.prefix>.message``
  keyed ``{"prefix": "cdc-fabric.truncate.<schema>.<table>"}``; compaction keeps the latest
  truncate per table. Meaning: every row of that table whose last change has an LSN below the
  message's LSN is gone (TRUNCATE's ACCESS EXCLUSIVE lock orders it against every other change to
  the table). The spec's message prefix filters must let every captured table's prefix through.
  Logical-decoding messages are database-wide, not filtered by publication: a connector's
  ``<topic.prefix>.message`` also carries the markers of tables in the same database that other
  connectors capture (unless its ``message.prefix.include.list`` is narrowed to its own tables);
  consumers ignore markers of tables they do not hold.
- **Tables without a primary key** would be published with a null key. A captured table without
  one is refused unless ``message.key.columns`` names its key columns, and its REPLICA IDENTITY is
  FULL or an index (otherwise Postgres refuses every UPDATE and DELETE on a published table).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fabric.core.events import TRUNCATE_PREFIX
from fabric.errors import SpecError

JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
DEFAULT_SLOT = "debezium"  # Debezium's defaults, for specs that do not name them
DEFAULT_PUBLICATION = "dbz_publication"

FieldErrors = dict[str, list[str]]


@dataclass(frozen=True)
class TableInfo:
    """A table of the source database, as far as capturing it is concerned."""

    schema: str
    name: str
    has_primary_key: bool
    replica_identity: str  # pg_class.relreplident: d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[str, ...]
    owner: str
    owned: bool  # the connector user owns it, directly or through role membership

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class TableFilter:
    """Debezium's table selection: comma-separated regular expressions, each matched against the
    whole ``schema.table`` (or schema) name, case-insensitively."""

    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]
    schema_include: tuple[re.Pattern[str], ...]
    schema_exclude: tuple[re.Pattern[str], ...]

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> TableFilter:
        return cls(
            include=_patterns(config.get("table.include.list", "")),
            exclude=_patterns(config.get("table.exclude.list", "")),
            schema_include=_patterns(config.get("schema.include.list", "")),
            schema_exclude=_patterns(config.get("schema.exclude.list", "")),
        )

    def captures(self, table: TableInfo) -> bool:
        if self.schema_include and not _any(self.schema_include, table.schema):
            return False
        if _any(self.schema_exclude, table.schema):
            return False
        if self.include and not _any(self.include, table.qualified):
            return False
        return not _any(self.exclude, table.qualified)


def captured_tables(tables: Sequence[TableInfo], config: Mapping[str, str]) -> list[TableInfo]:
    table_filter = TableFilter.from_config(config)
    return [t for t in tables if table_filter.captures(t)]


def key_columns(config: Mapping[str, str]) -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
    """``message.key.columns``: ``<table regex>:<col>,<col>;<table regex>:<col>…``."""
    entries = []
    for entry in config.get("message.key.columns", "").split(";"):
        table, sep, columns = entry.strip().partition(":")
        names = tuple(c.strip() for c in columns.split(",") if c.strip())
        if sep and table.strip() and names:
            entries.append((_regex(table.strip()), names))
    return entries


def rule_errors(config: Mapping[str, str]) -> FieldErrors:
    """Where ``config`` breaks what the fabric relies on, per setting."""
    errors: FieldErrors = {}

    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            errors.setdefault(key, []).append(message)

    need(
        config.get("plugin.name") == "pgoutput",
        "plugin.name",
        "must be pgoutput: the fabric's truncate markers are logical-decoding messages, "
        "which Debezium receives through pgoutput",
    )
    skipped = {op.strip() for op in config.get("skipped.operations", "t").split(",")}
    need(
        "t" in skipped,
        "skipped.operations",
        "must include t: Debezium's truncate events have a null key, which a compacted topic "
        "rejects (the task dies); the fabric's truncate triggers replace them",
    )
    for side in ("key", "value"):
        need(
            config.get(f"{side}.converter") == JSON_CONVERTER,
            f"{side}.converter",
            f"must be {JSON_CONVERTER}: the fabric decodes and routes JSON records",
        )
        need(
            config.get(f"{side}.converter.schemas.enable") == "false",
            f"{side}.converter.schemas.enable",
            "must be false: the fabric reads schemaless JSON; the key bytes decide the partition",
        )
    for key, least in (
        ("topic.creation.default.partitions", 1),
        ("topic.creation.default.replication.factor", -1),
    ):
        raw = config.get(key)
        need(
            raw is not None and _is_int_at_least(raw, least),
            key,
            f"must be a whole number (at least {least}): without it Connect creates no topics",
        )
    return errors


def capture_errors(captured: Sequence[TableInfo], config: Mapping[str, str]) -> FieldErrors:
    """Why the ``captured`` tables cannot be captured as the spec stands, per setting."""
    if not captured:
        which = config.get("table.include.list") or config.get("schema.include.list") or "(all)"
        return {
            "table.include.list": [
                f"matches no table in database {config.get('database.dbname', '?')} ({which}): "
                "create the tables first (`fabric sample load` for the auction sample)"
            ]
        }
    errors: FieldErrors = {}
    for key, message in [*_marker_errors(captured, config), *_key_errors(captured, config)]:
        errors.setdefault(key, []).append(message)
    return errors


def _marker_errors(
    captured: Sequence[TableInfo], config: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Captured tables whose truncate markers the message prefix filters would drop."""
    include = _patterns(config.get("message.prefix.include.list", ""))
    exclude = _patterns(config.get("message.prefix.exclude.list", ""))
    errors = []
    for table in captured:
        prefix = f"{TRUNCATE_PREFIX}{table.qualified}"
        if _any(exclude, prefix):
            key = "message.prefix.exclude.list"
        elif include and not _any(include, prefix):
            key = "message.prefix.include.list"
        else:
            continue
        errors.append(
            (
                key,
                f"filters out {prefix}, the truncate marker of {table.qualified}: its truncates "
                r"would be lost (e.g. include cdc-fabric\.truncate\..*)",
            )
        )
    return errors


def _key_errors(captured: Sequence[TableInfo], config: Mapping[str, str]) -> list[tuple[str, str]]:
    """Captured tables without a primary key that the spec gives no usable key."""
    field = "message.key.columns"
    keys = key_columns(config)
    errors = []
    for table in captured:
        if table.has_primary_key:
            continue
        named = next((cols for rx, cols in keys if rx.fullmatch(table.qualified)), None)
        if named is None:
            errors.append(
                (
                    field,
                    f"{table.qualified} has no primary key: name its key columns in "
                    f"message.key.columns (e.g. {table.qualified}:col1,col2), or add a primary "
                    "key; without a key its changes would be published with a null key, which "
                    "the compacted topic rejects",
                )
            )
            continue
        unknown = [c for c in named if c not in table.columns]
        if unknown:
            errors.append(
                (
                    field,
                    f"names {', '.join(unknown)} for {table.qualified}, which has no such column "
                    f"(columns: {', '.join(table.columns)})",
                )
            )
        if table.replica_identity not in ("f", "i"):
            errors.append(
                (
                    field,
                    f"{table.qualified} has no primary key and no REPLICA IDENTITY: once "
                    "published, every UPDATE and DELETE on it fails; run "
                    f"ALTER TABLE {table.qualified} REPLICA IDENTITY FULL",
                )
            )
    return errors


def slot_name(config: Mapping[str, str]) -> str:
    return config.get("slot.name") or DEFAULT_SLOT


def publication_name(config: Mapping[str, str]) -> str:
    return config.get("publication.name") or DEFAULT_PUBLICATION


def _patterns(raw: str) -> tuple[re.Pattern[str], ...]:
    return tuple(_regex(p.strip()) for p in raw.split(",") if p.strip())


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise SpecError(f"{pattern!r} is not a valid regular expression: {exc}") from exc


def _any(patterns: Sequence[re.Pattern[str]], name: str) -> bool:
    return any(p.fullmatch(name) for p in patterns)


def _is_int_at_least(raw: str, least: int) -> bool:
    try:
        return int(raw) >= least
    except ValueError:
        return False
