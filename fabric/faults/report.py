"""What one fault did to the fabric, and the suite's report table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fabric.faults.kinds import FaultKind
from fabric.faults.prober import Availability
from fabric.verify import TableReport


@dataclass(frozen=True)
class FaultResult:
    kind: FaultKind
    action: str  # what was done, e.g. "SIGKILL f1"
    inject_s: float  # how long the fault itself took (a restart: until the process is healthy)
    recover_s: float  # from the fault's start until every partition had a live ACTIVE owner
    catch_up_s: float  # from pausing the writes until the fabric had applied all of them
    availability: Availability  # lookups from the fault's start until the verify
    verify: tuple[TableReport, ...]
    notes: tuple[str, ...] = ()  # what the suite had to do besides waiting (a task restarted)

    @property
    def differences(self) -> int:
        return sum(r.compared - r.equal for r in self.verify)

    @property
    def ok(self) -> bool:
        return bool(self.verify) and all(r.ok for r in self.verify)


def verify_summary(reports: Sequence[TableReport]) -> str:
    """``0 differences (users 212, items 301, bids 1010 rows)`` or the differences per table."""
    if not reports:
        return "not verified"
    if all(r.ok for r in reports):
        rows = ", ".join(f"{_short(r.table)} {r.compared}" for r in reports)
        return f"0 differences ({rows} rows)"
    return "; ".join(
        f"{_short(r.table)}: {r.missing} missing, {r.extra} extra, {r.differing} differing"
        for r in reports
        if not r.ok
    )


HEADER = (
    "fault",
    "action",
    "unavailable",
    "failed/lookups",
    "slowest lookup",
    "recovered",
    "caught up",
    "verify",
)


def table_rows(results: Sequence[FaultResult]) -> list[tuple[str, ...]]:
    return [
        (
            r.kind.value,
            r.action,
            f"{r.availability.unavailable_s:.2f} s",
            f"{r.availability.failed}/{r.availability.lookups}",
            f"{r.availability.slowest_s:.2f} s",
            f"{r.recover_s:.1f} s",
            f"{r.catch_up_s:.1f} s",
            verify_summary(r.verify),
        )
        for r in results
    ]


def format_report(results: Sequence[FaultResult]) -> str:
    """The results as a Markdown table, then any notes, one line each."""
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"- {r.kind.value}: {note}" for r in results for note in r.notes]
    passed = sum(1 for r in results if r.ok)
    lines.append("")
    lines.append(f"{passed} of {len(results)} faults verified with zero differences")
    return "\n".join(lines + notes)


def _short(table: str) -> str:
    return table.removeprefix("public.")
