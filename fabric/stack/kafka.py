"""A single-node KRaft Kafka broker on loopback, its storage formatted once."""

from __future__ import annotations

import base64
import logging
import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from fabric.config import LOOPBACK, StackConfig
from fabric.errors import StackError
from fabric.stack import jvm
from fabric.stack.component import ComponentFiles
from fabric.stack.jars import JarLayout
from fabric.stack.process import ProcessSpec

log = logging.getLogger(__name__)

_quiet = logging.getLogger(f"{__name__}.librdkafka")


def broker_settings(config: StackConfig, data_dir: Path) -> dict[str, str | int]:
    """The broker's server.properties: one node that is both broker and controller."""
    ports = config.ports
    return {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{ports.controller}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{ports.kafka},CONTROLLER://{LOOPBACK}:{ports.controller}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{ports.kafka}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        # One broker: every internal topic at replication factor 1, or the coordinators never
        # come up.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        # Topics are created on purpose (Connect's topic creation, the fabric's own), never by a
        # typo in a consumer.
        "auto.create.topics.enable": "false",
        "num.partitions": 1,
    }


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id as Kafka makes one: a random uuid in URL-safe base64, never starting
    with ``-``, which the storage tool's argument parser would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class KafkaComponent(ComponentFiles):
    config: StackConfig
    jars: JarLayout
    name: str = "kafka"
    stop_signal: signal.Signals = signal.SIGTERM
    start_timeout_s: float = 90.0

    @property
    def port(self) -> int:
        return self.config.ports.kafka

    def listen_ports(self) -> dict[str, int]:
        ports = self.config.ports
        return {"FABRIC_KAFKA_PORT": ports.kafka, "FABRIC_KAFKA_CONTROLLER_PORT": ports.controller}

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    def prepare(self) -> None:
        jvm.write_properties(self.properties, broker_settings(self.config, self.data_dir))
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        log.info("formatting Kafka storage at %s cluster_id=%s", self.data_dir, cluster_id)
        argv = jvm.java_argv(
            self.config.jvm, self.jars, self.home, "256m", "kafka.tools.StorageTool",
            "format", "--cluster-id", cluster_id, "--config", str(self.properties), "--standalone",
        )  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(
                f"formatting Kafka storage failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()[-3000:]}"
            )

    def process(self) -> ProcessSpec:
        argv = jvm.java_argv(
            self.config.jvm, self.jars, self.home, self.config.jvm.kafka_heap, "kafka.Kafka",
            str(self.properties),
        )  # fmt: skip
        return ProcessSpec(
            name=self.name, argv=argv, log_file=self.log_file, pid_file=self.pid_file, cwd=self.home
        )

    def healthy(self) -> bool:
        settings: dict[str, Any] = {
            "bootstrap.servers": f"{LOOPBACK}:{self.port}",
            "socket.connection.setup.timeout.ms": 2000,
            "logger": _quiet,
        }
        admin = AdminClient(settings)
        try:
            metadata = admin.list_topics(timeout=3)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    def after_start(self) -> None:
        return None
