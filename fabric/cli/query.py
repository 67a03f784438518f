"""`fabric get | scan | watch | topology`: read the fabric from the shell, one JSON line per answer.

Key values are written as JSON scalars or bare strings and read as the key column's type
(``42``, ``'"42"'`` for a text key, ``2025-01-31`` for a date, a UUID's text); a composite key
is written as ``col=value`` pairs: ``fabric get bids item_id=7 bid_no=2``. Values print readably:
numerics as strings (no float rounding), times in ISO 8601, bytes in base64.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from fabric.client import FabricClient, KeyColumn, TableInfo
from fabric.config import FabricConfig
from fabric.errors import InvalidKeyError, UnsupportedQueryError
from fabric.query import coerce_key_value


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    get = areas.add_parser("get", help="rows by primary key, from the fabric")
    get.add_argument("table", help="schema.table (a bare name means public)")
    get.add_argument(
        "keys",
        nargs="+",
        metavar="KEY",
        help="a key value, or col=value pairs for a composite key (a repeated column starts "
        "the next key); prints the row or null per key",
    )
    get.set_defaults(handler=_get)

    scan = areas.add_parser("scan", help="the rows of a table or of a key prefix")
    scan.add_argument("table")
    scan.add_argument(
        "--prefix", action="append", default=[], metavar="COL=VALUE", help="(repeatable)"
    )
    scan.add_argument("--limit", type=int, metavar="N")
    scan.set_defaults(handler=_scan)

    watch = areas.add_parser("watch", help="follow the changes of a table, key prefix or key")
    watch.add_argument("table")
    watch.add_argument(
        "--key", action="append", default=[], metavar="COL=VALUE", help="(repeatable)"
    )
    watch.add_argument("--resume", metavar="TOKEN", help="continue after this change's token")
    watch.add_argument("--max", type=int, metavar="N", help="stop after N changes")
    watch.add_argument(
        "--idle-timeout", type=float, metavar="S", help="stop after S seconds without a change"
    )
    watch.set_defaults(handler=_watch)

    topology = areas.add_parser("topology", help="tables, partitions, owners, state and lag")
    topology.set_defaults(handler=_topology)

    for parser in (get, scan, watch, topology):
        parser.add_argument(
            "--endpoint",
            action="append",
            metavar="HOST:PORT",
            help="an instance to ask (repeatable; default FABRIC_GRPC_HOST:FABRIC_GRPC_PORT)",
        )


def _client(args: argparse.Namespace, cfg: FabricConfig) -> FabricClient:
    return FabricClient(args.endpoint or [cfg.serve.endpoint])


def _get(args: argparse.Namespace, cfg: FabricConfig) -> int:
    with _client(args, cfg) as client:
        info = client.table_info(args.table)
        keys = list(parse_keys(info, args.keys))
        for row in client.get_many(info.table, keys):
            _print(row)
    return 0


def _scan(args: argparse.Namespace, cfg: FabricConfig) -> int:
    with _client(args, cfg) as client:
        info = client.table_info(args.table)
        prefix = _pairs(info, args.prefix) if args.prefix else None
        for row in client.scan(info.table, prefix=prefix, limit=args.limit):
            _print(row)
    return 0


def _watch(args: argparse.Namespace, cfg: FabricConfig) -> int:
    with _client(args, cfg) as client:
        info = client.table_info(args.table)
        key = prefix = None
        if args.key:
            pairs = _pairs(info, args.key)
            if len(pairs) == len(info.primary_key):
                key = pairs
            else:
                prefix = pairs
        if args.max is not None and args.max <= 0:
            return 0
        changes = client.watch(
            info.table,
            key=key,
            prefix=prefix,
            resume_token=args.resume,
            idle_timeout_s=args.idle_timeout,
        )
        for count, change in enumerate(changes, start=1):
            _print(asdict(change))
            if args.max is not None and count >= args.max:
                break
    return 0


def _topology(args: argparse.Namespace, cfg: FabricConfig) -> int:
    with _client(args, cfg) as client:
        _print(asdict(client.topology()))
    return 0


# -- keys from the command line ----------------------------------------------------------------


def parse_keys(info: TableInfo, words: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Keys from ``words``: bare values for a one-column key, else ``col=value`` pairs, a key
    ending when every key column is named (or a column repeats)."""
    columns = {c.name: c for c in info.key_columns}
    current: dict[str, Any] = {}
    for word in words:
        name, value = _split(word, columns)
        if name is None:
            if len(info.key_columns) != 1:
                raise InvalidKeyError(
                    f"{info.table}: the key is ({', '.join(info.primary_key)}): write each "
                    f"key as col=value pairs, not {word!r}"
                )
            name = info.key_columns[0].name
        if name in current:
            yield _complete(info, current)
            current = {}
        current[name] = _value(value, columns[name])
        if len(current) == len(columns):
            yield current
            current = {}
    if current:
        yield _complete(info, current)


def _pairs(info: TableInfo, words: Sequence[str]) -> dict[str, Any]:
    columns = {c.name: c for c in info.key_columns}
    pairs: dict[str, Any] = {}
    for word in words:
        name, value = _split(word, columns)
        if name is None:
            raise InvalidKeyError(
                f"{info.table}: write col=value with a key column ({', '.join(columns)}), "
                f"not {word!r}"
            )
        pairs[name] = _value(value, columns[name])
    return pairs


def _split(word: str, columns: dict[str, KeyColumn]) -> tuple[str | None, str]:
    name, equals, value = word.partition("=")
    if equals and name in columns:
        return name, value
    return None, word


def _complete(info: TableInfo, key: dict[str, Any]) -> dict[str, Any]:
    missing = [name for name in info.primary_key if name not in key]
    if missing:
        raise InvalidKeyError(f"{info.table}: a key misses {', '.join(missing)}", missing[0])
    return key


def _value(text: str, column: KeyColumn) -> Any:
    """A JSON scalar (numbers exact) or else the bare text, read as the column's type."""
    try:
        value = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError:
        value = text
    if isinstance(value, list | dict) or value is None:
        value = text
    if column.base_type in ("text", "varchar", "bpchar") or column.is_enum:
        return value if isinstance(value, str) else text
    if isinstance(value, Decimal) and column.base_type == "float8":
        return float(value)
    try:
        return coerce_key_value(value, column.base_type, column.pg_type, column.name)
    except UnsupportedQueryError:
        raise InvalidKeyError(f"{column.name}: {text!r} is not a {column.pg_type}") from None


# -- output ------------------------------------------------------------------------------------


def _print(value: Any) -> None:
    print(json.dumps(_readable(value), ensure_ascii=False), flush=True)


def _readable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_readable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _interval(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _interval(value: timedelta) -> str:
    """ISO 8601, as Postgres's ``intervalstyle = iso_8601`` writes it: ``P1DT2H3M4.5S``."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    minutes, seconds = divmod(value.seconds, 60)
    hours, minutes = divmod(minutes, 60)
    fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
    return f"{sign}P{value.days}DT{hours}H{minutes}M{seconds}{fraction}S"
