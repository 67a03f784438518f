"""The fault suite: every fault once, against real processes, while the sample workload writes.

Three `fabric serve` processes share the partitions; the workload inserts, updates (TOASTed
descriptions left untouched, too), deletes, changes primary keys and now and then truncates.
After each fault, once the fabric has caught up, every row of every table must equal Postgres's.
The report table is printed (run with ``-s`` to see it) and written to ``faults-report.md`` in
the test's temporary folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fabric import cli
from fabric.faults.kinds import SEQUENCE, FaultKind
from fabric.faults.report import FaultResult, format_report
from fabric.faults.runner import SuiteSettings
from fabric.faults.suite import SessionSettings, fault_session
from fabric.sample.planner import Op, OpKind
from fabric.sample.workload import WorkloadSettings

pytestmark = pytest.mark.integration

SAMPLE = ["sample", "load", "--users", "200", "--items", "300", "--bids", "1000", "--reset"]
# Lookups may be unavailable while a dead instance's session times out (10 s) and its
# partitions are restored elsewhere, or while Kafka restarts; never for longer than this.
MAX_UNAVAILABLE_S = 30.0
_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def test_every_fault_leaves_zero_differences(
    stack_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(SAMPLE, environ=stack_env) == 0
    assert cli.main(["connectors", "apply"], environ=stack_env) == 0
    settings = SessionSettings(
        instances=3,
        workload=WorkloadSettings(rate=20.0, round_s=4.0, truncate_chance=0.15, seed=7),
        suite=SuiteSettings(recheck_s=10.0),
        seed=7,
    )
    results: list[FaultResult] = []
    try:
        with fault_session(stack_env, tmp_path / "instances", settings, results.append) as runner:
            runner.run(SEQUENCE)
            totals = runner.workload.totals
    except Exception as exc:
        _note_what_was_happening(exc, results, tmp_path / "instances")
        raise
    finally:
        report = format_report(results)
        (tmp_path / "faults-report.md").write_text(report + "\n")
        with capsys.disabled():
            sys.stdout.write("\n" + report + "\n")
    assert [r.kind for r in results] == list(FaultKind)
    for result in results:
        assert result.ok, f"{result.kind.value}: {result.verify}"
        assert result.availability.lookups > 0
        assert result.availability.unavailable_s < MAX_UNAVAILABLE_S, result
    assert totals.errors == 0
    assert totals.truncates, "the workload truncated no table"
    for op in (Op("users", OpKind.KEY_CHANGE), Op("items", OpKind.UPDATE)):
        assert totals.rows[op] > 0, f"the workload made no {op}"


def _note_what_was_happening(exc: Exception, results: list[FaultResult], logs: Path) -> None:
    """The fault under way and the instances' own latest warnings, where a failure's report
    ends (the middle of a long captured output is cut)."""
    under_way = SEQUENCE[len(results)].value if len(results) < len(SEQUENCE) else "none"
    exc.add_note(f"fault under way: {under_way}")
    for log_file in sorted(logs.glob("*.log")):
        lines = log_file.read_text(errors="replace").splitlines()
        # Kafka's client library relays its connection noise with "thrd:" in it.
        own = [line for line in lines if any(f" {level} " in line for level in _LEVELS)]
        own = [line[:300] for line in own if "thrd:" not in line][-6:]
        exc.add_note(f"{log_file.name} latest warnings:\n  " + "\n  ".join(own or ["none"]))
