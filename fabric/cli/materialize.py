"""`fabric materialize run|status`: run a materializer instance, and see every local instance."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from types import FrameType

from fabric import db
from fabric.catalog import Catalog
from fabric.cli.serve import instance_settings
from fabric.config import FabricConfig
from fabric.materialize.instance import Materializer
from fabric.materialize.metrics import serve_metrics
from fabric.materialize.status import InstanceStatus, read_statuses


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = areas.add_parser("materialize", help="build the fabric's tables from the CDC topics")
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    run = commands.add_parser("run", help="run one materializer instance until SIGTERM/SIGINT")
    run.add_argument("--instance-id", help="static group member id (FABRIC_INSTANCE_ID)")
    run.add_argument("--state-dir", help="this instance's stores (default: <state>/instances/<id>)")
    run.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    run.set_defaults(handler=_run)
    status = commands.add_parser("status", help="partitions, states and lag of local instances")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)


def _run(args: argparse.Namespace, cfg: FabricConfig) -> int:
    settings = instance_settings(cfg.materializer, args)
    catalog = Catalog(lambda: db.connect(cfg.endpoints))
    instance = Materializer(settings, cfg.endpoints.kafka_bootstrap, catalog.codec)
    if settings.metrics_port is not None:
        serve_metrics(instance.status, settings.metrics_host, settings.metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    instance.run(stop)
    return 0


def _status(args: argparse.Namespace, cfg: FabricConfig) -> int:
    statuses = read_statuses(cfg.materializer.instances_dir)
    if args.json:
        print(json.dumps([s.to_json() for s in statuses], indent=1))
        return 0
    if not statuses:
        print(f"no instance has run with state under {cfg.materializer.instances_dir}")
        return 0
    for status in statuses:
        print(_format(status))
    return 0


def _format(status: InstanceStatus) -> str:
    running = "running" if status.running else "NOT RUNNING (last status shown)"
    lines = [
        f"instance {status.instance_id}  group {status.group}  pid {status.pid}  {running}",
    ]
    header = (
        f"  {'topic':<28} {'part':>4} {'state':<9} {'applied':>10} {'lag':>8} {'ev/s':>8} "
        f"{'rows':>9} {'dlq':>5} {'misroute':>8}  restore"
    )
    lines.append(header)
    for p in status.partitions:
        restore = f"{p.restored}/{p.restore_total}"
        if p.restore_eta_s is not None:
            restore += f" eta {p.restore_eta_s:.0f}s"
        lines.append(
            f"  {p.topic:<28} {p.partition:>4} {p.state:<9} {p.position - 1:>10} {p.lag:>8} "
            f"{p.events_per_s:>8.0f} {p.rows:>9} {p.dead_letters:>5} "
            f"{p.routing_mismatches:>8}  {restore}"
        )
    if not status.partitions:
        lines.append("  (no partitions assigned)")
    if status.standbys:
        states = [p.state for p in status.standbys]
        lag = sum(p.lag for p in status.standbys)
        lines.append(
            f"  standby replicas: {len(states)} ({states.count('ACTIVE')} ACTIVE), lag {lag}"
        )
    for table, freshness in status.freshness_by_table().items():
        p50, p99 = freshness.quantile_ms(0.5), freshness.quantile_ms(0.99)
        if p50 is None or p99 is None:
            continue
        lines.append(
            f"  commit → visible  {table}: p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            f" over {freshness.count} changes"
        )
    return "\n".join(lines)
