"""Consistency tokens: read your own writes through the fabric.

After a transaction commits, :func:`consistency_token` reads the database's WAL insert position
on the same connection. Every change of that transaction lies before it, so a lookup with
``min_lsn=token`` is answered only by a partition that has applied the transaction (or reports
how far behind it is). Pass the token on as an ``int``, or as Postgres's text (``format_lsn``):
every ``min_lsn=`` parameter takes both.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from fabric.core.lsn import format_lsn, parse_lsn
from fabric.db import translated
from fabric.errors import InvalidBoundError, InvalidLsnError
from fabric.rpc.v1 import fabric_pb2 as pb

__all__ = ["consistency_token", "format_lsn", "parse_lsn", "position_bound"]


def consistency_token(conn: psycopg.Connection[Any]) -> int:
    """The WAL position after the last transaction committed on ``conn``: a ``min_lsn``.

    Call it after ``conn.commit()`` (or an autocommit statement). Inside an open transaction the
    writes are not committed yet and no position covers them: that raises
    :class:`InvalidLsnError`. The insert position is used, not ``pg_current_wal_lsn()``: with
    ``synchronous_commit=off`` the write position may still be before the commit record.
    """
    status = conn.info.transaction_status
    if status is not TransactionStatus.IDLE:
        raise InvalidLsnError(
            f"no consistency token inside an open transaction ({status.name}): commit first,"
            " then take the token on the same connection"
        )
    with translated("reading the WAL position for a consistency token"):
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        if not conn.autocommit:
            conn.rollback()  # the SELECT opened a transaction: leave the connection as it was
    if row is None or not isinstance(row[0], str):
        raise InvalidLsnError("Postgres returned no WAL position for the consistency token")
    return parse_lsn(row[0])


def position_bound(
    min_lsn: int | str | None, max_staleness: float | timedelta | None
) -> pb.PositionBound | None:
    """The request's bound (None: unbounded) from a token and a staleness in seconds."""
    if min_lsn is None and max_staleness is None:
        return None
    bound = pb.PositionBound()
    if min_lsn is not None:
        bound.min_lsn = parse_lsn(min_lsn)
    if max_staleness is not None:
        seconds = (
            max_staleness.total_seconds() if isinstance(max_staleness, timedelta) else max_staleness
        )
        if not 0 < seconds * 1000 < 2**32:
            raise InvalidBoundError(
                f"max_staleness {max_staleness!r} must be a positive duration (seconds, or a"
                " timedelta) of at least a millisecond"
            )
        bound.max_staleness_ms = max(1, round(seconds * 1000))
    return bound
