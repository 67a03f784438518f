"""`fabric demo`: the whole pipeline on this machine, step by step, as an operator would run it.

Each step is one of the fabric's own commands, printed before it runs, so the demo doubles as a
walk-through: the stack comes up, the sample database is loaded, the connector is applied, three
fabric instances start and share the partitions, then a change generator writes to Postgres while
every change is looked up through the fabric as soon as it is visible, and printed with where it
was served from and how long after its commit it could be read.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from fabric import db
from fabric.cli import connectors, sample, stack
from fabric.client import Change, FabricClient, FabricRow
from fabric.config import FabricConfig
from fabric.errors import FabricError
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
    demo.add_argument(
        "--instances", type=int, default=3, help="fabric instances to run (default 3)"
    )
    demo.add_argument(
        "--base-port", type=int, default=27071, help="gRPC port of the first instance"
    )
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
    ports = [args.base_port + n for n in range(args.instances)]
    with Instances(cfg, ports) as instances:
        print(
            f"\n$ fabric sample generate --rate {args.rate:g} &   # and every change looked up "
            f"through the fabric, {'until Ctrl-C' if duration is None else f'for {duration:g}s'}",
            flush=True,
        )
        _live(cfg, instances.endpoints, args.rate, duration)
    return 0


class Instances:
    """The demo's fabric instances, as `fabric serve` processes; stopped on exit."""

    def __init__(self, cfg: FabricConfig, ports: list[int]) -> None:
        self._cfg = cfg
        self._ports = ports
        self._processes: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.endpoints = [f"{cfg.serve.host}:{port}" for port in ports]

    def __enter__(self) -> Instances:
        env = dict(self._cfg.environ) | {
            # The demo stops every instance at once: there is no one to hand partitions over to.
            "FABRIC_HANDOVER_TIMEOUT_S": "0",
        }
        for number, port in enumerate(self._ports, start=1):
            instance = f"demo-{number}"
            argv = [
                "serve",
                "--instance-id",
                instance,
                "--port",
                str(port),
                "--standby-replicas",
                "1",
            ]
            print(f"\n$ fabric {' '.join(argv)} &", flush=True)
            log_path = self._cfg.stack.state_dir / f"{instance}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "fabric", "-v", *argv],
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._processes.append((instance, process, log_path))
        self._wait_active()
        return self

    def __exit__(self, *exc: object) -> None:
        for _, process, _ in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for instance, process, _ in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"{instance} did not stop within 30 s; killing it", file=sys.stderr)
                process.kill()
                process.wait()

    def _wait_active(self, timeout_s: float = 180.0) -> None:
        print("\nwaiting until every partition has an ACTIVE owner ...", flush=True)
        deadline = time.monotonic() + timeout_s
        with FabricClient(self.endpoints, timeout_s=2.0) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    topology = client.topology()
                except FabricError:
                    time.sleep(0.5)
                    continue
                owners = {p.owner for t in topology.tables for p in t.partitions}
                # The first instance to join gets every partition until the others join too.
                if topology.tables and topology.all_active and len(owners) == len(self._ports):
                    for table in topology.tables:
                        counts = Counter(p.owner for p in table.partitions)
                        shown = ", ".join(f"{o} {n}" for o, n in sorted(counts.items()))
                        print(f"  {table.table:<14} partitions by owner: {shown}")
                    return
                time.sleep(0.5)
        raise FabricError(
            f"the fabric instances did not become ACTIVE within {timeout_s:.0f}s; see "
            f"{self._cfg.stack.state_dir}/demo-*.log"
        )

    def _check_alive(self) -> None:
        for instance, process, log_path in self._processes:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-5:]
                raise FabricError(
                    f"instance {instance} exited with code {process.returncode}:\n  "
                    + "\n  ".join(tail)
                )


def _steps_parser() -> argparse.ArgumentParser:
    """A parser of just the commands the demo runs, so it runs them exactly as typed."""
    parser = argparse.ArgumentParser(prog="fabric")
    areas = parser.add_subparsers(dest="area", required=True)
    for area in (stack, sample, connectors):
        area.register(areas)
    return parser


def _live(cfg: FabricConfig, endpoints: list[str], rate: float, duration: float | None) -> None:
    """Write changes in a background thread; look every change up through the fabric."""
    stop = threading.Event()
    seen: Counter[str] = Counter()
    delays: list[float] = []
    with db.connect(cfg.endpoints) as conn, FabricClient(endpoints) as client:
        generator = ChangeGenerator(conn, rate=rate, seed=int(time.time()))
        writer = threading.Thread(
            target=lambda: generator.run(duration_s=duration, stop=stop), name="demo-writer"
        )
        watchers = [
            threading.Thread(
                target=_follow,
                args=(client, table, stop, seen, delays),
                name=f"demo-{table}",
                # A watch blocks until its next change; the process must not wait for it.
                daemon=True,
            )
            for table in ("public.users", "public.items", "public.bids")
        ]
        for thread in (writer, *watchers):
            thread.start()
        try:
            while writer.is_alive():
                writer.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            writer.join()
            for thread in watchers:
                thread.join(timeout=2)
    summary = ", ".join(f"{kind} {n}" for kind, n in sorted(seen.items()))
    print(f"\nchanges looked up: {summary or 'none'}")
    if delays:
        delays.sort()
        p50, p99 = delays[len(delays) // 2], delays[min(len(delays) - 1, len(delays) * 99 // 100)]
        print(f"commit → visible through a lookup: p50 {p50:.0f} ms, p99 {p99:.0f} ms")


def _follow(
    client: FabricClient,
    table: str,
    stop: threading.Event,
    seen: Counter[str],
    delays: list[float],
) -> None:
    """Follow a table's changes, and read each changed key back as a lookup would."""
    since_ms = time.time() * 1000
    try:
        for change in client.watch(table):
            if stop.is_set():
                return
            if change.commit_time_ms < since_ms:
                continue  # the sample load's own changes, still streaming in
            if change.kind == "truncate":
                print(f"{table:<14} TRUNCATE at lsn {change.lsn}", flush=True)
                seen["truncate"] += 1
                continue
            row = _read_back(client, table, change)
            delay = time.time() * 1000 - change.commit_time_ms
            delays.append(delay)
            seen[change.kind] += 1
            key = ",".join(f"{k}={v}" for k, v in change.key.items())
            if row is None:
                shown = "not found (deleted)"
                where = ""
            else:
                f = row.freshness
                where = f"  [{f.served_by} p{f.partition} lag {f.lag_records}]"
                shown = _short(row.values)
            print(f"{table:<14} {key:<22} {delay:6.0f} ms{where}  {shown}", flush=True)
    except FabricError as exc:
        if not stop.is_set():
            print(f"{table}: watch ended: {exc}", file=sys.stderr)


def _read_back(client: FabricClient, table: str, change: Change) -> FabricRow | None:
    """The row after ``change`` as a lookup sees it, once the fabric has applied the change."""
    deadline = time.monotonic() + 5.0
    while True:
        row = client.get_row(table, change.key)
        applied = row.freshness.lsn >= change.lsn if row is not None else change.kind == "delete"
        if applied or time.monotonic() > deadline:
            return row
        time.sleep(0.01)


def _short(values: dict[str, object], width: int = 90) -> str:
    text = ", ".join(f"{k}={v}" for k, v in values.items())
    return text if len(text) <= width else text[: width - 1] + "…"
