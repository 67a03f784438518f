"""docker-compose.yml against the local stack: the same topology and the same settings.

Nothing runs the Compose file here (no Docker engine), so nothing else would notice it drifting
from fabric/stack/. The images' own conventions are modelled below: how the apache/kafka image
turns ``KAFKA_*`` variables into server.properties, and how the Debezium Connect entrypoint turns
its variables into worker properties, overwriting some ``CONNECT_*`` ones. A setting the image
would silently replace therefore fails here, named.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabric import config
from fabric.config import REPO_ROOT, PostgresSettings, StackConfig, StackPorts
from fabric.stack.connect import DEBEZIUM_CONNECTOR_CLASS, worker_settings
from fabric.stack.kafka import broker_settings
from fabric.stack.postgres import APP_PASSWORD, CDC_PASSWORD, PostgresComponent

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
LOOPBACK = "127.0.0.1"

IMAGES = {
    "postgres": "postgres:15",
    "kafka": "apache/kafka:4.3.1",
    "connect": "quay.io/debezium/connect:3.6.1.Final",
}

# Local-stack settings that name its own addresses, folders or logging, and so differ in Compose
# on purpose; the addresses are checked for consistency across services instead. Every other
# setting must be equal. A setting added to the local stack must be either matched in Compose or
# listed here with its reason.
POSTGRES_LOCAL_ONLY = {
    "port": "PGPORT in the container, checked against the published port",
    "listen_addresses": "the image listens on every interface of its container",
    "unix_socket_directories": "the image's own folder",
    "logging_collector": "the image logs to stdout already",
    "log_line_prefix": "container logs carry their own timestamps",
}
BROKER_LOCAL_ONLY = {
    "controller.quorum.bootstrap.servers": "the image formats storage without --standalone",
    "listeners": "Compose adds a listener for the machine's own clients",
    "advertised.listeners": "the same",
    "listener.security.protocol.map": "the same",
    "log.dirs": "a volume in the container",
}
BROKER_COMPOSE_ONLY = {
    "controller.quorum.voters": "stands in for controller.quorum.bootstrap.servers",
}
WORKER_LOCAL_ONLY = {
    "bootstrap.servers": "the broker's listener inside the network",
    "listeners": "every interface of the container, published on loopback",
    "rest.advertised.host.name": "the service name",
    "rest.advertised.port": "the container's port",
    "plugin.path": "the image's own plugin folder",
}

# The Debezium Connect entrypoint (connect-base docker-entrypoint.sh): each variable, or the
# image's default for it when unset or empty, is exported over CONNECT_<PROPERTY>. None: no
# default, the property is written only when the variable is set.
_CONNECT_IMAGE_VARIABLES: dict[str, tuple[str, str | None]] = {
    "BOOTSTRAP_SERVERS": ("bootstrap.servers", "0.0.0.0:9092"),
    "GROUP_ID": ("group.id", "1"),
    "CONFIG_STORAGE_TOPIC": ("config.storage.topic", ""),
    "OFFSET_STORAGE_TOPIC": ("offset.storage.topic", ""),
    "STATUS_STORAGE_TOPIC": ("status.storage.topic", None),
    "KEY_CONVERTER": ("key.converter", "org.apache.kafka.connect.json.JsonConverter"),
    "VALUE_CONVERTER": ("value.converter", "org.apache.kafka.connect.json.JsonConverter"),
    "OFFSET_FLUSH_INTERVAL_MS": ("offset.flush.interval.ms", "60000"),
    "OFFSET_FLUSH_TIMEOUT_MS": ("offset.flush.timeout.ms", "5000"),
    "SHUTDOWN_TIMEOUT": ("task.shutdown.graceful.timeout.ms", "10000"),
    "REST_PORT": ("rest.port", "8083"),
    "REST_HOST_NAME": ("rest.host.name", "<container address>"),
    "ADVERTISED_PORT": ("rest.advertised.port", "8083"),
    "ADVERTISED_HOST_NAME": ("rest.advertised.host.name", "<container address>"),
}

# Variables the apache/kafka image passes to the JVM or its logging, not to server.properties.
_KAFKA_NOT_PROPERTIES = frozenset(
    {
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPT",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
        "KAFKA_JMX_HOSTNAME",
    }
)

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")
_LISTENER = re.compile(r"(?P<name>[A-Za-z_]+)://(?P<host>[^:,]*):(?P<port>\d+)")


# --- reading the Compose file ---------------------------------------------------------------


def _interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """``node`` with every ``${NAME:-default}`` resolved as Compose does against ``env``."""
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def resolve(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if env.get(name):
            return env[name]
        assert default is not None, f"${{{name}}} in {node!r} has no default"
        return default

    resolved = _VARIABLE.sub(resolve, node)
    assert "$" not in resolved, f"{node!r}: interpolation this test does not model"
    return resolved


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    """The Compose file as it runs with none of its variables set."""
    result: dict[str, Any] = _interpolate(raw_compose, {})
    return result


@pytest.fixture
def stack(tmp_path: Path) -> StackConfig:
    # A stand-in Postgres binary folder: left unset, the local stack looks for Debian's server
    # and installs it when missing.
    bin_dir = tmp_path / "pg-bin"
    bin_dir.mkdir()
    (bin_dir / "postgres").touch()
    env = {
        "FABRIC_STATE_DIR": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "FABRIC_PG_BIN_DIR": str(bin_dir),
    }
    return config.load(env).stack


def _service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    services = compose.get("services") or {}
    assert name in services, f"docker-compose.yml has no {name!r} service"
    service: dict[str, Any] = services[name]
    return service


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as the container sees it; every value spelled out."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    env: dict[str, str] = {}
    for key, value in raw.items():
        assert value is not None, f"{key} would be copied from the host's environment"
        # Compose would pass True as "true"; an unquoted boolean is a mistake waiting to happen
        # in another tool, and quoting it costs nothing.
        assert not isinstance(value, bool), f"{key}: quote the boolean ({value!r})"
        env[key] = str(value)
    return env


def _published(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    published = []
    for entry in service.get("ports") or []:
        assert isinstance(entry, str), f"use the short syntax IP:HOST:CONTAINER, got {entry!r}"
        parts = entry.removesuffix("/tcp").split(":")
        assert len(parts) == 3, f"{entry!r} must name the host address: IP:HOST:CONTAINER"
        address, host_port, container_port = parts
        published.append((address, int(host_port), int(container_port)))
    return published


def _only_port(compose: Mapping[str, Any], name: str) -> tuple[int, int]:
    """(host port, container port) of a service that publishes exactly one port."""
    published = _published(_service(compose, name))
    assert len(published) == 1, f"{name} should publish one port, publishes {published}"
    return published[0][1], published[0][2]


def _command_settings(argv: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """The ``-c name=value`` settings of a postgres command line, and its other arguments."""
    settings: dict[str, str] = {}
    others: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "-c":
            name, _, value = next(args).partition("=")
            settings[name] = value
        else:
            others.append(arg)
    return settings, others


def _kafka_server_properties(env: Mapping[str, str]) -> dict[str, str]:
    """server.properties as the apache/kafka image writes it from its environment."""
    properties = {}
    for key, value in env.items():
        if key.startswith("KAFKA_") and key not in _KAFKA_NOT_PROPERTIES:
            name = key.replace("KAFKA_", "").lower().replace("_", ".")
            properties[name.replace("...", "-").replace("..", "_")] = value
    return properties


def _connect_worker_properties(env: Mapping[str, str]) -> dict[str, str]:
    """The worker properties the Debezium Connect entrypoint writes from its environment."""
    properties = {
        key.removeprefix("CONNECT_").lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith("CONNECT_")
    }
    for variable, (name, default) in _CONNECT_IMAGE_VARIABLES.items():
        value = env.get(variable) or default
        if value is not None:
            properties[name] = value
    return properties


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    found = {m["name"]: (m["host"], int(m["port"])) for m in _LISTENER.finditer(value)}
    assert len(found) == len(value.split(",")), f"cannot read the listeners {value!r}"
    return found


# --- comparing with the local stack ---------------------------------------------------------


def _compared_keys(local: Mapping[str, object], local_only: Mapping[str, str]) -> list[str]:
    stale = sorted(set(local_only) - set(local))
    assert not stale, f"listed as local-only but no longer set by the local stack: {stale}"
    return sorted(set(local) - set(local_only))


def _assert_same(
    what: str, compose: Mapping[str, str], local: Mapping[str, object], keys: Iterable[str]
) -> None:
    mismatched = [
        f"{key}: docker-compose.yml has {compose.get(key, '<unset>')!r}, "
        f"the local stack {str(local[key])!r}"
        for key in keys
        if compose.get(key) != str(local[key])
    ]
    assert not mismatched, f"{what} differs from the local stack:\n" + "\n".join(mismatched)


# --- the tests ------------------------------------------------------------------------------


def test_compose_spec_file_without_a_version_key(raw_compose: dict[str, Any]) -> None:
    assert "version" not in raw_compose, "the Compose spec has no `version:`; drop it"


def test_the_three_services_use_the_official_images(compose: dict[str, Any]) -> None:
    images = {name: _service(compose, name).get("image") for name in IMAGES}
    assert images == IMAGES


def test_every_published_port_is_on_loopback_only(compose: dict[str, Any]) -> None:
    exposed = [
        f"{name}: {address}:{host_port}"
        for name, service in compose["services"].items()
        for address, host_port, _ in _published(service)
        if address != LOOPBACK
    ]
    assert not exposed, f"published beyond {LOOPBACK}: {exposed}"


def test_published_ports_are_the_local_stack_defaults(compose: dict[str, Any]) -> None:
    ports = StackPorts()
    published = {name: _only_port(compose, name)[0] for name in IMAGES}
    # The KRaft controller port stays inside the network: only the broker talks to it.
    assert published == {"postgres": ports.postgres, "kafka": ports.kafka, "connect": ports.connect}


def test_port_variables_move_every_address_that_names_the_port(
    raw_compose: dict[str, Any],
) -> None:
    moved = _interpolate(
        raw_compose,
        {"FABRIC_PG_PORT": "35432", "FABRIC_KAFKA_PORT": "39092", "FABRIC_CONNECT_PORT": "38083"},
    )
    published = {name: _only_port(moved, name)[0] for name in IMAGES}
    assert published == {"postgres": 35432, "kafka": 39092, "connect": 38083}
    assert _environment(_service(moved, "postgres"))["PGPORT"] == "35432"
    advertised = _listeners(_environment(_service(moved, "kafka"))["KAFKA_ADVERTISED_LISTENERS"])
    assert (LOOPBACK, 39092) in advertised.values()


def test_postgres_runs_with_the_local_stack_settings(
    compose: dict[str, Any], stack: StackConfig
) -> None:
    command = _service(compose, "postgres")["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    assert argv[0] == "postgres"
    settings, others = _command_settings(argv[1:])
    assert others == [], f"postgres arguments other than -c name=value: {others}"
    assert settings.get("wal_level") == "logical", "Debezium needs wal_level=logical"

    local, _ = _command_settings(PostgresComponent(stack).process().argv[1:])
    keys = _compared_keys(local, POSTGRES_LOCAL_ONLY)
    _assert_same("postgres's command", settings, local, keys)
    assert sorted(settings) == keys, "postgres settings the local stack does not have"


def test_postgres_listens_on_its_published_port_in_utf8(compose: dict[str, Any]) -> None:
    postgres = _service(compose, "postgres")
    env = _environment(postgres)
    host_port, container_port = _only_port(compose, "postgres")
    # One port on both sides, so that ${FABRIC_PG_PORT} in a connector spec reaches Postgres
    # from Connect as well as from the machine.
    assert int(env["PGPORT"]) == container_port == host_port
    assert "--encoding=UTF8" in shlex.split(env["POSTGRES_INITDB_ARGS"])


def test_postgres_init_script_creates_the_local_stack_roles(compose: dict[str, Any]) -> None:
    postgres = _service(compose, "postgres")
    mounts = {
        source: target
        for source, target, *_ in (v.split(":") for v in postgres.get("volumes") or [])
    }
    script = "./docker/postgres-init.sh"
    assert script in mounts, f"{script} is not mounted into the postgres service"
    assert mounts[script].startswith("/docker-entrypoint-initdb.d/")
    assert mounts[script].endswith(".sh")
    path = REPO_ROOT / script
    # Executable, it runs in a shell of its own; otherwise the image sources it into its entrypoint.
    assert os.access(path, os.X_OK), f"{path} is not executable"

    sql = path.read_text(encoding="utf-8")
    names = PostgresSettings()
    app, cdc, database = names.app_user, names.cdc_user, names.app_database
    for statement in (
        f"CREATE ROLE {app} LOGIN PASSWORD :'app_password';",
        f"CREATE ROLE {cdc} LOGIN REPLICATION PASSWORD :'cdc_password';",
        f"CREATE DATABASE {database} OWNER {app} ENCODING 'UTF8' TEMPLATE template0;",
        f"GRANT {app} TO {cdc};",
        f"GRANT CREATE, CONNECT ON DATABASE {database} TO {cdc};",
    ):
        assert statement in sql, f"{script} lacks: {statement}"
    env = _environment(postgres)
    for variable in (APP_PASSWORD, CDC_PASSWORD):
        assert env.get(variable), f"postgres gets no {variable} for {script}"
        assert f'"${{{variable}:?' in sql, f"{script} does not read {variable}"


def test_kafka_matches_broker_settings(
    compose: dict[str, Any], stack: StackConfig, tmp_path: Path
) -> None:
    properties = _kafka_server_properties(_environment(_service(compose, "kafka")))
    local = broker_settings(stack, tmp_path / "kafka-data")
    keys = _compared_keys(local, BROKER_LOCAL_ONLY)
    _assert_same("kafka's server.properties", properties, local, keys)
    unexplained = sorted(set(properties) - set(local) - set(BROKER_COMPOSE_ONLY))
    assert not unexplained, f"kafka settings the local stack does not have: {unexplained}"


def test_kafka_internal_topics_are_replicated_once(compose: dict[str, Any]) -> None:
    properties = _kafka_server_properties(_environment(_service(compose, "kafka")))
    single_node = {
        name: properties.get(name)
        for name in (
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "transaction.state.log.min.isr",
            "share.coordinator.state.topic.replication.factor",
            "share.coordinator.state.topic.min.isr",
        )
    }
    assert single_node == dict.fromkeys(single_node, "1")


def test_kafka_listeners_fit_the_published_port_and_the_network(
    compose: dict[str, Any],
) -> None:
    kafka = _service(compose, "kafka")
    properties = _kafka_server_properties(_environment(kafka))
    listeners = _listeners(properties["listeners"])
    advertised = _listeners(properties["advertised.listeners"])
    protocols = dict(p.split(":") for p in properties["listener.security.protocol.map"].split(","))
    assert set(listeners) == set(protocols), "every listener needs a security protocol"

    host_port, container_port = _only_port(compose, "kafka")
    on_loopback = [name for name, (host, _) in advertised.items() if host == LOOPBACK]
    assert len(on_loopback) == 1, f"one listener must be advertised on {LOOPBACK}: {advertised}"
    host_listener = on_loopback[0]
    assert advertised[host_listener] == (LOOPBACK, host_port)
    assert listeners[host_listener][1] == container_port

    inter_broker = properties["inter.broker.listener.name"]
    assert advertised[inter_broker][0] == "kafka", "other containers reach it by service name"
    internal = "{}:{}".format(*advertised[inter_broker])
    connect_env = _environment(_service(compose, "connect"))
    assert _connect_worker_properties(connect_env)["bootstrap.servers"] == internal

    controller = properties["controller.listener.names"]
    assert controller not in advertised
    voters = f"{properties['node.id']}@kafka:{listeners[controller][1]}"
    assert properties["controller.quorum.voters"] == voters


def test_connect_matches_worker_settings(compose: dict[str, Any], stack: StackConfig) -> None:
    properties = _connect_worker_properties(_environment(_service(compose, "connect")))
    local = worker_settings(stack, Path("/plugins"))
    keys = _compared_keys(local, WORKER_LOCAL_ONLY)
    _assert_same("connect's worker properties", properties, local, keys)


def test_connect_sets_no_variable_its_entrypoint_overwrites(compose: dict[str, Any]) -> None:
    env = _environment(_service(compose, "connect"))
    overwritten = {
        "CONNECT_" + name.upper().replace(".", "_"): variable
        for variable, (name, _) in _CONNECT_IMAGE_VARIABLES.items()
    }
    wrong = [f"{key} (set {overwritten[key]} instead)" for key in env if key in overwritten]
    assert not wrong, f"the image's entrypoint overwrites: {wrong}"


def test_connect_rest_is_published_from_its_listener(compose: dict[str, Any]) -> None:
    connect = _service(compose, "connect")
    properties = _connect_worker_properties(_environment(connect))
    _, container_port = _only_port(compose, "connect")
    assert [port for _, port in _listeners(properties["listeners"]).values()] == [container_port]
    assert properties["rest.advertised.host.name"] == "connect"
    assert properties["rest.advertised.port"] == str(container_port)


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name in IMAGES:
        test = (_service(compose, name).get("healthcheck") or {}).get("test")
        assert isinstance(test, list), f"{name} has no healthcheck"
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, f"{name}: bad test {test!r}"
    connect_test = " ".join(_service(compose, "connect")["healthcheck"]["test"])
    assert DEBEZIUM_CONNECTOR_CLASS in connect_test, "connect is healthy once Debezium is loaded"


def test_connect_waits_for_healthy_kafka_and_postgres(compose: dict[str, Any]) -> None:
    depends_on = _service(compose, "connect").get("depends_on") or {}
    assert isinstance(depends_on, dict), "depends_on needs conditions, not a list"
    waits = {name: depends_on.get(name) for name in ("kafka", "postgres")}
    healthy = {"condition": "service_healthy"}
    assert waits == {"kafka": healthy, "postgres": healthy}


FABRIC_INSTANCES = ("fabric-1", "fabric-2", "fabric-3")


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_fabric_instances_each_advertise_their_service_name_and_keep_their_own_state(
    compose: dict[str, Any],
) -> None:
    volumes = set()
    for name in FABRIC_INSTANCES:
        service = _service(compose, name)
        command = service["command"]
        assert command[0] == "serve"
        assert _flag(command, "--instance-id") == name
        port = _flag(command, "--port")
        assert _flag(command, "--advertise") == f"{name}:{port}", "peers forward to this address"
        assert _only_port(compose, name)[1] == int(port)
        (volume,) = service["volumes"]
        volumes.add(volume.split(":")[0])
        env = _environment(service)
        assert env["FABRIC_KAFKA_BOOTSTRAP"] == "kafka:19092", "the broker's in-network listener"
        peer_port = int(env["FABRIC_PEER_PORT"])
        assert peer_port not in (int(port), 0), "a fixed forwarding port beside the gRPC one"
        waits = service.get("depends_on") or {}
        assert waits.get("kafka") == {"condition": "service_healthy"}
    assert len(volumes) == len(FABRIC_INSTANCES), "a store is opened by one process at a time"
    assert volumes <= set(compose["volumes"])


def test_fabric_instances_share_one_group_and_report_health(compose: dict[str, Any]) -> None:
    groups = {_environment(_service(compose, n))["FABRIC_GROUP"] for n in FABRIC_INSTANCES}
    assert len(groups) == 1
    for name in FABRIC_INSTANCES:
        test = " ".join(_service(compose, name)["healthcheck"]["test"])
        assert "HealthStub" in test and "SERVING" in test
