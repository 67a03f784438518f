"""Debezium change events as written by Connect's JsonConverter with schemas disabled.

A record's value is one of: a change event (``op`` r/c/u/d), a logical-decoding message (``op`` m,
which carries the fabric's truncate markers), or ``None`` — the tombstone Debezium writes after a
delete so that compaction can drop the key. Decoding checks the shape and nothing more: column
values stay as the JSON gave them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fabric.errors import MalformedEventError

TRUNCATE_PREFIX = "cdc-fabric.truncate."


class Op(StrEnum):
    READ = "r"  # a row of the initial snapshot
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    TRUNCATE = "t"
    MESSAGE = "m"


@dataclass(frozen=True, slots=True)
class Source:
    """Where and when the change happened in Postgres."""

    schema: str
    table: str
    lsn: int | None
    tx_id: int | None
    commit_ts_ms: int | None
    snapshot: bool

    @property
    def table_name(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    op: Op
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: Source
    ts_ms: int | None


@dataclass(frozen=True, slots=True)
class TruncateMarker:
    """The fabric's own truncate event: every row of ``table`` changed before ``lsn`` is gone."""

    table: str
    lsn: int
    commit_ts_ms: int | None


def decode(value: bytes | None) -> ChangeEvent | TruncateMarker | None:
    """Decode a record value; ``None`` for a tombstone. Raises :class:`MalformedEventError`."""
    if value is None:
        return None
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEventError(f"value is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedEventError(f"value is a JSON {type(doc).__name__}, not an object")
    op = _op(doc)
    source = _source(doc)
    if op is Op.MESSAGE:
        return _truncate_marker(doc, source)
    before, after = _image(doc, "before"), _image(doc, "after")
    if op in (Op.READ, Op.CREATE, Op.UPDATE) and after is None:
        raise MalformedEventError(f"op {op.value!r} without an 'after' image")
    if op is Op.DELETE and before is None:
        raise MalformedEventError("op 'd' without a 'before' image")
    return ChangeEvent(op, before, after, source, _opt_int(doc, "ts_ms"))


def _op(doc: dict[str, Any]) -> Op:
    raw = doc.get("op")
    if not isinstance(raw, str):
        raise MalformedEventError(f"'op' is {raw!r}, not a string")
    try:
        return Op(raw)
    except ValueError:
        raise MalformedEventError(f"unknown op {raw!r}") from None


def _source(doc: dict[str, Any]) -> Source:
    src = doc.get("source")
    if not isinstance(src, dict):
        raise MalformedEventError("no 'source' object")
    snapshot = src.get("snapshot")
    return Source(
        schema=str(src.get("schema") or ""),
        table=str(src.get("table") or ""),
        lsn=_opt_int(src, "lsn"),
        tx_id=_opt_int(src, "txId"),
        commit_ts_ms=_opt_int(src, "ts_ms"),
        # Debezium writes "true", "first", "last", "incremental" … for snapshot rows, "false" else.
        snapshot=snapshot not in (None, False, "false"),
    )


def _image(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    image = doc.get(name)
    if image is not None and not isinstance(image, dict):
        raise MalformedEventError(f"'{name}' is a JSON {type(image).__name__}, not an object")
    return image


def _truncate_marker(doc: dict[str, Any], source: Source) -> TruncateMarker:
    message = doc.get("message")
    if not isinstance(message, dict):
        raise MalformedEventError("op 'm' without a 'message' object")
    prefix = message.get("prefix")
    if not isinstance(prefix, str) or not prefix.startswith(TRUNCATE_PREFIX):
        raise MalformedEventError(f"logical message with foreign prefix {prefix!r}")
    if source.lsn is None:
        raise MalformedEventError("truncate marker without a source LSN")
    table = prefix.removeprefix(TRUNCATE_PREFIX)
    content = message.get("content")
    if isinstance(content, str) and content:
        try:
            named = base64.b64decode(content, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise MalformedEventError("truncate marker content is not base64 text") from None
        if named != table:
            raise MalformedEventError(f"truncate marker names {named!r} under prefix {prefix!r}")
    return TruncateMarker(table, source.lsn, source.commit_ts_ms)


def _opt_int(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEventError(f"'{key}' is {value!r}, not an integer")
    return value
