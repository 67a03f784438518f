"""Shared fixtures. Tests under tests/integration run against a real stack started once per session.

By default the session starts its own stack (fresh state folder, free ports) and stops it at the
end. ``FABRIC_TEST_STACK=keep`` instead uses a fixed state folder and fixed ports and leaves the
stack running, so that repeated runs during development skip the start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric import config
from fabric.config import FabricConfig
from fabric.stack.manager import LocalStack
from fabric.stack.ports import free_ports

_KEEP = os.environ.get("FABRIC_TEST_STACK") == "keep"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


def _test_environment() -> tuple[dict[str, str], Path]:
    if _KEEP:
        state = Path("/var/tmp/cdc-fabric-test")
        ports = [25532, 29192, 29193, 28183]
    else:
        state = Path(tempfile.mkdtemp(prefix="cdc-fabric-test-", dir="/var/tmp"))
        ports = free_ports(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "PG"))}
    env.update(
        {
            "FABRIC_STATE_DIR": str(state),
            "FABRIC_PG_PORT": str(ports[0]),
            "FABRIC_KAFKA_PORT": str(ports[1]),
            "FABRIC_KAFKA_CONTROLLER_PORT": str(ports[2]),
            "FABRIC_CONNECT_PORT": str(ports[3]),
            "FABRIC_TOPIC_PARTITIONS": "3",
        }
    )
    return env, state


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """The environment of the session's running stack (as `fabric stack env` would give it)."""
    env, state = _test_environment()
    stack = LocalStack(config.load(env).stack)
    try:
        stack.up()
        yield env
    finally:
        if not _KEEP:
            stack.down()
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_config(stack_env: dict[str, str]) -> FabricConfig:
    """A FabricConfig pointing at the session's running stack (secrets included)."""
    return config.load(stack_env)


@pytest.fixture
def run_cli(stack_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """Run ``fabric ARGS...`` against the session's stack: ``code, out, err = run_cli(*args)``."""
    from fabric import cli

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv), environ=stack_env)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
