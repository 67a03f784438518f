"""Debezium change events as written by Connect's JsonConverter with schemas disabled.

A record's value is one of: a change event (``op`` r/c/u/d), a logical-decoding message (``op`` m,
which carries the fabric's truncate markers), or ``None`` — the tombstone Debezium writes after a
delete so that compaction can drop the key. Decoding checks the shape and nothing more: column
values stay as the JSON gave them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from fabric.errors import MalformedEventError

TRUNCATE_PREFIX = "cdc-fabric.truncate."

# Debezium's unchanged-TOAST placeholder as it appears in a raw value: as text, as base64 (bytea)
# and as the list of its bytes (integer arrays). A raw value without any of these cannot carry
# the placeholder, which spares the per-column scan on almost every event.
_PLACEHOLDER_TEXT = b"__debezium_unavailable_value"
_PLACEHOLDER_BASE64 = b"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ"
_PLACEHOLDER_NUMBERS = b"[95,95,100,101,98,101,122,105,117,109,95"


class Op(StrEnum):
    READ = "r"  # a row of the initial snapshot
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    TRUNCATE = "t"
    MESSAGE = "m"


class Source(NamedTuple):
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


class ChangeEvent(NamedTuple):
    op: Op
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: Source
    ts_ms: int | None
    # False when the raw value cannot carry Debezium's unchanged-TOAST placeholder anywhere.
    may_carry_placeholder: bool = True


@dataclass(frozen=True, slots=True)
class TruncateMarker:
    """The fabric's own truncate event: every row of ``table`` changed before ``lsn`` is gone."""

    table: str
    lsn: int
    commit_ts_ms: int | None


def decode(value: bytes | None) -> ChangeEvent | TruncateMarker | None:
    """Decode a record value; ``None`` for a tombstone. Raises :class:`MalformedEventError`.

    Runs once per record on the materializer's hot path, hence orjson and the inlined checks.
    """
    if value is None:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedEventError(f"value is not JSON: {exc}") from None
    if type(doc) is not dict:
        raise MalformedEventError(f"value is a JSON {type(doc).__name__}, not an object")
    raw_op = doc.get("op")
    op = _OPS.get(raw_op) if type(raw_op) is str else None
    if op is None:
        if isinstance(raw_op, str):
            raise MalformedEventError(f"unknown op {raw_op!r}")
        raise MalformedEventError(f"'op' is {raw_op!r}, not a string")
    source = _source(doc)
    if op is Op.MESSAGE:
        return _truncate_marker(doc, source)
    before, after = doc.get("before"), doc.get("after")
    if before is not None and type(before) is not dict:
        raise MalformedEventError(f"'before' is a JSON {type(before).__name__}, not an object")
    if after is not None and type(after) is not dict:
        raise MalformedEventError(f"'after' is a JSON {type(after).__name__}, not an object")
    if after is None and op in _NEEDS_AFTER:
        raise MalformedEventError(f"op {op.value!r} without an 'after' image")
    if before is None and op is Op.DELETE:
        raise MalformedEventError("op 'd' without a 'before' image")
    placeholder = (
        _PLACEHOLDER_TEXT in value or _PLACEHOLDER_BASE64 in value or _PLACEHOLDER_NUMBERS in value
    )
    ts_ms = doc.get("ts_ms")
    if ts_ms is not None and type(ts_ms) is not int:
        raise MalformedEventError(f"'ts_ms' is {ts_ms!r}, not an integer")
    return ChangeEvent(op, before, after, source, ts_ms, placeholder)


_OPS: dict[str, Op] = {op.value: op for op in Op}
_NEEDS_AFTER = frozenset((Op.READ, Op.CREATE, Op.UPDATE))


def _source(doc: dict[str, Any]) -> Source:
    src = doc.get("source")
    if type(src) is not dict:
        raise MalformedEventError("no 'source' object")
    lsn, tx_id, ts_ms = src.get("lsn"), src.get("txId"), src.get("ts_ms")
    # Inlined (no helper call): this runs for every record the materializer applies.
    if (
        (lsn is not None and type(lsn) is not int)
        or (tx_id is not None and type(tx_id) is not int)
        or (ts_ms is not None and type(ts_ms) is not int)
    ):
        bad = next(name for name in ("lsn", "txId", "ts_ms") if not _is_opt_int(src.get(name)))
        raise MalformedEventError(f"'{bad}' is {src[bad]!r}, not an integer")
    snapshot = src.get("snapshot")
    return Source(
        src.get("schema") or "",
        src.get("table") or "",
        lsn,
        tx_id,
        ts_ms,
        # Debezium writes "true", "first", "last", "incremental" … for snapshot rows, "false" else.
        snapshot is not None and snapshot != "false" and snapshot is not False,
    )


def _is_opt_int(value: Any) -> bool:
    return value is None or type(value) is int


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
