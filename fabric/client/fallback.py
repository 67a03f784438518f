"""The fallback of virtualized reads: the caller's own Postgres connection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from fabric.errors import UnsupportedQueryError


def wants_dicts(row_factory: Any) -> bool:
    """Whether ``row_factory`` asks for dicts; the fabric answers only tuples or dicts."""
    if row_factory is None or row_factory is tuple_row or row_factory == "tuple":
        return False
    if row_factory is dict_row or row_factory == "dict":
        return True
    raise UnsupportedQueryError(
        f"row_factory {getattr(row_factory, '__name__', row_factory)!r}: the fabric returns "
        "tuples or dicts (tuple_row, dict_row)"
    )


def run_on_postgres(
    conn: psycopg.Connection[Any],
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None,
    row_factory: Any,
) -> list[Any]:
    # The caller's own connection, used as the caller would use it: its psycopg errors reach the
    # caller unchanged, exactly as if the statement had never been routed through the fabric.
    factory = {None: tuple_row, "tuple": tuple_row, "dict": dict_row}.get(row_factory, row_factory)
    with conn.cursor(row_factory=factory) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
