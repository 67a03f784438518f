"""Table definitions read from Postgres's catalog: the types :func:`fabric.core.types.decode_row`
needs to turn Debezium's JSON back into psycopg values.

The Postgres boundary for the catalog: psycopg errors become :class:`SourceDatabaseError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import sql

from fabric.core.keys import KeyCodec
from fabric.core.types import Column, ColumnType, TableSchema
from fabric.db import translated
from fabric.errors import FabricError, InvalidKeyError, SourceDatabaseError, UnknownTableError

log = logging.getLogger(__name__)

# One row per live column, in table order. A domain is described by its base type, the way
# Debezium and psycopg both treat it. The element type of an array is typelem when the type's
# subscript handler is the array one (not e.g. point's or name's fixed-length subscripting).
_COLUMNS = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       e.oid IS NOT NULL,
       b.typname, bn.nspname,
       ARRAY(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = b.oid ORDER BY enumsortorder),
       CASE WHEN a.atthasmissing THEN a.attmissingval::text END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t0 ON t0.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN t0.typtype = 'd' THEN t0.typbasetype ELSE t0.oid END
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typsubscript = 'array_subscript_handler'::regproc
JOIN pg_type b ON b.oid = coalesce(e.oid, t.oid)
JOIN pg_namespace bn ON bn.oid = b.typnamespace
WHERE c.relkind IN ('r', 'p')
  AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY n.nspname, c.relname, a.attnum
"""

_PRIMARY_KEYS = """
SELECT n.nspname, c.relname, array_agg(a.attname::text ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
GROUP BY n.nspname, c.relname
"""


def read_table_schemas(
    conn: psycopg.Connection[Any], tables: Iterable[str]
) -> dict[str, TableSchema]:
    """The definitions of ``tables`` (``schema.table``; a bare name means ``public``), keyed by
    qualified name.

    Raises :class:`UnknownTableError` when a table does not exist (or is not visible to the
    connection's role) and :class:`SourceDatabaseError` when the catalog cannot be read.
    """
    wanted = [_split(t) for t in tables]
    if not wanted:
        return {}
    params = [[s for s, _ in wanted], [t for _, t in wanted]]
    with translated("reading table definitions from pg_catalog"):
        rows = conn.execute(_COLUMNS, params).fetchall()
        keys = conn.execute(_PRIMARY_KEYS, params).fetchall()
    columns: dict[str, list[Column]] = {}
    for schema, table, name, pg_type, not_null, is_array, base, base_ns, labels, miss in rows:
        base_name = base if base_ns == "pg_catalog" else f"{base_ns}.{base}"
        column_type = ColumnType(pg_type, base_name, bool(is_array), tuple(labels))
        missing = None if miss is None else _missing_value(conn, pg_type, miss)
        columns.setdefault(f"{schema}.{table}", []).append(
            Column(name, column_type, not_null, missing)
        )
    primary = {f"{schema}.{table}": tuple(names) for schema, table, names in keys}
    missing = [f"{s}.{t}" for s, t in wanted if f"{s}.{t}" not in columns]
    if missing:
        raise UnknownTableError(
            f"table {', '.join(missing)} not found in the source database; check the name "
            "(schema.table) and that the fabric's role may see it"
        )
    schemas: dict[str, TableSchema] = {}
    for qualified, cols in columns.items():
        schema, _, table = qualified.partition(".")
        schemas[qualified] = TableSchema(schema, table, tuple(cols), primary.get(qualified, ()))
    return schemas


def _missing_value(conn: psycopg.Connection[Any], pg_type: str, text: str) -> Any:
    """The psycopg value of a column's ``attmissingval``: a one-element array, read as text.

    Postgres parses it back (as ``text[]``, then the element into the column's type), so the
    value is exactly what a SELECT of a row older than the column returns.
    """
    query = sql.SQL("SELECT (({}::text)::text[])[1]::{}").format(
        sql.Literal(text), sql.SQL(pg_type)
    )
    with translated(f"reading the default of a column of type {pg_type}"):
        row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def _split(table: str) -> tuple[str, str]:
    schema, dot, name = table.partition(".")
    return (schema, name) if dot else ("public", table)


class Catalog:
    """The definitions of the captured tables, read from Postgres when first needed and again
    when a table changes shape (``ALTER TABLE``) or appears.

    Shared by the materializer (key codecs for the routing self-check) and the read path (row
    types). Postgres being unreachable never stops ingest: lookups of a table that was never read
    raise, known tables keep their last definition, and reads are retried at most every
    ``retry_s`` seconds per table.

    A definition older than ``max_age_s`` is read again when next used, in the background (the
    caller gets the definition it has, never waits on Postgres): an ADD COLUMN shows in the
    images themselves, but a DROP COLUMN only in the catalog, so reads stop showing a dropped
    column within that time and the catalog read that follows it.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        retry_s: float = 2.0,
        max_age_s: float = 5.0,
    ) -> None:
        self._max_age_s = max_age_s
        self._connect = connect
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._schemas: dict[str, TableSchema] = {}
        self._codecs: dict[str, KeyCodec | None] = {}
        self._last_read: dict[str, float] = {}
        self._rereading: set[str] = set()

    def schema(self, table: str) -> TableSchema:
        """The definition of ``table`` (``schema.table``); raises :class:`UnknownTableError`
        when Postgres has no such table and :class:`SourceDatabaseError` when it cannot say."""
        known = self._schemas.get(table)
        if known is None:
            return self.refresh(table, force=True)
        if time.monotonic() - self._last_read.get(table, 0.0) > self._max_age_s:
            self._reread_later(table)
        return known

    def _reread_later(self, table: str) -> None:
        with self._lock:
            if table in self._rereading:
                return
            self._rereading.add(table)
        threading.Thread(
            target=self._reread, args=(table,), name=f"catalog-{table}", daemon=True
        ).start()

    def _reread(self, table: str) -> None:
        try:
            self.refresh(table)
        except FabricError as exc:
            log.warning("table definition not re-read table=%s error=%s", table, exc)
        finally:
            with self._lock:
                self._rereading.discard(table)

    def codec(self, table: str) -> KeyCodec | None:
        """The key codec of ``table``, or None while its definition cannot be read (or it has
        no primary key). Never blocks for more than one catalog read per ``retry_s``."""
        if table in self._codecs:
            return self._codecs[table]
        try:
            self.refresh(table)
        except FabricError as exc:
            log.warning("table definition unavailable table=%s error=%s", table, exc)
        return self._codecs.get(table)

    def refresh(self, table: str, *, force: bool = False) -> TableSchema:
        """Read ``table``'s definition again (after DDL); rate-limited unless ``force``."""
        with self._lock:
            now = time.monotonic()
            known = self._schemas.get(table)
            recent = now - self._last_read.get(table, -1e9) < self._retry_s
            if recent and not force:
                if known is not None:
                    return known
                raise SourceDatabaseError(f"definition of {table} not readable yet; retrying")
            self._last_read[table] = now
            with self._connect() as conn:
                schema = read_table_schemas(conn, [table])[table]
            if known is None or known.version != schema.version:
                log.info("table definition read table=%s version=%s", table, schema.version)
            self._schemas[table] = schema
            try:
                self._codecs[table] = KeyCodec(schema)
            except InvalidKeyError:
                self._codecs[table] = None
            return schema
