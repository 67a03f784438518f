"""Fabric instances as real `fabric serve` processes, started, stopped, killed and wiped on demand.

Each instance is a child process leading a session of its own, with its own gRPC and forwarding
ports (kept across its restarts) and state folder (``<root>/<instance id>``), all in one consumer
group. Only processes started here are ever signalled, by the pid this object holds.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fabric.errors import FabricError

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0


@dataclass
class InstanceProcess:
    instance_id: str
    port: int
    peer_port: int
    state_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class FabricInstances:
    """The instances of one group; ``env`` is the environment every `fabric serve` runs with."""

    def __init__(self, env: Mapping[str, str], group: str, root: Path) -> None:
        self._env = dict(env) | {"FABRIC_GROUP": group}
        self.group = group
        self.root = root
        self.instances: dict[str, InstanceProcess] = {}

    @property
    def running(self) -> list[InstanceProcess]:
        return [i for i in self.instances.values() if i.running]

    @property
    def endpoints(self) -> list[str]:
        """Every instance ever started: clients skip the ones that are down."""
        return [i.endpoint for i in self.instances.values()]

    def add(self, instance_id: str, port: int, peer_port: int) -> InstanceProcess:
        if instance_id in self.instances:
            raise ValueError(f"instance {instance_id} exists already; start it instead")
        instance = InstanceProcess(
            instance_id, port, peer_port, self.root / instance_id, self.root / f"{instance_id}.log"
        )
        self.instances[instance_id] = instance
        self.start(instance_id)
        return instance

    def start(self, instance_id: str) -> None:
        instance = self.instances[instance_id]
        if instance.running:
            raise FabricError(f"instance {instance_id} is running already")
        argv = [
            sys.executable, "-m", "fabric", "-v", "serve",
            "--instance-id", instance_id,
            "--state-dir", str(instance.state_dir),
            "--port", str(instance.port),
            "--peer-port", str(instance.peer_port),
        ]  # fmt: skip
        self.root.mkdir(parents=True, exist_ok=True)
        with instance.log_file.open("ab") as out:
            instance.process = subprocess.Popen(
                argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.info("instance started id=%s pid=%d", instance_id, instance.process.pid)

    def stop(self, instance_id: str, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM: the instance hands its partitions over, then exits."""
        self._signal(instance_id, signal.SIGTERM)
        self._wait(instance_id, timeout_s)

    def kill(self, instance_id: str) -> None:
        """SIGKILL: no handover, no flush; the group notices when its session times out."""
        self._signal(instance_id, signal.SIGKILL)
        self._wait(instance_id, 10.0)

    def wipe(self, instance_id: str) -> None:
        """Delete a stopped instance's state folder: it restores every partition from Kafka."""
        instance = self.instances[instance_id]
        if instance.running:
            raise FabricError(f"instance {instance_id} is running; stop it before wiping its state")
        shutil.rmtree(instance.state_dir, ignore_errors=True)

    def check_alive(self, expected: list[str]) -> None:
        """Raise when an instance that should run has exited, with the end of its log."""
        for instance_id in expected:
            instance = self.instances[instance_id]
            if not instance.running:
                tail = instance.log_file.read_text(errors="replace").splitlines()[-10:]
                raise FabricError(
                    f"instance {instance_id} exited unexpectedly; the end of {instance.log_file}:"
                    "\n  " + "\n  ".join(tail)
                )

    def fatal_lines(self, instance_id: str, limit: int = 2) -> list[str]:
        """The last CRITICAL lines of an instance's log: a running instance whose consumer hit a
        fatal error is alive but no longer in the group."""
        log_file = self.instances[instance_id].log_file
        try:
            lines = log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [line for line in lines if " CRITICAL " in line][-limit:]

    def close(self) -> None:
        """Stop every running instance, all at once (there is no one to hand over to)."""
        for instance in self.running:
            assert instance.process is not None
            instance.process.send_signal(signal.SIGTERM)
        for instance in list(self.instances.values()):
            if instance.process is not None and instance.process.poll() is None:
                self._wait(instance.instance_id, STOP_TIMEOUT_S)

    def _signal(self, instance_id: str, sig: signal.Signals) -> None:
        instance = self.instances[instance_id]
        if not instance.running or instance.process is None:
            raise FabricError(f"instance {instance_id} is not running")
        log.info("signalling instance id=%s signal=%s", instance_id, sig.name)
        instance.process.send_signal(sig)

    def _wait(self, instance_id: str, timeout_s: float) -> None:
        process = self.instances[instance_id].process
        assert process is not None
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning(
                "instance id=%s still running after %.0fs; killing it", instance_id, timeout_s
            )
            process.kill()
            process.wait()
