"""`fabric sample load | generate`: the auction sample database and a stream of changes to it."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from fabric import db
from fabric.config import FabricConfig
from fabric.sample.generator import ChangeGenerator, GenerationReport
from fabric.sample.planner import Op, OpKind
from fabric.sample.seed import TABLES, load

EXIT_USAGE = 2  # argparse's code for arguments that do not fit together


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = areas.add_parser("sample", help="the auction sample database and its change stream")
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    load_parser = commands.add_parser(
        "load", help="create the auction schema if missing and fill it with deterministic rows"
    )
    load_parser.add_argument("--users", type=_count, default=1_000, metavar="N", help="(1000)")
    load_parser.add_argument("--items", type=_count, default=2_000, metavar="N", help="(2000)")
    load_parser.add_argument("--bids", type=_count, default=10_000, metavar="N", help="(10000)")
    load_parser.add_argument("--seed", type=int, default=42, metavar="S", help="(42)")
    load_parser.add_argument(
        "--reset", action="store_true", help="empty the sample tables first if they hold rows"
    )
    load_parser.set_defaults(handler=_load)

    generate = commands.add_parser(
        "generate",
        help="keep inserting, updating and deleting sample rows, one transaction per change",
        description="Runs until --duration or --ops is reached, or until Ctrl-C or SIGTERM.",
    )
    generate.add_argument(
        "--rate",
        type=_rate,
        default=20.0,
        metavar="OPS_PER_S",
        help="transactions per second (default 20; 0: as fast as the database allows)",
    )
    until = generate.add_mutually_exclusive_group()
    until.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    until.add_argument("--ops", type=_count, metavar="N", help="stop after N transactions")
    generate.add_argument("--seed", type=int, default=0, metavar="S", help="(0)")
    generate.set_defaults(handler=_generate)


def _load(args: argparse.Namespace, cfg: FabricConfig) -> int:
    if args.bids and not args.items:
        print("fabric: --bids needs --items of at least 1", file=sys.stderr)
        return EXIT_USAGE
    start = time.monotonic()
    with db.connect(cfg.endpoints) as conn, db.translated("loading the sample database"):
        counts = load(
            conn,
            users=args.users,
            items=args.items,
            bids=args.bids,
            seed=args.seed,
            reset=args.reset,
        )
    elapsed = time.monotonic() - start
    print(
        f"loaded users={counts.users} items={counts.items} bids={counts.bids} "
        f"(seed {args.seed}) in {elapsed:.2f}s"
    )
    return 0


def _generate(args: argparse.Namespace, cfg: FabricConfig) -> int:
    rate = args.rate or None
    pace = f"{rate:g} ops/s" if rate else "unpaced"
    if args.duration is not None:
        limit = f"for {args.duration:g}s"
    elif args.ops is not None:
        limit = f"for {args.ops} transactions"
    else:
        limit = "until Ctrl-C"
    print(f"generating changes, {pace}, {limit} (seed {args.seed})", flush=True)
    with (
        _stop_on_signals() as stop,
        db.connect(cfg.endpoints) as conn,
        db.translated("generating sample changes"),
    ):
        generator = ChangeGenerator(conn, rate=rate, seed=args.seed)
        report = generator.run(duration_s=args.duration, ops=args.ops, stop=stop)
    for line in report_lines(report):
        print(line)
    return 0


def report_lines(report: GenerationReport) -> list[str]:
    """Rows changed per table and kind, then the transaction total and the achieved rate."""
    kinds = list(OpKind)

    def order(op: Op) -> tuple[int, int]:
        return TABLES.index(op.table), kinds.index(op.kind)

    lines = [
        f"{op.table:<6} {op.kind:<19} {report.rows[op]:>8}" for op in sorted(report.rows, key=order)
    ]
    per_s = report.transactions / report.elapsed_s if report.elapsed_s > 0 else 0.0
    lines.append(f"{report.transactions} transactions in {report.elapsed_s:.1f}s ({per_s:.1f}/s)")
    return lines


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT and SIGTERM set, so a run ends after its current transaction."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # only the main thread may install signal handlers
        return

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected ops/s, 0 or more, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
