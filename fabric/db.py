"""The boundary to Postgres: connections opened here, psycopg errors translated here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from fabric.config import Endpoints
from fabric.errors import SourceDatabaseError


def connect(
    endpoints: Endpoints, *, dsn: str | None = None, autocommit: bool = True
) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection to ``dsn`` (the application database by default).

    The password comes from the stack's pgpass file, so no DSN the fabric prints carries one.
    """
    target = dsn or endpoints.pg_dsn
    if endpoints.pgpass_file is not None:
        target = psycopg.conninfo.make_conninfo(target, passfile=str(endpoints.pgpass_file))
    try:
        return psycopg.connect(target, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise SourceDatabaseError(
            f"cannot connect to Postgres ({_describe(target)}): {_first_line(exc)}; "
            "is the stack up (`fabric stack status`), and are the credentials right?"
        ) from exc


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Run a block of database work, turning psycopg errors into :class:`SourceDatabaseError`."""
    try:
        yield
    except psycopg.Error as exc:
        raise SourceDatabaseError(f"{action} failed: {_first_line(exc)}") from exc


def _describe(dsn: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in params.items())


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
