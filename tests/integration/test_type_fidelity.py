"""Type fidelity, for real: a row read back from Debezium's JSON through the catalog's table
definition equals, column by column, type and value, what psycopg returns for the source row."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fabric import cli, db, topics
from fabric.catalog import read_table_schemas
from fabric.config import REPO_ROOT, FabricConfig
from fabric.core.events import ChangeEvent, Op
from fabric.core.types import TableSchema, decode_row
from fabric.errors import UnknownTableError
from fabric.topics import TopicRecord

TABLE = "fidelity.everything"
TOPIC = "fidelity.fidelity.everything"
TIMEOUT_S = 90.0

DDL = """
DROP SCHEMA IF EXISTS fidelity CASCADE;
CREATE SCHEMA fidelity;
CREATE TYPE fidelity.mood AS ENUM ('sad', 'ok', 'happy ☺');
CREATE TABLE fidelity.everything (
  c_extra_key text NOT NULL,
  id integer NOT NULL,
  c_smallint smallint, c_integer integer, c_bigint bigint,
  c_numeric numeric, c_numeric_scaled numeric(12,2), c_real real, c_double double precision,
  c_text text, c_varchar varchar(10), c_char char(5), c_boolean boolean, c_uuid uuid,
  c_date date, c_time time, c_timestamp timestamp, c_timestamptz timestamptz,
  c_interval interval, c_json json, c_jsonb jsonb, c_bytea bytea, c_mood fidelity.mood,
  a_integer integer[], a_text text[], a_numeric numeric[], a_uuid uuid[], a_date date[],
  a_timestamptz timestamptz[], a_boolean boolean[], a_jsonb jsonb[], a_bytea bytea[],
  a_mood fidelity.mood[],
  PRIMARY KEY (id, c_extra_key)
);
"""

ROWS = r"""
INSERT INTO fidelity.everything VALUES
 ('k', 1, 32767, 2147483647, 9223372036854775807, 123456789012345678901234567890.5,
  1234567890.12, 3.25, 1.0000000000000002, 'Ünïcode ☃ 😀 \ " ''', 'abc', 'ab', true,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1969-07-20', '23:59:59.999999',
  '1969-12-31 23:59:59.123456', '2200-01-01 00:00:00.5+05:30', '-1 days -02:03:04.5',
  '{"b": 1,  "a": [1, 2.5, null]}', '{"b": 1,  "a": [1, 2.5, null]}', '\x00ff10', 'happy ☺',
  '{1,NULL,3}', '{"a","b c",NULL,"é"}', '{1.5,NULL,-2,123456789012345678901234567890}',
  '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{2020-02-29,NULL}',
  '{"2020-01-01 00:00:00+00"}', '{true,false,NULL}', ARRAY['{"x":1}'::jsonb],
  ARRAY['\x01'::bytea, NULL], '{sad,ok}'),
 ('k', 2, -32768, -2147483648, -9223372036854775808, 'NaN', -0.01, 'NaN', '-Infinity',
  '', 'a', '', false, '00000000-0000-0000-0000-000000000000', '9999-12-31', '00:00:00',
  '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00+00', '1 year 2 mons 3 days 04:05:06',
  '[]', 'null', '', 'sad', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
 ('k', 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL),
 ('k', 4, 0, 0, 0, 'Infinity', 0, 0.1, -0.0, 'x', 'é', 'é', NULL, NULL, '0001-01-01',
  '12:34:56.789', '1900-02-28 12:00:00', '1970-01-01 00:00:00+00', '-1 mons', '"s"',
  '{"a":{"b":[true,false]}}', '\x', 'ok', '{NULL}', '{NULL,""}', '{1e-30}', NULL, NULL, NULL,
  NULL, NULL, NULL, '{"happy ☺"}'),
 ('k', 5, 1, 1, 1, '-Infinity', 1, '-Infinity', 'Infinity', repeat('toast', 3000), 'v', 'v',
  true, NULL, NULL, '00:00:00.000001', NULL, '2020-06-01 12:00:00.123+02',
  '-1 years -2 mons +3 days -04:05:06.000001', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"""
ROW_IDS = (1, 2, 3, 4, 5)


def same(a: Any, b: Any) -> bool:
    """Equal type and value; NaN equals NaN, and -0.0 differs from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, Decimal) and a.is_nan():
        return bool(b.is_nan())
    return bool(a == b)


@pytest.fixture(scope="module")
def fidelity(
    stack_env: dict[str, str], stack_config: FabricConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FabricConfig]:
    """The fidelity table filled and captured by its own connector, retired at the end."""
    with db.connect(stack_config.endpoints) as conn:
        conn.execute(DDL)
        conn.execute(ROWS)
    spec = json.loads((REPO_ROOT / "connectors" / "auction.json").read_text())
    spec["name"] = "fidelity"
    spec["config"].update(
        {
            "topic.prefix": "fidelity",
            "slot.name": "cdc_fabric_fidelity",
            "publication.name": "cdc_fabric_fidelity",
            "table.include.list": TABLE,
            "message.prefix.include.list": "cdc-fabric\\.truncate\\.fidelity\\..*",
        }
    )
    path: Path = tmp_path_factory.mktemp("fidelity") / "fidelity.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["connectors", "apply", str(path)], environ=stack_env) == 0
    try:
        yield stack_config
    finally:
        cli.main(["connectors", "delete", "--drop-slot", str(path)], environ=stack_env)
        with db.connect(stack_config.endpoints) as conn:
            conn.execute("DROP SCHEMA fidelity CASCADE")


def _read_until(
    cfg: FabricConfig,
    done: Callable[[list[TopicRecord]], bool],
    keep: Callable[[TopicRecord], bool],
) -> list[TopicRecord]:
    kept: list[TopicRecord] = []
    deadline = time.monotonic() + TIMEOUT_S
    for record in topics.tail(cfg.endpoints.kafka_bootstrap, "fidelity", from_beginning=True):
        if record.topic == TOPIC and keep(record):
            kept.append(record)
            if done(kept):
                return kept
        if time.monotonic() > deadline:
            break
    pytest.fail(f"timed out after {TIMEOUT_S:.0f}s; read {len(kept)} matching records: {kept}")


def _psycopg_row(cfg: FabricConfig, row_id: int) -> dict[str, Any]:
    with db.connect(cfg.endpoints) as conn:
        # The fabric's timestamptz values are UTC; equality must not depend on the session zone.
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        cur = conn.execute("SELECT * FROM fidelity.everything WHERE id = %s", [row_id])
        values = cur.fetchone()
        assert values is not None and cur.description is not None
        row = dict(zip([d.name for d in cur.description], values, strict=True))
        # psycopg does not know an enum's array type and returns its text ('{sad,ok}'); the
        # fabric returns a list of labels, which is what psycopg gives for the text[] cast.
        assert row["a_mood"] is None or isinstance(row["a_mood"], str)
        cast = conn.execute(
            "SELECT a_mood::text[] FROM fidelity.everything WHERE id = %s", [row_id]
        )
        row["a_mood"] = cast.fetchone()[0]  # type: ignore[index]
    return row


def _assert_same_row(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert list(got) == list(expected)
    differ = {
        name: (got[name], expected[name])
        for name in expected
        if not same(got[name], expected[name])
    }
    assert differ == {}, f"row {expected['id']}: (fabric, psycopg) differ: {differ}"


def _schema(cfg: FabricConfig) -> TableSchema:
    with db.connect(cfg.endpoints) as conn:
        return read_table_schemas(conn, [TABLE])[TABLE]


def _change(ops: tuple[Op, ...], row_id: int) -> Callable[[TopicRecord], bool]:
    def keep(r: TopicRecord) -> bool:
        if not isinstance(r.event, ChangeEvent) or r.event.op not in ops:
            return False
        image = r.event.after or r.event.before or {}
        return image.get("id") == row_id

    return keep


def test_catalog_describes_the_table_in_column_and_key_order(fidelity: FabricConfig) -> None:
    schema = _schema(fidelity)
    assert schema.primary_key == ("id", "c_extra_key")
    assert [c.name for c in schema.columns[:3]] == ["c_extra_key", "id", "c_smallint"]
    by_name = {c.name: c for c in schema.columns}
    assert by_name["c_numeric_scaled"].type.pg_type == "numeric(12,2)"
    assert by_name["c_timestamptz"].type.base == "timestamptz"
    assert by_name["a_text"].type.is_array and by_name["a_text"].type.base == "text"
    assert by_name["a_mood"].type.enum_labels == ("sad", "ok", "happy ☺")
    assert by_name["id"].not_null and not by_name["c_text"].not_null
    with db.connect(fidelity.endpoints) as conn, pytest.raises(UnknownTableError) as caught:
        read_table_schemas(conn, [TABLE, "fidelity.nope"])
    assert "fidelity.nope" in str(caught.value)


def test_snapshot_rows_decode_to_psycopgs_values(fidelity: FabricConfig) -> None:
    schema = _schema(fidelity)
    records = _read_until(
        fidelity,
        lambda kept: {r.event.after["id"] for r in kept} == set(ROW_IDS),  # type: ignore[union-attr,index]
        lambda r: isinstance(r.event, ChangeEvent) and r.event.op is Op.READ,
    )
    for record in records:
        assert isinstance(record.event, ChangeEvent) and record.event.after is not None
        row = decode_row(schema, record.event.after)
        _assert_same_row(row, _psycopg_row(fidelity, row["id"]))


def test_update_image_decodes_and_delete_carries_the_key(fidelity: FabricConfig) -> None:
    schema = _schema(fidelity)
    with db.connect(fidelity.endpoints) as conn:
        conn.execute(
            "UPDATE fidelity.everything SET c_numeric = c_numeric * 2, c_interval = '-3 days',"
            " a_text = a_text || ARRAY['ü'], c_jsonb = '{\"z\": [1.5e300]}',"
            " c_timestamptz = '1850-01-01 00:00:00-03' WHERE id = 1"
        )
        conn.execute("DELETE FROM fidelity.everything WHERE id = 2")
    (update,) = _read_until(fidelity, lambda kept: len(kept) == 1, _change((Op.UPDATE,), 1))
    (delete,) = _read_until(fidelity, lambda kept: len(kept) == 1, _change((Op.DELETE,), 2))
    assert isinstance(update.event, ChangeEvent) and update.event.after is not None
    _assert_same_row(decode_row(schema, update.event.after), _psycopg_row(fidelity, 1))
    # Default replica identity: the before-image of a delete carries the key, the rest is NULL.
    assert isinstance(delete.event, ChangeEvent) and delete.event.before is not None
    before = decode_row(schema, delete.event.before)
    assert (before["id"], before["c_extra_key"]) == (2, "k")
    assert {v for k, v in before.items() if k not in ("id", "c_extra_key")} == {None}


def test_arrays_debezium_cannot_carry_arrive_as_null(fidelity: FabricConfig) -> None:
    """Known losses (docs/types.md): the connector turns these whole arrays into NULL."""
    with db.connect(fidelity.endpoints) as conn:
        conn.execute(
            "INSERT INTO fidelity.everything (c_extra_key, id, a_numeric, a_mood)"
            " VALUES ('k', 6, '{1,NaN}', '{sad,NULL}')"
        )
    (create,) = _read_until(fidelity, lambda kept: len(kept) == 1, _change((Op.CREATE,), 6))
    assert isinstance(create.event, ChangeEvent) and create.event.after is not None
    assert (create.event.after["a_numeric"], create.event.after["a_mood"]) == (None, None)
