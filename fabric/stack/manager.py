"""The local stack as one unit: bring Postgres, Kafka and Connect up in order, report, take down.

``up`` is idempotent: a component whose recorded process is alive is left running (and only
waited on until healthy). ``down`` signals only processes recorded in the stack's own pid files,
and waits until nothing of their sessions is left. A port held by anything else is reported, never
touched.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from fabric.config import LOOPBACK, StackConfig
from fabric.errors import ComponentStartError, PortInUseError, StackError
from fabric.stack import jars, process
from fabric.stack.component import Component
from fabric.stack.connect import ConnectComponent
from fabric.stack.kafka import KafkaComponent
from fabric.stack.postgres import PostgresComponent

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    port: int
    healthy: bool
    log_file: str

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "healthy" if self.healthy else "unhealthy"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "state": self.state}


@dataclass(frozen=True)
class StartReport:
    name: str
    seconds: float
    already_running: bool


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config

    def up(self, on_started: Callable[[StartReport], None] = lambda _: None) -> list[StartReport]:
        """Start every component not already running, in dependency order, each until healthy."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.config.state_dir.chmod(0o755)
        reports = []
        t0 = time.monotonic()
        layout, downloaded = jars.ensure_resolved(self.config.pom, self.config.lib_dir)
        if downloaded:
            report = StartReport("jars (Maven Central)", time.monotonic() - t0, False)
            on_started(report)
            reports.append(report)
        for component in self._components(layout):
            report = _start(component)
            on_started(report)
            reports.append(report)
        return reports

    def down(self) -> list[str]:
        """Stop every running component, last started first; returns the names stopped."""
        stopped = []
        for component in reversed(list(self._components(self._layout()))):
            if process.stop(
                component.name, component.pid_file, component.stop_signal, STOP_TIMEOUT_S
            ):
                stopped.append(component.name)
        return stopped

    def restart(self, name: str) -> StartReport:
        """Stop one running component gracefully and start it again, until healthy; the others
        keep running and reconnect by themselves."""
        component = self._component(name)
        if not _is_running(component):
            raise StackError(
                f"{name} is not running, so there is nothing to restart; start the stack with "
                "`fabric stack up`"
            )
        process.stop(component.name, component.pid_file, component.stop_signal, STOP_TIMEOUT_S)
        return _start(component)

    def status(self) -> list[ComponentStatus]:
        statuses = []
        for component in self._components(self._layout()):
            pid = process.running_pid(component.pid_file)
            statuses.append(
                ComponentStatus(
                    name=component.name,
                    pid=pid,
                    port=component.port,
                    healthy=pid is not None and component.healthy(),
                    log_file=str(component.log_file),
                )
            )
        return statuses

    def log_file(self, name: str) -> Path:
        for component in self._components(self._layout()):
            if component.name == name:
                return component.log_file
        raise KeyError(name)

    def component_names(self) -> list[str]:
        return [c.name for c in self._components(self._layout())]

    def _component(self, name: str) -> Component:
        components = {c.name: c for c in self._components(self._layout())}
        if name not in components:
            raise StackError(f"the stack has no component {name!r}; it has {', '.join(components)}")
        return components[name]

    def _layout(self) -> jars.JarLayout:
        return jars.JarLayout(self.config.lib_dir)

    def _components(self, layout: jars.JarLayout) -> Iterator[Component]:
        yield PostgresComponent(self.config)
        yield KafkaComponent(self.config, layout)
        yield ConnectComponent(self.config, layout)


def _is_running(component: Component) -> bool:
    return process.running_pid(component.pid_file) is not None


def _start(component: Component) -> StartReport:
    t0 = time.monotonic()
    already = _is_running(component)
    if not already:
        _check_ports_free(component)
        component.prepare()
        process.start(component.process())
    healthy = process.wait_until(
        lambda: component.healthy() or not _is_running(component),
        component.start_timeout_s,
        interval_s=0.25,
    )
    if not _is_running(component):
        raise ComponentStartError(
            f"{component.name} exited while starting; last lines of {component.log_file}:\n"
            f"{process.log_tail(component.log_file)}"
        )
    if not healthy:
        raise ComponentStartError(
            f"{component.name} did not become healthy within {component.start_timeout_s:.0f}s "
            f"(it is still running: `fabric stack logs {component.name}`, or `fabric stack down`); "
            f"last lines of {component.log_file}:\n{process.log_tail(component.log_file)}"
        )
    component.after_start()
    seconds = time.monotonic() - t0
    log.info("component=%s healthy after %.1fs", component.name, seconds)
    return StartReport(component.name, seconds, already)


def _check_ports_free(component: Component) -> None:
    for setting, port in component.listen_ports().items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise PortInUseError(
                    f"port {port} on {LOOPBACK}, wanted by {component.name}, is in use by a "
                    f"process this stack did not start; stop that process or choose another "
                    f"port with {setting}=PORT"
                ) from None
