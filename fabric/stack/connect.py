"""A distributed Kafka Connect worker with the Debezium Postgres plugin, REST on loopback."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import requests

from fabric.config import LOOPBACK, StackConfig
from fabric.stack import jvm
from fabric.stack.component import ComponentFiles
from fabric.stack.jars import JarLayout
from fabric.stack.process import ProcessSpec

DEBEZIUM_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
CONNECT_GROUP = "cdc-fabric-connect"


def worker_settings(config: StackConfig, plugin_path: Path) -> dict[str, str | int]:
    """The worker's properties; docker-compose.yml carries the same settings for Docker users."""
    port = config.ports.connect
    return {
        "bootstrap.servers": f"{LOOPBACK}:{config.ports.kafka}",
        "group.id": CONNECT_GROUP,
        "config.storage.topic": f"{CONNECT_GROUP}-configs",
        "offset.storage.topic": f"{CONNECT_GROUP}-offsets",
        "status.storage.topic": f"{CONNECT_GROUP}-status",
        "config.storage.replication.factor": 1,
        "offset.storage.replication.factor": 1,
        "status.storage.replication.factor": 1,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        # Otherwise a NULL column comes out as the column's DEFAULT.
        "value.converter.replace.null.with.default": "false",
        # Debezium confirms an LSN to Postgres only after Connect flushes offsets; the default
        # minute would pin that much WAL and replay that much after a restart.
        "offset.flush.interval.ms": 1000,
        "scheduled.rebalance.max.delay.ms": 0,
        "producer.linger.ms": 0,
        "listeners": f"http://{LOOPBACK}:{port}",
        "rest.advertised.host.name": LOOPBACK,
        "rest.advertised.port": port,
        "plugin.path": str(plugin_path),
        "plugin.discovery": "service_load",
        "topic.creation.enable": "true",
    }


@dataclass
class ConnectComponent(ComponentFiles):
    config: StackConfig
    jars: JarLayout
    name: str = "connect"
    stop_signal: signal.Signals = signal.SIGTERM
    start_timeout_s: float = 120.0

    @property
    def port(self) -> int:
        return self.config.ports.connect

    def listen_ports(self) -> dict[str, int]:
        return {"FABRIC_CONNECT_PORT": self.port}

    @property
    def properties(self) -> Path:
        return self.home / "worker.properties"

    def prepare(self) -> None:
        jvm.write_properties(self.properties, worker_settings(self.config, self.jars.plugin_path))

    def process(self) -> ProcessSpec:
        argv = jvm.java_argv(
            self.config.jvm, self.jars, self.home, self.config.jvm.connect_heap,
            "org.apache.kafka.connect.cli.ConnectDistributed", str(self.properties),
        )  # fmt: skip
        return ProcessSpec(
            name=self.name, argv=argv, log_file=self.log_file, pid_file=self.pid_file, cwd=self.home
        )

    def healthy(self) -> bool:
        """The worker answers REST and lists the Debezium Postgres connector plugin."""
        try:
            response = requests.get(f"http://{LOOPBACK}:{self.port}/connector-plugins", timeout=3)
            plugins = response.json() if response.ok else []
        except (requests.RequestException, ValueError):
            return False
        return any(p.get("class") == DEBEZIUM_CONNECTOR_CLASS for p in plugins)

    def after_start(self) -> None:
        return None
