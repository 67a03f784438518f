"""The fault suite's soak: rounds of random faults for N minutes, on a stack of its own.

Starts a throwaway stack (fresh state folder, free ports), loads the sample, applies the auction
connector and runs three fabric instances under the sample workload; then injects one random fault
after another (never fewer than two instances, never more than four), each followed by a full
verify, until the time is up. Prints the report table as it goes and at the end; exits 1 if any
verify found a difference.

    .venv/bin/python -m bench.soak --minutes 30 [--seed 1] [--rate 20] [--keep-stack]
    .venv/bin/python -m bench.soak --sequence          # every fault once, as the CI test does
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from fabric import cli, config
from fabric.faults.kinds import SEQUENCE, random_fault
from fabric.faults.report import FaultResult, format_report, table_rows
from fabric.faults.runner import SuiteSettings
from fabric.faults.suite import SessionSettings, fault_session
from fabric.sample.workload import WorkloadSettings
from fabric.stack.manager import LocalStack
from fabric.stack.ports import free_ports

SAMPLE = ["sample", "load", "--users", "1000", "--items", "2000", "--bids", "10000", "--reset"]


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "PG"))}
    pg, kafka, controller, connect = free_ports(4)
    env.update(
        FABRIC_STATE_DIR=str(state),
        FABRIC_PG_PORT=str(pg),
        FABRIC_KAFKA_PORT=str(kafka),
        FABRIC_KAFKA_CONTROLLER_PORT=str(controller),
        FABRIC_CONNECT_PORT=str(connect),
        FABRIC_TOPIC_PARTITIONS="6",
    )
    return env


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to inject (10)")
    parser.add_argument("--sequence", action="store_true", help="every fault once, then stop")
    parser.add_argument("--seed", type=int, default=1, help="faults, targets and workload (1)")
    parser.add_argument("--rate", type=float, default=20.0, help="workload transactions/s (20)")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running")
    parser.add_argument("--log", type=Path, help="write the suite's INFO log to this file")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    logging.basicConfig(
        level=logging.INFO if args.log else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        filename=args.log,
    )

    state = Path(tempfile.mkdtemp(prefix="cdc-fabric-soak-", dir="/var/tmp"))
    env = _env(state)
    stack = LocalStack(config.load(env).stack)
    results: list[FaultResult] = []
    started = time.monotonic()
    failed = True
    try:
        stack.up()
        for step in (SAMPLE, ["connectors", "apply"]):
            if cli.main(step, environ=env) != 0:
                return 1
        settings = SessionSettings(
            workload=WorkloadSettings(rate=args.rate, seed=args.seed),
            suite=SuiteSettings(),
            seed=args.seed,
        )
        rng = random.Random(args.seed)
        deadline = time.monotonic() + args.minutes * 60
        with fault_session(env, state / "fabric", settings, results.append) as runner:
            if args.sequence:
                runner.run(SEQUENCE)
            while not args.sequence and time.monotonic() < deadline:
                result = runner.run_fault(random_fault(rng, len(runner.instances.running)))
                print(" | ".join(table_rows([result])[0]), flush=True)
            totals = runner.workload.totals
        failed = False
        minutes = (time.monotonic() - started) / 60
        print(
            f"\n{len(results)} faults in {minutes:.1f} min; workload: {totals.transactions} "
            f"transactions, truncates {dict(totals.truncates)}\n"
        )
    finally:
        print(format_report(results), flush=True)
        if not args.keep_stack:
            stack.down()
        if failed:
            print(f"instance logs kept in {state / 'fabric'}", file=sys.stderr)
        elif not args.keep_stack:
            shutil.rmtree(state, ignore_errors=True)
        else:
            print(f"stack left running; state in {state}", file=sys.stderr)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
