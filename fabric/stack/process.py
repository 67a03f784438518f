"""Processes the stack starts and stops: detached, tracked by pid file, never confused with others.

A pid file records the pid *and* the process's start time (field 22 of ``/proc/PID/stat``), so a
pid that the kernel has since handed to an unrelated program is never taken for ours and never
signalled. Each process leads a new session, so stopping it can be checked to have left no child
behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fabric.errors import StackError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessSpec:
    """How to start one long-running component."""

    name: str
    argv: Sequence[str]
    log_file: Path
    pid_file: Path
    cwd: Path
    env: Mapping[str, str] | None = None
    user: str | None = None  # run as this OS user (the stack runs as root only when it must)


def start(spec: ProcessSpec) -> int:
    """Start ``spec`` detached from this process, its output appended to its log file."""
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_file.open("ab") as out:
        try:
            proc = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=dict(spec.env) if spec.env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=spec.user,
            )
        except OSError as exc:
            raise StackError(f"cannot start {spec.name} ({spec.argv[0]}): {exc.strerror}") from exc
    _write_pid_file(spec.pid_file, proc.pid)
    log.info("started component=%s pid=%d", spec.name, proc.pid)
    return proc.pid


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that very process is still alive, else None."""
    try:
        pid_text, _, started = pid_file.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    if _start_time(pid) != started:
        return None
    return pid


def exited(pid_file: Path) -> bool:
    return running_pid(pid_file) is None


def stop(name: str, pid_file: Path, sig: signal.Signals, timeout_s: float) -> bool:
    """Stop the process recorded in ``pid_file`` and every process of its session.

    Sends ``sig``, waits up to ``timeout_s``, then SIGKILLs what is left of the session. Returns
    False when there was nothing of ours to stop.
    """
    pid = running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    log.info("stopping component=%s pid=%d signal=%s", name, pid, sig.name)
    _signal(pid, sig)
    if not wait_until(lambda: not session_members(pid), timeout_s):
        for member in session_members(pid):
            log.warning("killing component=%s pid=%d after %.0fs", name, member, timeout_s)
            _signal(member, signal.SIGKILL)
        wait_until(lambda: not session_members(pid), 10.0)
    pid_file.unlink(missing_ok=True)
    return True


def session_members(session_id: int) -> list[int]:
    """Live (non-zombie) processes whose session id is ``session_id``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # fields[0] is the state, fields[3] the session id (stat fields 3 and 6).
        if fields is not None and fields[0] != "Z" and fields[3] == str(session_id):
            members.append(int(entry.name))
    return members


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; True if it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def log_tail(log_file: Path, lines: int = 30) -> str:
    try:
        with log_file.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def _write_pid_file(pid_file: Path, pid: int) -> None:
    started = _start_time(pid)
    if started is None:
        # Exited already; leave no pid file, the caller's health check reports the log tail.
        return
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid} {started}\n")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return fields[19]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
