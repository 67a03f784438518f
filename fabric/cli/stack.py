"""`fabric stack up | down | status | logs | env`: the local stack for demos, tests, benchmarks."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from fabric.config import FabricConfig
from fabric.stack import process
from fabric.stack.manager import LocalStack, StartReport


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = areas.add_parser("stack", help="run Postgres, Kafka and Connect locally")
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    commands.add_parser(
        "up", help="start every component not running yet and wait until all are healthy"
    ).set_defaults(handler=_up)
    commands.add_parser("down", help="stop the components this stack started").set_defaults(
        handler=_down
    )
    status = commands.add_parser("status", help="each component's pid, port and health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)
    logs = commands.add_parser("logs", help="show a component's log")
    logs.add_argument("component", nargs="?", help="postgres, kafka or connect (default: all)")
    logs.add_argument("-n", "--lines", type=int, default=40, help="lines from the end (default 40)")
    logs.set_defaults(handler=_logs)
    commands.add_parser(
        "env", help='shell exports of the endpoints: eval "$(fabric stack env)"'
    ).set_defaults(handler=_env)


def _up(args: argparse.Namespace, cfg: FabricConfig) -> int:
    def show(report: StartReport) -> None:
        verb = "already running" if report.already_running else "started"
        print(f"{report.name:<22} {verb}, healthy after {report.seconds:5.1f}s", flush=True)

    reports = LocalStack(cfg.stack).up(on_started=show)
    total = sum(r.seconds for r in reports)
    print(f"{'stack':<22} up in {total:.1f}s (state in {cfg.stack.state_dir})")
    return 0


def _down(args: argparse.Namespace, cfg: FabricConfig) -> int:
    stopped = LocalStack(cfg.stack).down()
    print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace, cfg: FabricConfig) -> int:
    statuses = LocalStack(cfg.stack).status()
    if args.json:
        print(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        print(f"{'COMPONENT':<10} {'STATE':<10} {'PID':>8} {'PORT':>6}  LOG")
        for s in statuses:
            pid = str(s.pid) if s.pid is not None else "-"
            print(f"{s.name:<10} {s.state:<10} {pid:>8} {s.port:>6}  {s.log_file}")
    return 0 if all(s.healthy for s in statuses) else 3


def _logs(args: argparse.Namespace, cfg: FabricConfig) -> int:
    stack = LocalStack(cfg.stack)
    names = [args.component] if args.component else stack.component_names()
    for name in names:
        try:
            path = stack.log_file(name)
        except KeyError:
            known = ", ".join(stack.component_names())
            print(f"fabric: no component {name!r}; choose one of {known}", file=sys.stderr)
            return 2
        print(f"==> {path} <==")
        print(process.log_tail(path, args.lines))
    return 0


def _env(args: argparse.Namespace, cfg: FabricConfig) -> int:
    endpoints = cfg.endpoints
    exports = {
        "FABRIC_PG_DSN": endpoints.pg_dsn,
        "FABRIC_KAFKA_BOOTSTRAP": endpoints.kafka_bootstrap,
        "FABRIC_CONNECT_URL": endpoints.connect_url,
    }
    if endpoints.pgpass_file is not None:
        # libpq reads the password from here, so no exported value carries a secret.
        exports["PGPASSFILE"] = str(endpoints.pgpass_file)
    for key, value in exports.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0
