"""What Connect says about a connector: its state and its tasks', and validation verdicts.

Parsed from Connect's REST answers into values that are already masked, so nothing built from them
can leak a secret. States are Connect's: UNASSIGNED, RUNNING, PAUSED, STOPPED, FAILED, RESTARTING.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fabric.connect.masking import Masker
from fabric.errors import ConnectError

RUNNING = "RUNNING"
PAUSED = "PAUSED"
STOPPED = "STOPPED"
FAILED = "FAILED"


@dataclass(frozen=True)
class TaskStatus:
    id: int
    state: str
    worker_id: str | None
    trace: str | None  # the Java stack trace of a FAILED task, masked

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "worker_id": self.worker_id,
            "trace": self.trace,
        }


@dataclass(frozen=True)
class ConnectorStatus:
    """A connector's status; ``registered`` is False when Connect does not know the name."""

    name: str
    registered: bool
    state: str | None
    worker_id: str | None
    trace: str | None
    tasks: tuple[TaskStatus, ...]

    @classmethod
    def missing(cls, name: str) -> ConnectorStatus:
        return cls(name, False, None, None, None, ())

    @classmethod
    def from_json(cls, name: str, doc: Mapping[str, Any], masker: Masker) -> ConnectorStatus:
        """Parse ``GET /connectors/NAME/status``; traces are masked."""
        try:
            connector = doc["connector"]
            tasks = tuple(
                TaskStatus(
                    id=int(t["id"]),
                    state=str(t["state"]),
                    worker_id=t.get("worker_id"),
                    trace=masker.text(t["trace"]) if t.get("trace") else None,
                )
                for t in doc.get("tasks", [])
            )
            return cls(
                name=name,
                registered=True,
                state=str(connector["state"]),
                worker_id=connector.get("worker_id"),
                trace=masker.text(connector["trace"]) if connector.get("trace") else None,
                tasks=tuple(sorted(tasks, key=lambda t: t.id)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConnectError(
                f"Connect answered the status of {name} in an unexpected shape ({exc!r})"
            ) from exc

    def is_all(self, state: str) -> bool:
        """The connector and every task (at least one) are in ``state``."""
        tasks_there = bool(self.tasks) and all(t.state == state for t in self.tasks)
        return self.state == state and tasks_there

    @property
    def failed(self) -> bool:
        return self.state == FAILED or any(t.state == FAILED for t in self.tasks)

    def summary(self) -> str:
        """One line, e.g. ``RUNNING (task 0 RUNNING)``."""
        if not self.registered:
            return "not registered"
        tasks = ", ".join(f"task {t.id} {t.state}" for t in self.tasks) or "no tasks"
        return f"{self.state} ({tasks})"

    def failure_report(self) -> str:
        """Each failed part with the gist of its trace (first line and every ``Caused by``)."""
        lines = []
        if self.state == FAILED:
            lines.append(f"connector {self.name} FAILED: {trace_summary(self.trace)}")
        lines += [
            f"task {t.id} FAILED: {trace_summary(t.trace)}" for t in self.tasks if t.state == FAILED
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "registered": self.registered,
            "state": self.state,
            "worker_id": self.worker_id,
            "trace": self.trace,
            "tasks": [t.as_dict() for t in self.tasks],
        }


def trace_summary(trace: str | None) -> str:
    """A Java stack trace reduced to its first line and its ``Caused by:`` lines."""
    if not trace:
        return "(no trace)"
    lines = [line.strip() for line in trace.strip().splitlines()]
    kept = [lines[0]]
    kept += [line for line in lines[1:] if line.startswith("Caused by:") and line not in kept]
    return "\n    ".join(kept)


def validation_errors(doc: Mapping[str, Any], masker: Masker) -> dict[str, list[str]]:
    """The per-setting errors of a ``PUT /connector-plugins/CLASS/config/validate`` answer."""
    errors: dict[str, list[str]] = {}
    for item in doc.get("configs", []):
        value = item.get("value") or {}
        messages = [masker.text(str(m)) for m in value.get("errors") or []]
        if messages:
            errors.setdefault(str(value.get("name", "?")), []).extend(messages)
    return errors
