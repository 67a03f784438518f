"""How long `fabric stack up` takes: cold (jars downloaded from Maven Central) and warm.

Each run uses a fresh state folder and free ports, so every warm run initialises Postgres and
formats Kafka storage as a first `up` on a machine would; only the jar cache is kept. Printed
beside it, measured in the same run: a bare JVM start (`java -version`), the floor for each of the
two JVM components, and the target for a warm start.

    .venv/bin/python -m bench.stack_start [--runs 3] [--cold]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from fabric import config
from fabric.stack import tools
from fabric.stack.manager import LocalStack
from fabric.stack.ports import free_ports

TARGET_WARM_S = 60.0


def _env(state: Path, lib: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "PG"))}
    pg, kafka, controller, connect = free_ports(4)
    env.update(
        FABRIC_STATE_DIR=str(state),
        FABRIC_PG_PORT=str(pg),
        FABRIC_KAFKA_PORT=str(kafka),
        FABRIC_KAFKA_CONTROLLER_PORT=str(controller),
        FABRIC_CONNECT_PORT=str(connect),
    )
    if lib is not None:
        env["FABRIC_LIB_DIR"] = str(lib)
    return env


def _one_up(env: dict[str, str]) -> dict[str, float]:
    stack = LocalStack(config.load(env).stack)
    try:
        t0 = time.monotonic()
        reports = stack.up()
        timings = {r.name: r.seconds for r in reports}
        timings["total"] = time.monotonic() - t0
        return timings
    finally:
        stack.down()


def _baseline_jvm(java: Path) -> float:
    t0 = time.monotonic()
    subprocess.run([str(java), "-version"], capture_output=True, check=True)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also measure one cold start")
    args = parser.parse_args()
    java = tools.java_binary(config.load().stack.jvm)
    jvm_baseline = statistics.median(_baseline_jvm(java) for _ in range(3))

    if args.cold:
        scratch = Path(tempfile.mkdtemp(prefix="cdc-fabric-cold-", dir="/var/tmp"))
        scratch.chmod(0o755)
        # A new Maven repository and jar folder: everything comes from Maven Central again.
        os.environ["MAVEN_OPTS"] = f"-Dmaven.repo.local={scratch / 'm2'}"
        try:
            cold = _one_up(_env(scratch / "state", scratch / "lib"))
        finally:
            os.environ.pop("MAVEN_OPTS")
            shutil.rmtree(scratch, ignore_errors=True)
        print("cold up:  " + "  ".join(f"{k}={v:.1f}s" for k, v in cold.items()))

    warm: list[dict[str, float]] = []
    for _ in range(args.runs):
        state = Path(tempfile.mkdtemp(prefix="cdc-fabric-warm-", dir="/var/tmp"))
        try:
            warm.append(_one_up(_env(state, None)))
        finally:
            shutil.rmtree(state, ignore_errors=True)
    keys = [k for k in warm[0] if not k.startswith("jars")]
    medians = {k: statistics.median(run[k] for run in warm) for k in keys}
    print(
        f"warm up (median of {args.runs}): "
        + "  ".join(f"{k}={v:.1f}s" for k, v in medians.items())
    )
    verdict = "met" if medians["total"] < TARGET_WARM_S else "MISSED"
    print(
        f"baseline (same run): bare JVM start {jvm_baseline:.2f}s; "
        f"target warm up < {TARGET_WARM_S:.0f}s: {verdict}"
    )


if __name__ == "__main__":
    main()
