from pathlib import Path

import pytest

from fabric import config
from fabric.errors import ConfigError


def test_defaults_point_at_the_local_stack(tmp_path: Path) -> None:
    cfg = config.load({"FABRIC_STATE_DIR": str(tmp_path), "HOME": str(tmp_path)})
    assert cfg.stack.ports == config.StackPorts(25432, 29092, 29093, 28083)
    assert cfg.endpoints.kafka_bootstrap == "127.0.0.1:29092"
    assert cfg.endpoints.connect_url == "http://127.0.0.1:28083"
    assert cfg.endpoints.pg_dsn == "host=127.0.0.1 port=25432 dbname=auction user=fabric_app"
    assert cfg.endpoints.pgpass_file == tmp_path / "pgpass"
    assert cfg.stack.lib_dir == tmp_path / ".cache" / "cdc-fabric" / "lib"
    assert cfg.connectors.topic_partitions == 6


def test_ports_move_together_with_endpoints(tmp_path: Path) -> None:
    cfg = config.load(
        {"FABRIC_STATE_DIR": str(tmp_path), "FABRIC_KAFKA_PORT": "39092", "FABRIC_PG_PORT": "35432"}
    )
    assert cfg.endpoints.kafka_bootstrap == "127.0.0.1:39092"
    assert "port=35432" in cfg.endpoints.pg_dsn
    assert cfg.spec_values["FABRIC_PG_PORT"] == "35432"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FABRIC_PG_PORT": "abc"}, "FABRIC_PG_PORT must be a whole number, got 'abc'"),
        ({"FABRIC_PG_PORT": "70000"}, "FABRIC_PG_PORT must be a TCP port (1-65535), got 70000"),
        ({"FABRIC_KAFKA_PORT": "25432"}, "stack ports must differ from each other"),
        ({"FABRIC_STANDBY_REPLICAS": "-1"}, "FABRIC_STANDBY_REPLICAS must be 0 or more, got -1"),
        ({"FABRIC_PEER_PORT": "0"}, "FABRIC_PEER_PORT must be a TCP port (1-65535), got 0"),
        ({"FABRIC_PEER_PORT": "x"}, "FABRIC_PEER_PORT must be a whole number, got 'x'"),
        ({"FABRIC_BLOCK_CACHE_MB": "0"}, "FABRIC_BLOCK_CACHE_MB must be 1 or more, got 0"),
        ({"FABRIC_ROW_CACHE_MB": "-1"}, "FABRIC_ROW_CACHE_MB must be 0 or more, got -1"),
        ({"FABRIC_RECORD_CACHE_MB": "lots"}, "FABRIC_RECORD_CACHE_MB must be a whole number"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({"FABRIC_STATE_DIR": str(tmp_path), **env})
    assert str(info.value).startswith(message)


def test_the_forwarding_port_follows_the_grpc_port_unless_set(tmp_path: Path) -> None:
    assert config.load({"FABRIC_STATE_DIR": str(tmp_path)}).serve.forward_port == 27170
    moved = config.load({"FABRIC_STATE_DIR": str(tmp_path), "FABRIC_GRPC_PORT": "28000"})
    assert moved.serve.forward_port == 28100
    cfg = config.load({"FABRIC_STATE_DIR": str(tmp_path), "FABRIC_PEER_PORT": "30000"})
    assert cfg.serve.forward_port == 30000
    high = config.load({"FABRIC_STATE_DIR": str(tmp_path), "FABRIC_GRPC_PORT": "65500"})
    with pytest.raises(ConfigError, match="set one with --peer-port"):
        high.serve.forward_port  # noqa: B018


def test_secrets_file_fills_spec_values_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "secrets.env").write_text(
        "# generated\nFABRIC_PG_CDC_PASSWORD=from-file\nexport FABRIC_OTHER='x y'\n"
    )
    cfg = config.load({"FABRIC_STATE_DIR": str(tmp_path)})
    assert cfg.spec_values["FABRIC_PG_CDC_PASSWORD"] == "from-file"
    assert cfg.spec_values["FABRIC_OTHER"] == "x y"
    assert "FABRIC_PG_CDC_PASSWORD" in cfg.secret_names
    override = config.load({"FABRIC_STATE_DIR": str(tmp_path), "FABRIC_PG_CDC_PASSWORD": "env"})
    assert override.spec_values["FABRIC_PG_CDC_PASSWORD"] == "env"


def test_malformed_secrets_line_is_located(tmp_path: Path) -> None:
    (tmp_path / "secrets.env").write_text("FABRIC_A=1\njust words\n")
    with pytest.raises(ConfigError, match=r"secrets.env:2: expected KEY=VALUE, got 'just words'"):
        config.load({"FABRIC_STATE_DIR": str(tmp_path)})


def test_materializer_settings_and_topic_selection(tmp_path: Path) -> None:
    import re

    cfg = config.load({"FABRIC_STATE_DIR": str(tmp_path), "FABRIC_INSTANCE_ID": "b"})
    m = cfg.materializer
    assert (m.group, m.instance_id, m.topic_prefix) == ("cdc-fabric", "b", "auction")
    assert m.state_dir == tmp_path / "instances" / "b"
    assert m.dead_letter_topic == "cdc-fabric.dead-letters"
    assert m.marker_topic == "auction.message"
    assert m.standby_replicas == 0
    replicated = config.load({"FABRIC_STATE_DIR": str(tmp_path), "FABRIC_STANDBY_REPLICAS": "2"})
    assert replicated.materializer.standby_replicas == 2
    assert (m.block_cache_mb, m.row_cache_mb, m.record_cache_mb) == (128, 256, 32)
    pattern = re.compile(m.table_topic_regex)
    assert pattern.match("auction.public.users")
    assert pattern.match("auction.sales.order_lines")
    for other in ("auction.message", "__debezium-heartbeat.auction", "auctionx.public.users"):
        assert not pattern.match(other), other


def test_reloaded_sees_secrets_written_after_the_first_load(tmp_path: Path) -> None:
    cfg = config.load({"FABRIC_STATE_DIR": str(tmp_path)})
    assert "FABRIC_PG_CDC_PASSWORD" not in cfg.spec_values
    (tmp_path / "secrets.env").write_text("FABRIC_PG_CDC_PASSWORD=written-by-stack-up\n")
    assert cfg.reloaded().spec_values["FABRIC_PG_CDC_PASSWORD"] == "written-by-stack-up"


def test_the_cache_sizes_reach_the_stores(tmp_path: Path) -> None:
    from fabric.materialize.instance import store_options_of
    from fabric.state.options import MiB, StoreOptions

    env = {"FABRIC_BLOCK_CACHE_MB": "64", "FABRIC_ROW_CACHE_MB": "0", "FABRIC_RECORD_CACHE_MB": "8"}
    options = store_options_of(config.load({"FABRIC_STATE_DIR": str(tmp_path), **env}).materializer)
    assert (options.block_cache_bytes, options.row_cache_bytes, options.record_cache_bytes) == (
        64 * MiB,
        0,
        8 * MiB,
    )
    defaults = store_options_of(config.load({"FABRIC_STATE_DIR": str(tmp_path)}).materializer)
    assert defaults == StoreOptions()
