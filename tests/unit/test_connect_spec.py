"""Connector specs: loading, rendering, the fabric's rules, and masking of everything shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric.config import REPO_ROOT
from fabric.connect.capture import (
    TableFilter,
    TableInfo,
    capture_errors,
    captured_tables,
    key_columns,
    rule_errors,
)
from fabric.connect.diff import diff_configs
from fabric.connect.masking import MASK, Masker, looks_secret, mask
from fabric.connect.spec import ConnectorSpec, load_spec, load_specs, select_specs
from fabric.connect.status import ConnectorStatus, trace_summary, validation_errors
from fabric.errors import SpecError

SECRET = "s3cr3t-Pa55"
SECRETS_FILE = Path("/var/tmp/cdc-fabric/secrets.env")


def write_spec(folder: Path, name: str, config: dict[str, object], file: str | None = None) -> Path:
    path = folder / (file or f"{name}.json")
    path.write_text(json.dumps({"name": name, "config": config}), encoding="utf-8")
    return path


def base_config(**extra: object) -> dict[str, object]:
    config: dict[str, object] = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector"
    }
    config.update(extra)
    return config


# --- rendering -------------------------------------------------------------------------------


def test_render_fills_placeholders_and_defaults(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        "a",
        base_config(
            **{
                "database.hostname": "${FABRIC_PG_HOST}",
                "database.url": "jdbc:postgresql://${FABRIC_PG_HOST}:${FABRIC_PG_PORT}/db",
                "table.include.list": "${FABRIC_TABLES:-public.users,public.items}",
                "topic.prefix": "${PREFIX:-auction}",
                "empty.default": "${UNSET:-}",
            }
        ),
    )
    values = {"FABRIC_PG_HOST": "db.local", "FABRIC_PG_PORT": "5433", "PREFIX": "shop"}
    spec = load_spec(path).render(values)
    assert spec == ConnectorSpec(
        "a",
        {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "database.hostname": "db.local",
            "database.url": "jdbc:postgresql://db.local:5433/db",
            "table.include.list": "public.users,public.items",
            "topic.prefix": "shop",
            "empty.default": "",
        },
        path,
    )


def test_an_empty_value_falls_back_to_the_default(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "a", base_config(x="${TABLES:-public.t}"))
    assert load_spec(path).render({"TABLES": ""}).config["x"] == "public.t"


def test_non_placeholders_pass_through_untouched(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        "a",
        base_config(
            **{
                "database.password": "${file:/etc/secrets.properties:pg}",
                "lower": "${lower}",
                "open": "${OPEN",
            }
        ),
    )
    config = load_spec(path).render({}).config
    assert config["database.password"] == "${file:/etc/secrets.properties:pg}"
    assert config["lower"] == "${lower}"
    assert config["open"] == "${OPEN"


def test_numbers_and_booleans_become_connect_strings(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "a", base_config(**{"tasks.max": 1, "x.enable": False, "r": 0.5}))
    config = load_spec(path).render({}).config
    assert (config["tasks.max"], config["x.enable"], config["r"]) == ("1", "false", "0.5")


def test_missing_secret_names_the_placeholder_the_file_and_both_ways_to_provide_it(
    tmp_path: Path,
) -> None:
    path = write_spec(
        tmp_path, "a", base_config(**{"database.password": "${FABRIC_PG_CDC_PASSWORD}"})
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path).render({}, secrets_file=SECRETS_FILE)
    assert str(caught.value) == (
        f"{path}: ${{FABRIC_PG_CDC_PASSWORD}} (in database.password) has no value: set the "
        "environment variable FABRIC_PG_CDC_PASSWORD, or add FABRIC_PG_CDC_PASSWORD=... to the "
        "secrets file /var/tmp/cdc-fabric/secrets.env (`fabric stack up` writes it)"
    )


def test_every_missing_placeholder_is_reported_once_with_where_it_is_used(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        "a",
        base_config(**{"database.hostname": "${HOST}", "database.url": "x://${HOST}:${PORT}"}),
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path).render({})
    assert str(caught.value).splitlines() == [
        f"{path}: ${{HOST}} (in database.hostname, database.url) has no value: "
        "set the environment variable HOST",
        f"{path}: ${{PORT}} (in database.url) has no value: set the environment variable PORT",
    ]


# --- loading ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"name": "a", "config": {', "1:26: not valid JSON: Expecting property name enclosed"),
        ("[]", 'expected a JSON object {"name": ..., "config": {...}}'),
        ('{"name": "a", "config": {"x": "1"}, "tasks": []}', "unknown top-level keys ['tasks']"),
        ('{"name": "${NAME}", "config": {"x": "1"}}', "name must be a literal"),
        ('{"name": "a", "config": {}}', "config must be a non-empty JSON object"),
        ('{"name": "a", "config": {"x": "1"}}', "config must set connector.class"),
        ('{"name": "a", "config": {"connector.class": "C", "x": [1]}}', "config.x must be a"),
        ('{"name": "a", "config": {"connector.class": "C", "name": "b"}}', "config.name 'b'"),
    ],
)
def test_malformed_specs_are_refused_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}")
    assert message in str(caught.value)


def test_load_specs_reads_every_json_file_in_name_order(tmp_path: Path) -> None:
    write_spec(tmp_path, "zeta", base_config(), file="b.json")
    write_spec(tmp_path, "alpha", base_config(), file="a.json")
    (tmp_path / "notes.txt").write_text("not a spec")
    assert [t.name for t in load_specs(tmp_path)] == ["alpha", "zeta"]


def test_load_specs_refuses_a_duplicate_name(tmp_path: Path) -> None:
    first = write_spec(tmp_path, "same", base_config(), file="a.json")
    second = write_spec(tmp_path, "same", base_config(), file="b.json")
    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)
    assert str(caught.value) == f"connector 'same' is defined twice: {first} and {second}"


def test_load_specs_says_how_to_fix_an_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as empty:
        load_specs(tmp_path)
    assert str(empty.value) == (
        f"no connector specs (*.json) in {tmp_path}: add one, "
        "or point FABRIC_CONNECTORS_DIR at the folder holding them"
    )
    with pytest.raises(SpecError) as missing:
        load_specs(tmp_path / "missing")
    assert str(missing.value) == (
        f"connector spec folder {tmp_path / 'missing'} does not exist: create it, "
        "or point FABRIC_CONNECTORS_DIR at the folder holding the *.json specs"
    )


def test_select_specs_by_name_or_path(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    write_spec(folder, "alpha", base_config())
    write_spec(folder, "beta", base_config())
    elsewhere = write_spec(tmp_path, "gamma", base_config())
    assert [t.name for t in select_specs(folder, [])] == ["alpha", "beta"]
    assert [t.name for t in select_specs(folder, ["beta", str(elsewhere)])] == ["beta", "gamma"]
    with pytest.raises(SpecError) as caught:
        select_specs(folder, ["nope"])
    assert str(caught.value) == (
        f"no connector spec named 'nope' in {folder} (known: alpha, beta); "
        "name a spec file by its path or a connector by its name"
    )


# --- the shipped auction spec ----------------------------------------------------------------

AUCTION_VALUES = {
    "FABRIC_PG_HOST": "127.0.0.1",
    "FABRIC_PG_PORT": "25432",
    "FABRIC_PG_DATABASE": "auction",
    "FABRIC_PG_CDC_USER": "fabric_cdc",
    "FABRIC_PG_CDC_PASSWORD": SECRET,
    "FABRIC_TOPIC_PARTITIONS": "6",
}


def test_the_auction_spec_renders_to_the_settings_the_fabric_relies_on() -> None:
    spec = load_spec(REPO_ROOT / "connectors" / "auction.json").render(AUCTION_VALUES)
    assert spec.name == "auction"
    assert rule_errors(spec.config) == {}
    expected = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.password": SECRET,
        "plugin.name": "pgoutput",
        "publication.autocreate.mode": "disabled",
        "table.include.list": "public.users,public.items,public.bids",
        "skipped.operations": "t",
        "message.prefix.include.list": r"cdc-fabric\.truncate\.public\..*",
        "decimal.handling.mode": "string",
        "time.precision.mode": "microseconds",
        "value.converter.replace.null.with.default": "false",
        "topic.creation.default.partitions": "6",
        "topic.creation.default.cleanup.policy": "compact",
        "snapshot.mode": "initial",
    }
    assert {k: spec.config[k] for k in expected} == expected


def test_the_auction_spec_refuses_tables_whose_truncate_markers_it_would_drop() -> None:
    values = {**AUCTION_VALUES, "FABRIC_TABLES": "public.users,shop.orders"}
    spec = load_spec(REPO_ROOT / "connectors" / "auction.json").render(values)
    tables = [table("users"), table("orders", schema="shop")]
    assert capture_errors(captured_tables(tables, spec.config), spec.config) == {
        "message.prefix.include.list": [
            "filters out cdc-fabric.truncate.shop.orders, the truncate marker of shop.orders: "
            r"its truncates would be lost (e.g. include cdc-fabric\.truncate\..*)"
        ]
    }


def test_the_auction_tables_can_be_overridden() -> None:
    values = {**AUCTION_VALUES, "FABRIC_TABLES": "public.users"}
    spec = load_spec(REPO_ROOT / "connectors" / "auction.json").render(values)
    assert spec.config["table.include.list"] == "public.users"


# --- the fabric's rules ----------------------------------------------------------------------


def good_config(**overrides: str) -> dict[str, str]:
    spec = load_spec(REPO_ROOT / "connectors" / "auction.json").render(AUCTION_VALUES)
    return {**spec.config, **overrides}


@pytest.mark.parametrize(
    ("overrides", "field", "start"),
    [
        ({"plugin.name": "decoderbufs"}, "plugin.name", "must be pgoutput"),
        ({"skipped.operations": "none"}, "skipped.operations", "must include t"),
        ({"key.converter.schemas.enable": "true"}, "key.converter.schemas.enable", "must be false"),
        ({"value.converter": "x.AvroConverter"}, "value.converter", "must be org.apache.kafka"),
        ({"topic.creation.default.partitions": "six"}, "topic.creation.default.partitions", "must"),
    ],
)
def test_rule_errors_name_the_setting(overrides: dict[str, str], field: str, start: str) -> None:
    errors = rule_errors(good_config(**overrides))
    assert list(errors) == [field]
    assert errors[field][0].startswith(start)


def test_skipped_operations_default_keeps_truncates_out() -> None:
    config = good_config()
    del config["skipped.operations"]  # Debezium's default is t
    assert rule_errors(config) == {}


def test_an_invalid_regex_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as caught:
        TableFilter.from_config({"table.include.list": "public.("})
    assert str(caught.value).startswith("'public.(' is not a valid regular expression: missing )")


def table(name: str, *, pk: bool = True, identity: str = "d", schema: str = "public") -> TableInfo:
    return TableInfo(schema, name, pk, identity, ("id", "v"), "fabric_app", True)


def test_table_filter_matches_whole_names_case_insensitively() -> None:
    tables = [table("users"), table("users_archive"), table("Items"), table("bids", schema="x")]
    config = {"table.include.list": "public.users,public.items,x\\..*", "table.exclude.list": ""}
    assert [t.qualified for t in captured_tables(tables, config)] == [
        "public.users",
        "public.Items",
        "x.bids",
    ]
    config = {"schema.include.list": "x"}
    assert [t.qualified for t in captured_tables(tables, config)] == ["x.bids"]
    config = {"table.exclude.list": "public.users.*"}
    assert [t.qualified for t in captured_tables(tables, config)] == ["public.Items", "x.bids"]


def test_key_columns_parse_debezium_syntax() -> None:
    parsed = key_columns({"message.key.columns": "public.a:id; s\\..*:x, y ;bad;"})
    assert [(rx.pattern, cols) for rx, cols in parsed] == [
        ("public.a", ("id",)),
        ("s\\..*", ("x", "y")),
    ]


def test_a_keyless_table_is_refused_saying_what_to_do() -> None:
    errors = capture_errors([table("users"), table("log", pk=False)], {})
    assert errors == {
        "message.key.columns": [
            "public.log has no primary key: name its key columns in message.key.columns (e.g. "
            "public.log:col1,col2), or add a primary key; without a key its changes would be "
            "published with a null key, which the compacted topic rejects"
        ]
    }


def test_a_keyless_table_with_key_columns_needs_a_replica_identity_and_real_columns() -> None:
    config = {"message.key.columns": "public.log:id,nope"}
    errors = capture_errors([table("log", pk=False, identity="d")], config)
    assert errors == {
        "message.key.columns": [
            "names nope for public.log, which has no such column (columns: id, v)",
            "public.log has no primary key and no REPLICA IDENTITY: once published, every UPDATE "
            "and DELETE on it fails; run ALTER TABLE public.log REPLICA IDENTITY FULL",
        ]
    }
    ok = {"message.key.columns": "public.log:id"}
    assert capture_errors([table("log", pk=False, identity="f")], ok) == {}


def test_message_prefix_filters_must_let_every_captured_tables_marker_through() -> None:
    tables = [table("users"), table("items")]
    narrowed = {"message.prefix.include.list": r"cdc-fabric\.truncate\.public\.(users|items)"}
    assert capture_errors(tables, narrowed) == {}
    only_users = {"message.prefix.include.list": r"cdc-fabric\.truncate\.public\.users"}
    assert capture_errors(tables, only_users) == {
        "message.prefix.include.list": [
            "filters out cdc-fabric.truncate.public.items, the truncate marker of public.items: "
            r"its truncates would be lost (e.g. include cdc-fabric\.truncate\..*)"
        ]
    }
    excluded = capture_errors(tables, {"message.prefix.exclude.list": "cdc-fabric.*users"})
    assert list(excluded) == ["message.prefix.exclude.list"]


def test_capturing_nothing_is_refused() -> None:
    errors = capture_errors([], {"table.include.list": "public.x", "database.dbname": "auction"})
    assert errors == {
        "table.include.list": [
            "matches no table in database auction (public.x): create the tables first "
            "(`fabric sample load` for the auction sample)"
        ]
    }


# --- masking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "database.password",
        "ssl.key.password",
        "FABRIC_PG_CDC_PASSWORD",
        "sasl.jaas.config",
        "api.token",
        "aws.secret.access.key",
        "credentials.path",
    ],
)
def test_secret_looking_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name", ["key.converter", "database.user", "slot.name", "message.key.columns"]
)
def test_ordinary_names(name: str) -> None:
    assert not looks_secret(name)


def test_mask_hides_secret_settings_and_secret_values_anywhere() -> None:
    config = {
        "database.password": "hunter2",
        "database.user": "fabric_cdc",
        "database.url": f"jdbc:postgresql://db/x?password={SECRET}",
    }
    assert mask(config, [SECRET]) == {
        "database.password": MASK,
        "database.user": "fabric_cdc",
        "database.url": f"jdbc:postgresql://db/x?password={MASK}",
    }


def test_masker_learns_values_from_configs_and_hides_escaped_forms() -> None:
    quoted = 'p"w/d'
    masker = Masker()
    masker.add_config({"database.password": quoted, "slot.name": "s"})
    assert masker.text(f"raw {quoted} json {json.dumps(quoted)}") == f'raw {MASK} json "{MASK}"'
    assert masker.text("url p%22w%2Fd") == f"url {MASK}"
    assert masker.text("slot s") == "slot s"


def test_masker_ignores_empty_secrets() -> None:
    assert Masker(["", SECRET]).text("nothing secret") == "nothing secret"


def test_masker_document_masks_nested_json() -> None:
    doc = {"a": [f"x {SECRET}", {"database.password": "pw", "n": 1}], "b": None}
    assert Masker([SECRET]).document(doc) == {
        "a": [f"x {MASK}", {"database.password": MASK, "n": 1}],
        "b": None,
    }


def test_diff_masks_values_but_still_reports_a_changed_secret() -> None:
    masker = Masker([SECRET, "old-pw"])
    running = {"database.password": "old-pw", "x": "1", "gone": f"u={SECRET}"}
    desired = {"database.password": SECRET, "x": "2", "new": f"v={SECRET}"}
    diff = diff_configs("a", running, desired, masker)
    assert diff.lines() == [
        f"+ new=v={MASK}",
        f"- gone=u={MASK}",
        f"~ database.password: {MASK} -> {MASK}",
        "~ x: 1 -> 2",
    ]
    assert SECRET not in json.dumps(diff.as_dict())


def test_validation_errors_are_collected_per_field_and_masked() -> None:
    answer = {
        "configs": [
            {"value": {"name": "plugin.name", "errors": ["must be one of decoderbufs, pgoutput"]}},
            {"value": {"name": "database.hostname", "errors": [f"FATAL: bad password {SECRET}"]}},
            {"value": {"name": "slot.name", "errors": []}},
        ]
    }
    assert validation_errors(answer, Masker([SECRET])) == {
        "plugin.name": ["must be one of decoderbufs, pgoutput"],
        "database.hostname": [f"FATAL: bad password {MASK}"],
    }


def test_status_traces_are_masked_and_summarized() -> None:
    trace = (
        f"org.apache.kafka.connect.errors.ConnectException: login {SECRET} refused\n"
        "\tat io.debezium.X.y(X.java:1)\n"
        f"Caused by: org.postgresql.util.PSQLException: FATAL: password {SECRET}\n"
        "\t... 4 more\n"
    )
    doc = {
        "connector": {"state": "RUNNING", "worker_id": "w:1"},
        "tasks": [{"id": 0, "state": "FAILED", "worker_id": "w:1", "trace": trace}],
    }
    status = ConnectorStatus.from_json("a", doc, Masker([SECRET]))
    assert SECRET not in json.dumps(status.as_dict())
    assert status.failure_report() == (
        f"task 0 FAILED: org.apache.kafka.connect.errors.ConnectException: login {MASK} refused\n"
        f"    Caused by: org.postgresql.util.PSQLException: FATAL: password {MASK}"
    )
    assert trace_summary(None) == "(no trace)"
