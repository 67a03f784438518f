"""`fabric demo`: the whole pipeline on this machine, step by step, as an operator would run it.

Each step is one of the fabric's own commands, printed before it runs, so the demo doubles as a
walk-through: the stack comes up, the sample database is loaded, the connector is applied, then a
change generator writes to Postgres while the change events are printed as Kafka receives them.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter

from fabric import db, topics
from fabric.cli import connectors, sample, stack
from fabric.cli.events import format_record
from fabric.config import FabricConfig
from fabric.core.events import ChangeEvent, TruncateMarker
from fabric.sample.generator import ChangeGenerator


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = areas.add_parser(
        "demo",
        help="run the pipeline end to end: stack, sample data, connector, live changes",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds of live changes (default 30; 0: until Ctrl-C)",
    )
    demo.add_argument("--rate", type=float, default=5.0, help="changes per second (default 5)")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace, cfg: FabricConfig) -> int:
    parser = _steps_parser()
    for step in (
        ["stack", "up"],
        ["sample", "load", "--users", "200", "--items", "300", "--bids", "1000", "--reset"],
        ["connectors", "apply"],
    ):
        print(f"\n$ fabric {' '.join(step)}", flush=True)
        step_args = parser.parse_args(step)
        code: int = step_args.handler(step_args, cfg)
        if code != 0:
            return code
        cfg = cfg.reloaded()
    duration = args.duration if args.duration > 0 else None
    print(
        f"\n$ fabric sample generate --rate {args.rate:g} & fabric events tail"
        f"   # {'until Ctrl-C' if duration is None else f'for {duration:g}s'}",
        flush=True,
    )
    _live(cfg, args.rate, duration)
    return 0


def _steps_parser() -> argparse.ArgumentParser:
    """A parser of just the commands the demo runs, so it runs them exactly as typed."""
    parser = argparse.ArgumentParser(prog="fabric")
    areas = parser.add_subparsers(dest="area", required=True)
    for area in (stack, sample, connectors):
        area.register(areas)
    return parser


def _live(cfg: FabricConfig, rate: float, duration: float | None) -> None:
    """Write changes in a background thread and print the events they cause until done."""
    stop = threading.Event()
    with db.connect(cfg.endpoints) as conn:
        generator = ChangeGenerator(conn, rate=rate, seed=int(time.time()))
        writer = threading.Thread(
            target=lambda: generator.run(duration_s=duration, stop=stop), name="demo-writer"
        )
        seen: Counter[str] = Counter()
        writer.start()
        try:
            for record in topics.tail(
                cfg.endpoints.kafka_bootstrap, "auction", from_beginning=False, idle_timeout_s=5.0
            ):
                print(format_record(record), flush=True)
                seen[_kind(record.event)] += 1
                if not writer.is_alive():
                    break
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            writer.join()
    summary = ", ".join(f"{kind} {n}" for kind, n in sorted(seen.items()))
    print(f"\nevents seen: {summary or 'none'}")


def _kind(event: ChangeEvent | TruncateMarker | None) -> str:
    if event is None:
        return "tombstone"
    if isinstance(event, TruncateMarker):
        return "truncate"
    return {"c": "create", "u": "update", "d": "delete", "r": "snapshot"}.get(event.op.value, "?")
