"""Whether a well-formed record belongs on the table topic it arrived on.

Decoding checks a record value's shape (:mod:`fabric.core.events`). These checks compare the
event with its record: the table it names, and the record key with the row's key columns, which
Debezium writes from the same row. A record that fails one was not written by the table's
connector (a producer writing to the topic by hand, a topic shared by mistake): the materializer
sends it to the dead-letter topic and ``Watch`` skips it, so that it neither changes a stored row
nor shows as a change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fabric.core.events import Source


def foreign_table(source: Source, schema: str, table: str) -> str | None:
    """Why an event from ``source`` is not a change of ``schema.table``, or None."""
    if source.table == table and source.schema == schema:
        return None
    return f"event of table {source.schema}.{source.table} on the topic of {schema}.{table}"


def key_mismatch(record_key: bytes, image: Mapping[str, Any]) -> str | None:
    """Why ``record_key`` is not the key of the row ``image``, or None: every field of the key
    must be a column of the image holding the same JSON value."""
    fields = _key_fields(record_key)
    if isinstance(fields, str):
        return fields
    for name, value in fields.items():
        if name not in image:
            return f"record key field {name} is not a column of the row"
        column = image[name]
        if type(column) is not type(value) or column != value:
            return f"record key has {name}={value!r:.40}, the row {name}={column!r:.40}"
    return None


def tombstone_key_problem(record_key: bytes) -> str | None:
    """Why ``record_key`` cannot be the key of a tombstone Debezium wrote, or None."""
    fields = _key_fields(record_key)
    return fields if isinstance(fields, str) else None


def _key_fields(record_key: bytes) -> dict[str, Any] | str:
    """The fields of a record key, or why it is not a key Debezium writes: a JSON object of
    the key columns, none of them null."""
    try:
        fields = orjson.loads(record_key)
    except orjson.JSONDecodeError:
        return "record key is not JSON"
    if type(fields) is not dict or not fields:
        return "record key is not a JSON object of key columns"
    null = next((name for name, value in fields.items() if value is None), None)
    if null is not None:
        return f"record key field {null} is null"
    return fields
