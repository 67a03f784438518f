import base64
import json

import pytest

from fabric.core.events import ChangeEvent, Op, TruncateMarker, decode
from fabric.errors import MalformedEventError

SOURCE = {
    "version": "3.6.1.Final",
    "connector": "postgresql",
    "name": "auction",
    "ts_ms": 1764000000123,
    "snapshot": "false",
    "db": "auction",
    "schema": "public",
    "table": "users",
    "txId": 771,
    "lsn": 24023128,
}


def _event(**fields: object) -> bytes:
    doc = {"before": None, "after": None, "source": SOURCE, "op": "c", "ts_ms": 1764000000200}
    doc.update(fields)
    return json.dumps(doc).encode()


def test_create_event_keeps_after_image_and_source_position() -> None:
    event = decode(_event(after={"id": 1, "email": "a@example.com"}))
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.CREATE
    assert event.after == {"id": 1, "email": "a@example.com"}
    assert event.before is None
    assert event.source.lsn == 24023128
    assert event.source.tx_id == 771
    assert event.source.commit_ts_ms == 1764000000123
    assert event.source.table_name == "public.users"
    assert event.source.snapshot is False


@pytest.mark.parametrize("flag", ["true", "first", "last", "incremental"])
def test_snapshot_rows_are_flagged(flag: str) -> None:
    event = decode(_event(op="r", after={"id": 1}, source={**SOURCE, "snapshot": flag}))
    assert isinstance(event, ChangeEvent)
    assert event.source.snapshot is True


def test_tombstone_decodes_to_none() -> None:
    assert decode(None) is None


def test_delete_needs_before_image() -> None:
    event = decode(_event(op="d", before={"id": 1}))
    assert isinstance(event, ChangeEvent)
    assert event.before == {"id": 1}
    with pytest.raises(MalformedEventError, match="op 'd' without a 'before' image"):
        decode(_event(op="d"))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "value is not JSON"),
        (b"not json", "value is not JSON"),
        (b"[1, 2]", "value is a JSON list, not an object"),
        (_event(op="x", after={}), "unknown op 'x'"),
        (_event(op=None), "'op' is None, not a string"),
        (_event(after=None), "op 'c' without an 'after' image"),
        (_event(after=[1]), "'after' is a JSON list, not an object"),
        (_event(after={"id": 1}, source="nope"), "no 'source' object"),
        (_event(after={"id": 1}, source={**SOURCE, "lsn": "12"}), "'lsn' is '12', not an integer"),
    ],
)
def test_malformed_values_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedEventError) as info:
        decode(raw)
    assert info.value.reason.startswith(reason)


def _message(prefix: str, content: str) -> bytes:
    return json.dumps(
        {
            "op": "m",
            "ts_ms": 1764000000300,
            "source": {**SOURCE, "table": "", "lsn": 24100000},
            "message": {"prefix": prefix, "content": base64.b64encode(content.encode()).decode()},
        }
    ).encode()


def test_truncate_marker_names_table_and_lsn() -> None:
    marker = decode(_message("cdc-fabric.truncate.public.items", "public.items"))
    assert marker == TruncateMarker("public.items", 24100000, 1764000000123)


def test_foreign_logical_messages_are_malformed() -> None:
    with pytest.raises(MalformedEventError, match="foreign prefix 'audit'"):
        decode(_message("audit", "x"))


def test_truncate_marker_content_must_match_prefix() -> None:
    with pytest.raises(MalformedEventError, match=r"names 'public\.bids'"):
        decode(_message("cdc-fabric.truncate.public.items", "public.bids"))
