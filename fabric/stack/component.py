"""What the stack manager needs from each of its components (Postgres, Kafka, Connect)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Protocol

from fabric.config import StackConfig
from fabric.stack.process import ProcessSpec


class Component(Protocol):
    name: str
    stop_signal: signal.Signals
    start_timeout_s: float

    def listen_ports(self) -> dict[str, int]:
        """Every port the component listens on, by the setting that moves it."""

    @property
    def port(self) -> int:
        """The port clients use (shown by `fabric stack status`)."""

    @property
    def home(self) -> Path:
        """The component's folder under the state folder."""

    @property
    def log_file(self) -> Path: ...

    @property
    def pid_file(self) -> Path: ...

    def prepare(self) -> None:
        """One-time and every-start set-up before the process starts (idempotent)."""

    def process(self) -> ProcessSpec:
        """The command that runs the component in the foreground."""

    def healthy(self) -> bool:
        """True once the component serves its clients; never raises."""

    def after_start(self) -> None:
        """Set-up that needs the running component (idempotent)."""


class ComponentFiles:
    """Where a component keeps its files: ``<state>/<name>/``, its log and its pid file there."""

    config: StackConfig
    name: str

    @property
    def home(self) -> Path:
        return self.config.state_dir / self.name

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "fabric.pid"
