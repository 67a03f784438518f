"""`fabric stack` on a stack of its own, so that stopping it disturbs no other test."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric import cli, config
from fabric.errors import ComponentStartError, MissingToolError, PortInUseError
from fabric.stack import process
from fabric.stack.manager import LocalStack
from fabric.stack.ports import free_ports


@pytest.fixture
def own_env() -> Iterator[dict[str, str]]:
    state = Path(tempfile.mkdtemp(prefix="cdc-fabric-stacktest-", dir="/var/tmp"))
    pg, kafka, controller, connect = free_ports(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "PG"))}
    env.update(
        {
            "FABRIC_STATE_DIR": str(state),
            "FABRIC_PG_PORT": str(pg),
            "FABRIC_KAFKA_PORT": str(kafka),
            "FABRIC_KAFKA_CONTROLLER_PORT": str(controller),
            "FABRIC_CONNECT_PORT": str(connect),
        }
    )
    yield env
    LocalStack(config.load(env).stack).down()
    shutil.rmtree(state, ignore_errors=True)


def test_up_twice_then_down_leaves_no_process(
    own_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["stack", "up"], environ=own_env) == 0
    first = capsys.readouterr().out
    for name in ("postgres", "kafka", "connect"):
        assert f"{name}" in first and "started, healthy after" in first

    assert cli.main(["stack", "up"], environ=own_env) == 0
    second = capsys.readouterr().out
    assert second.count("already running") == 3

    statuses = LocalStack(config.load(own_env).stack).status()
    assert [s.state for s in statuses] == ["healthy", "healthy", "healthy"]
    pids = [s.pid for s in statuses if s.pid is not None]
    assert len(pids) == 3

    assert cli.main(["stack", "down"], environ=own_env) == 0
    assert capsys.readouterr().out.strip() == "stopped: connect, kafka, postgres"
    for pid in pids:
        assert process.session_members(pid) == [], f"process of session {pid} left behind"
    assert cli.main(["stack", "status"], environ=own_env) == 3
    assert capsys.readouterr().out.count(" stopped ") == 3
    assert cli.main(["stack", "down"], environ=own_env) == 0
    assert capsys.readouterr().out.strip() == "nothing was running"


def test_port_in_use_is_named_and_left_alone(own_env: dict[str, str]) -> None:
    port = int(own_env["FABRIC_KAFKA_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(PortInUseError) as info:
            LocalStack(config.load(own_env).stack).up()
    assert str(info.value) == (
        f"port {port} on 127.0.0.1, wanted by kafka, is in use by a process this stack did not "
        "start; stop that process or choose another port with FABRIC_KAFKA_PORT=PORT"
    )


def test_component_exiting_during_start_shows_its_log(own_env: dict[str, str]) -> None:
    env = {**own_env, "FABRIC_KAFKA_HEAP": "not-a-size"}
    with pytest.raises(ComponentStartError) as info:
        LocalStack(config.load(env).stack).up()
    message = str(info.value)
    assert message.startswith("kafka exited while starting; last lines of ")
    assert "Invalid initial heap size" in message


def test_missing_java_is_explained(own_env: dict[str, str]) -> None:
    env = {**own_env, "FABRIC_JAVA_HOME": "/nonexistent/jdk"}
    with pytest.raises(MissingToolError) as info:
        LocalStack(config.load(env).stack).up()
    assert str(info.value) == (
        "no java at /nonexistent/jdk/bin/java: FABRIC_JAVA_HOME (or JAVA_HOME) must name a JDK "
        "or JRE"
    )
