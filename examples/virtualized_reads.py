"""A service's primary-key read moved from Postgres to the fabric without touching its SQL.

``user_profile`` is written the way services write key reads: one parameterized SELECT. Given a
psycopg connection it runs on Postgres; given a :class:`FabricClient` the same statement is
answered by the fabric's instances (``FabricClient.query``), with the same rows, types and order.
Statements the fabric does not answer go to ``fallback`` (here: the Postgres connection).

Run it against the dev stack with the sample loaded and an instance serving::

    .venv/bin/fabric serve &
    .venv/bin/python examples/virtualized_reads.py 42 [--endpoint 127.0.0.1:27070]
"""

from __future__ import annotations

import argparse
from typing import Any

import psycopg
from psycopg.rows import dict_row

from fabric import config, db
from fabric.client import FabricClient

PROFILE = """
    SELECT id, email, display_name, rating
    FROM public.users
    WHERE id = %s
"""
RECENT_BIDS = "SELECT * FROM bids WHERE bidder_id = %s ORDER BY placed_at DESC LIMIT 5"


def user_profile(
    conn_or_client: psycopg.Connection[Any] | FabricClient, user_id: int
) -> dict[str, Any] | None:
    """The user's profile, or None: one key read, wherever it is answered."""
    if isinstance(conn_or_client, FabricClient):
        # The swap: the same statement and parameters, answered by the fabric.
        rows = conn_or_client.query(PROFILE, (user_id,), row_factory=dict_row)
    else:
        rows = conn_or_client.cursor(row_factory=dict_row).execute(PROFILE, (user_id,)).fetchall()
    return rows[0] if rows else None


def recent_bids(
    client: FabricClient, conn: psycopg.Connection[Any], user_id: int
) -> list[dict[str, Any]]:
    """Not a key read (bidder_id is not the key): the fabric hands it to Postgres."""
    rows: list[dict[str, Any]] = client.query(
        RECENT_BIDS, (user_id,), row_factory=dict_row, fallback=conn
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("user_id", type=int, nargs="?", default=1)
    parser.add_argument("--endpoint", action="append", help="an instance (default: config)")
    args = parser.parse_args()
    cfg = config.load()
    with (
        db.connect(cfg.endpoints) as conn,
        FabricClient(args.endpoint or [cfg.serve.endpoint]) as client,
    ):
        from_postgres = user_profile(conn, args.user_id)
        from_fabric = user_profile(client, args.user_id)
        print(f"postgres: {from_postgres}")
        print(f"fabric:   {from_fabric}")
        print("same rows" if from_postgres == from_fabric else "DIFFERENT (is the fabric behind?)")
        print(f"recent bids (through the fallback): {len(recent_bids(client, conn, args.user_id))}")


if __name__ == "__main__":
    main()
