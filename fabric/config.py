"""All configuration, read in one place into frozen dataclasses.

Nothing else in the package reads the environment: the CLI calls :func:`load` once and passes the
pieces down. Every setting has a default that works on a fresh machine, and every port can be moved
so that the stack never collides with a Postgres or Kafka the user already runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fabric.errors import ConfigError

LOOPBACK = "127.0.0.1"

# /var/tmp survives reboots and every parent folder is traversable by the unprivileged
# `postgres` user, which a folder inside root's home or a root-owned checkout may not be.
DEFAULT_STATE_DIR = Path("/var/tmp/cdc-fabric")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StackPorts:
    postgres: int = 25432
    kafka: int = 29092
    controller: int = 29093
    connect: int = 28083

    def all(self) -> dict[str, int]:
        return {
            "postgres": self.postgres,
            "kafka": self.kafka,
            "kafka-controller": self.controller,
            "connect": self.connect,
        }


@dataclass(frozen=True)
class PostgresSettings:
    """The private Postgres cluster and the names it is set up with."""

    os_user: str = "postgres"
    bin_dir: Path | None = None  # None: the newest /usr/lib/postgresql/<major>/bin
    app_database: str = "auction"
    app_user: str = "fabric_app"
    cdc_user: str = "fabric_cdc"


@dataclass(frozen=True)
class JvmSettings:
    java_home: Path | None = None  # None: `java` on PATH
    kafka_heap: str = "512m"
    connect_heap: str = "768m"


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack keeps its state and how its components are started."""

    state_dir: Path
    lib_dir: Path
    ports: StackPorts
    postgres: PostgresSettings
    jvm: JvmSettings
    pom: Path = REPO_ROOT / "stack" / "pom.xml"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.env"

    @property
    def pgpass_file(self) -> Path:
        return self.state_dir / "pgpass"


@dataclass(frozen=True)
class Endpoints:
    """How clients reach the stack: the local one by default, any other through the environment.

    ``pg_dsn`` carries no password: libpq reads it from ``PGPASSFILE`` (the stack writes one), so
    the DSN can be printed and logged.
    """

    pg_dsn: str
    kafka_bootstrap: str
    connect_url: str
    pgpass_file: Path | None


@dataclass(frozen=True)
class ConnectorSettings:
    specs_dir: Path
    topic_partitions: int
    apply_timeout_s: float
    # The host the fabric's own source checks use instead of a spec's database.hostname, which is
    # Connect's view of the database (a Compose service name, say); None: the same host.
    source_host: str | None = None


@dataclass(frozen=True)
class MaterializerSettings:
    """One fabric instance's membership in the fabric's consumer group, and where it keeps state."""

    group: str
    instance_id: str  # also the static group membership id: a restart gets its partitions back
    state_dir: Path  # this instance's stores: <state_dir>/<topic>/<partition>
    topic_prefix: str  # Debezium's topic.prefix: tables are <prefix>.<schema>.<table>
    dead_letter_topic: str
    batch_size: int
    instances_dir: Path  # where `fabric materialize status` finds every local instance's status
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # Prometheus scrape endpoint; None: not served
    # host:port where other instances and clients reach this instance's gRPC service; carried in
    # the group membership (fabric.materialize.membership). None: the instance serves no queries.
    advertised_endpoint: str | None = None
    # The port of this instance's forwarding link, advertised beside the endpoint (on its host).
    peer_port: int | None = None
    # Connect's offsets topic (its worker's offset.storage.topic): the committed source offsets
    # that bound what a lookup with a PositionBound waits for (docs/consistency.md).
    source_offsets_topic: str = "cdc-fabric-connect-offsets"
    # Standby replicas per partition (fabric.core.placement): copies other instances keep current
    # and serve lookups from, so a key needs no forward and a failover no restore.
    standby_replicas: int = 0
    # Memory for reads (fabric.state.options.StoreOptions): RocksDB's block and row caches, shared
    # by all the process's stores, and the record cache of each store (0: none).
    block_cache_mb: int = 128
    row_cache_mb: int = 256
    record_cache_mb: int = 32

    @property
    def table_topic_regex(self) -> str:
        """Every table topic of the prefix, and not its message or heartbeat topics."""
        return "^" + self.topic_prefix.replace(".", "\\.") + "\\.[^.]+\\.[^.]+$"

    @property
    def marker_topic(self) -> str:
        return f"{self.topic_prefix}.message"


# The forwarding port's default distance from the gRPC port: one flag moves both.
PEER_PORT_OFFSET = 100


@dataclass(frozen=True)
class ServeSettings:
    """One instance's gRPC query service."""

    host: str  # the address the server binds (loopback by default)
    port: int
    # Where other instances forward lookups to this one (fabric.serve.forwarding), on ``host``;
    # None: ``port`` + PEER_PORT_OFFSET. Stable across restarts like the gRPC port: the group
    # keeps a static member's advertised ports while it rejoins within its session timeout.
    peer_port: int | None
    workers: int  # threads answering calls
    # How long a stopping instance keeps answering for its partitions after leaving the group,
    # until their new owners are ACTIVE (at most this long).
    handover_timeout_s: float

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def forward_port(self) -> int:
        if self.peer_port is not None:
            return self.peer_port
        port = self.port + PEER_PORT_OFFSET
        if port > 65535:
            raise ConfigError(
                f"the forwarding port defaults to the gRPC port + {PEER_PORT_OFFSET}, beyond 65535"
                f" for gRPC port {self.port}; set one with --peer-port or FABRIC_PEER_PORT"
            )
        return port


@dataclass(frozen=True)
class FabricConfig:
    stack: StackConfig
    endpoints: Endpoints
    connectors: ConnectorSettings
    materializer: MaterializerSettings
    serve: ServeSettings
    # Values that fill `${NAME}` placeholders in connector specs; secrets among them.
    spec_values: Mapping[str, str]
    secret_names: frozenset[str]
    environ: Mapping[str, str] = field(repr=False, default_factory=dict)

    def reloaded(self) -> FabricConfig:
        """Read the configuration again from the same environment: the stack's secrets file
        exists only after the first `fabric stack up`, so a run that starts the stack and then
        uses it reads again in between."""
        return load(self.environ)


def load(environ: Mapping[str, str] | None = None) -> FabricConfig:
    """Read the whole configuration from ``environ`` (the process environment by default)."""
    env = os.environ if environ is None else environ
    stack = _stack_config(env)
    secrets = read_env_file(stack.secrets_file)
    endpoints = _endpoints(env, stack)
    connectors = ConnectorSettings(
        specs_dir=Path(env.get("FABRIC_CONNECTORS_DIR", str(REPO_ROOT / "connectors"))),
        topic_partitions=_int(env, "FABRIC_TOPIC_PARTITIONS", 6),
        apply_timeout_s=float(_int(env, "FABRIC_CONNECTOR_TIMEOUT_S", 120)),
        source_host=env.get("FABRIC_CONNECTORS_SOURCE_HOST") or None,
    )
    values = {
        "FABRIC_PG_HOST": LOOPBACK,
        "FABRIC_PG_PORT": str(stack.ports.postgres),
        "FABRIC_PG_DATABASE": stack.postgres.app_database,
        "FABRIC_PG_CDC_USER": stack.postgres.cdc_user,
        "FABRIC_TOPIC_PARTITIONS": str(connectors.topic_partitions),
    }
    values.update(secrets)
    values.update({k: v for k, v in env.items() if k.startswith("FABRIC_")})
    secret_names = frozenset(k for k in values if _looks_secret(k))
    return FabricConfig(
        stack,
        endpoints,
        connectors,
        _materializer(env, stack),
        _serve(env),
        values,
        secret_names,
        dict(env),
    )


def _materializer(env: Mapping[str, str], stack: StackConfig) -> MaterializerSettings:
    instance_id = env.get("FABRIC_INSTANCE_ID", "instance-1")
    group = env.get("FABRIC_GROUP", "cdc-fabric")
    default_dir = stack.state_dir / "instances" / instance_id
    return MaterializerSettings(
        group=group,
        instance_id=instance_id,
        state_dir=Path(env.get("FABRIC_INSTANCE_DIR", str(default_dir))).absolute(),
        topic_prefix=env.get("FABRIC_TOPIC_PREFIX", "auction"),
        dead_letter_topic=env.get("FABRIC_DEAD_LETTER_TOPIC", f"{group}.dead-letters"),
        batch_size=_int(env, "FABRIC_BATCH_SIZE", 2000),
        instances_dir=stack.state_dir / "instances",
        metrics_host=env.get("FABRIC_METRICS_HOST", "127.0.0.1"),
        metrics_port=_port(env, "FABRIC_METRICS_PORT", 0) if "FABRIC_METRICS_PORT" in env else None,
        advertised_endpoint=env.get("FABRIC_ADVERTISED_ENDPOINT") or None,
        source_offsets_topic=env.get(
            "FABRIC_CONNECT_OFFSETS_TOPIC", MaterializerSettings.source_offsets_topic
        ),
        standby_replicas=_count(env, "FABRIC_STANDBY_REPLICAS", 0),
        block_cache_mb=_positive(env, "FABRIC_BLOCK_CACHE_MB", MaterializerSettings.block_cache_mb),
        row_cache_mb=_count(env, "FABRIC_ROW_CACHE_MB", MaterializerSettings.row_cache_mb),
        record_cache_mb=_count(env, "FABRIC_RECORD_CACHE_MB", MaterializerSettings.record_cache_mb),
    )


def _serve(env: Mapping[str, str]) -> ServeSettings:
    return ServeSettings(
        host=env.get("FABRIC_GRPC_HOST", "127.0.0.1"),
        port=_port(env, "FABRIC_GRPC_PORT", 27070),
        peer_port=_port(env, "FABRIC_PEER_PORT", 0) if env.get("FABRIC_PEER_PORT") else None,
        workers=_int(env, "FABRIC_GRPC_WORKERS", 32),
        handover_timeout_s=float(env.get("FABRIC_HANDOVER_TIMEOUT_S", "60")),
    )


def _stack_config(env: Mapping[str, str]) -> StackConfig:
    state_dir = Path(env.get("FABRIC_STATE_DIR", str(DEFAULT_STATE_DIR))).absolute()
    ports = StackPorts(
        postgres=_port(env, "FABRIC_PG_PORT", StackPorts.postgres),
        kafka=_port(env, "FABRIC_KAFKA_PORT", StackPorts.kafka),
        controller=_port(env, "FABRIC_KAFKA_CONTROLLER_PORT", StackPorts.controller),
        connect=_port(env, "FABRIC_CONNECT_PORT", StackPorts.connect),
    )
    if len(set(ports.all().values())) != len(ports.all()):
        raise ConfigError(f"stack ports must differ from each other, got {ports.all()}")
    pg_bin = env.get("FABRIC_PG_BIN_DIR")
    java_home = env.get("FABRIC_JAVA_HOME") or env.get("JAVA_HOME")
    return StackConfig(
        state_dir=state_dir,
        lib_dir=Path(env.get("FABRIC_LIB_DIR", str(_default_lib_dir(env)))).absolute(),
        ports=ports,
        postgres=PostgresSettings(
            os_user=env.get("FABRIC_PG_OS_USER", PostgresSettings.os_user),
            bin_dir=Path(pg_bin) if pg_bin else None,
        ),
        jvm=JvmSettings(
            java_home=Path(java_home) if java_home else None,
            kafka_heap=env.get("FABRIC_KAFKA_HEAP", JvmSettings.kafka_heap),
            connect_heap=env.get("FABRIC_CONNECT_HEAP", JvmSettings.connect_heap),
        ),
    )


def _default_lib_dir(env: Mapping[str, str]) -> Path:
    """Jars are a cache shared by every state folder: resolved once per machine and user."""
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "/root")) / ".cache")
    return Path(cache) / "cdc-fabric" / "lib"


def _endpoints(env: Mapping[str, str], stack: StackConfig) -> Endpoints:
    pg = stack.postgres
    local_dsn = (
        f"host={LOOPBACK} port={stack.ports.postgres} dbname={pg.app_database} user={pg.app_user}"
    )
    pgpass = env.get("PGPASSFILE")
    return Endpoints(
        pg_dsn=env.get("FABRIC_PG_DSN", local_dsn),
        kafka_bootstrap=env.get("FABRIC_KAFKA_BOOTSTRAP", f"{LOOPBACK}:{stack.ports.kafka}"),
        connect_url=env.get("FABRIC_CONNECT_URL", f"http://{LOOPBACK}:{stack.ports.connect}"),
        pgpass_file=Path(pgpass) if pgpass else stack.pgpass_file,
    )


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=VALUE`` file (blank lines and ``#`` comments allowed); missing file → {}."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL"))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ConfigError(f"{name} must be 1 or more, got {value}")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    count = _int(env, name, default)
    if count < 0:
        raise ConfigError(f"{name} must be 0 or more, got {count}")
    return count


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    port = _int(env, name, default)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {port}")
    return port
