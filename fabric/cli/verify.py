"""`fabric verify`: the fabric's rows compared with Postgres's, table by table (docs/verify.md).

Exit code 0 when every table agrees; 1 when a difference remains after the re-reads, with the
tables and columns named on stderr.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import uuid
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from fabric import db
from fabric.client import FabricClient
from fabric.config import FabricConfig
from fabric.errors import UnknownTableError
from fabric.verify import Difference, TableReport, verify

_SHOWN = 60  # characters of a value a difference line shows


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = areas.add_parser("verify", help="compare the fabric's rows with Postgres's")
    parser.add_argument(
        "tables",
        nargs="*",
        metavar="TABLE",
        help="schema.table (a bare name means public); default: every table the fabric serves",
    )
    parser.add_argument(
        "--sample", type=_positive, metavar="N", help="compare N random keys per table, not all"
    )
    parser.add_argument(
        "--recheck",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="read mismatching keys again for up to S seconds, so that replication lag settles "
        "(10)",
    )
    parser.add_argument(
        "--endpoint",
        action="append",
        metavar="HOST:PORT",
        help="an instance to ask (repeatable; default FABRIC_GRPC_HOST:FABRIC_GRPC_PORT)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per table")
    parser.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace, cfg: FabricConfig) -> int:
    reports: list[TableReport] = []
    with (
        FabricClient(args.endpoint or [cfg.serve.endpoint]) as client,
        db.connect(cfg.endpoints) as conn,
    ):
        tables = args.tables or [t.table for t in client.topology().tables]
        if not tables:
            raise UnknownTableError(
                "the fabric serves no tables yet: capture some (`fabric connectors apply`)"
            )
        for table in tables:
            # One table at a time, so that each line shows as soon as its table is done.
            (report,) = verify(client, conn, [table], sample=args.sample, recheck_s=args.recheck)
            reports.append(report)
            if args.json:
                print(json.dumps(_jsonable({**asdict(report), "ok": report.ok})), flush=True)
            else:
                print(_line(report), flush=True)
                for difference in report.examples:
                    print(f"  {_difference(difference)}", flush=True)
    failed = [r for r in reports if not r.ok]
    if failed:
        named = ", ".join(f"{r.table} ({_summary(r)})" for r in failed)
        print(f"fabric verify: differences remain in {named}", file=sys.stderr)
        return 1
    return 0


def _line(report: TableReport) -> str:
    scope = f"a sample of {report.sample} keys" if report.sample is not None else "every row"
    text = (
        f"{report.table}: {'ok' if report.ok else 'DIFFERS'}: {report.equal} of "
        f"{report.compared} rows equal ({scope}); {report.missing} missing in the fabric, "
        f"{report.extra} only in the fabric, {report.differing} differing"
    )
    if report.columns:
        text += " (" + ", ".join(f"{n}: {c}" for n, c in report.columns.items()) + ")"
    fresh = report.freshness
    text += f"; {report.settled} settled on re-reading; lag {fresh.max_lag_records} records"
    if fresh.min_commit_time_ms is not None and fresh.max_commit_time_ms is not None:
        text += f"; commits {_ms(fresh.min_commit_time_ms)} .. {_ms(fresh.max_commit_time_ms)}"
    return text


def _summary(report: TableReport) -> str:
    parts = []
    if report.missing:
        parts.append(f"{report.missing} missing in the fabric")
    if report.extra:
        parts.append(f"{report.extra} only in the fabric")
    if report.columns:
        parts.append(f"{report.differing} differing in columns {', '.join(report.columns)}")
    return "; ".join(parts)


def _difference(difference: Difference) -> str:
    key = " ".join(f"{name}={value!r}" for name, value in difference.key.items())
    if difference.kind == "missing":
        return f"missing in the fabric: {key}"
    if difference.kind == "extra":
        return f"only in the fabric: {key}"
    source, fabric = difference.source or {}, difference.fabric or {}
    shown = "; ".join(
        f"{name}: Postgres {_short(source, name)}, fabric {_short(fabric, name)}"
        for name in difference.columns
    )
    return f"differing {key}: {shown}"


def _short(row: dict[str, Any], name: str) -> str:
    """The value's repr, which shows its type too (``Decimal('1.50')``)."""
    if name not in row:
        return "(no such column)"
    text = repr(row[name])
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    """``value`` with every psycopg value as JSON shows it readably."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Decimal | uuid.UUID | timedelta):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return number


def _seconds(text: str) -> float:
    seconds = float(text)
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"expected seconds, 0 or more, got {text}")
    return seconds
