import signal
import sys
from pathlib import Path

from fabric.stack import process


def _spec(tmp_path: Path, code: str) -> process.ProcessSpec:
    return process.ProcessSpec(
        name="sleeper",
        argv=[sys.executable, "-c", code],
        log_file=tmp_path / "sleeper.log",
        pid_file=tmp_path / "sleeper.pid",
        cwd=tmp_path,
    )


def test_start_records_pid_and_stop_leaves_no_session_member(tmp_path: Path) -> None:
    # The child forks a grandchild: stopping must leave neither behind.
    code = "import os, time\nos.fork()\nprint('up', flush=True)\ntime.sleep(60)"
    spec = _spec(tmp_path, code)
    pid = process.start(spec)
    assert process.running_pid(spec.pid_file) == pid
    assert process.wait_until(lambda: len(process.session_members(pid)) == 2, 10)
    # The grandchild ignores nothing but outlives its parent: it is SIGKILLed after the timeout.
    assert process.stop("sleeper", spec.pid_file, signal.SIGTERM, timeout_s=1)
    assert process.session_members(pid) == []
    assert not spec.pid_file.exists()
    assert process.stop("sleeper", spec.pid_file, signal.SIGTERM, timeout_s=1) is False


def test_a_reused_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    import os

    pid_file = tmp_path / "other.pid"
    pid_file.write_text(f"{os.getpid()} 1\n")  # our own pid, but a different start time
    assert process.running_pid(pid_file) is None
    assert process.stop("other", pid_file, signal.SIGTERM, timeout_s=1) is False


def test_log_tail_returns_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert process.log_tail(tmp_path / "missing.log") == "(no log written)"
