"""Consistency tokens, source watermarks and position bounds: the pure logic."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fabric.client.consistency import position_bound
from fabric.core.lsn import MAX_LSN, format_lsn, parse_lsn
from fabric.core.watermarks import (
    Checkpoint,
    PartitionProgress,
    SourceOffset,
    Watermarks,
    parse_source_offset,
    partition_progress,
)
from fabric.errors import InvalidBoundError, InvalidLsnError, PositionNotReachedError, TooStaleError
from fabric.serve.bounds import describe, shortfall

T = "auction.public.users"


# -- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("0/16B3748", 0x16B3748),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("0/0", 0),
        ("FFFFFFFF/FFFFFFFF", MAX_LSN),
        (" 0/1959300 ", 26579712),
        ("26579712", 26579712),
        (26579712, 26579712),
    ],
)
def test_parse_lsn(token: int | str, value: int) -> None:
    assert parse_lsn(token) == value


@pytest.mark.parametrize(
    "token", ["", "0/", "/1", "0x16", "1/2/3", "G/0", "123456789/0", -1, MAX_LSN + 1, 1.5, True]
)
def test_parse_lsn_refuses(token: object) -> None:
    with pytest.raises(InvalidLsnError):
        parse_lsn(token)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 26579712, (0x16 << 32) | 0xB374D848, MAX_LSN])
def test_format_lsn_round_trips(value: int) -> None:
    assert parse_lsn(format_lsn(value)) == value


def test_format_lsn_is_postgres_text() -> None:
    assert format_lsn(26579712) == "0/1959300"
    assert format_lsn((0x16 << 32) | 0xB374D848) == "16/B374D848"


def test_position_bound() -> None:
    assert position_bound(None, None) is None
    bound = position_bound("0/1959300", timedelta(seconds=2.5))
    assert bound is not None
    assert (bound.min_lsn, bound.max_staleness_ms) == (26579712, 2500)
    bound = position_bound(None, 0.0004)
    assert bound is not None and (bound.min_lsn, bound.max_staleness_ms) == (0, 1)
    for bad in (0, -1.0, timedelta(0), 5e6):
        with pytest.raises(InvalidBoundError, match="max_staleness"):
            position_bound(None, bad)


# -- Connect's committed offsets ---------------------------------------------------------------


def test_parse_source_offset_streaming() -> None:
    value = (
        b'{"lsn_proc":26587304,"messageType":"COMMIT","lsn_commit":26587304,"lsn":26587304,'
        b'"txId":740,"ts_usec":1795902136594142}'
    )
    assert parse_source_offset(value) == SourceOffset(26587304, 1795902136594)


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"not json",
        b"[]",
        b'{"txId": 5}',
        b'{"lsn": "26587304"}',
        b'{"lsn": 0}',
        b'{"lsn": 26569784, "snapshot": true, "last_snapshot_record": false}',
        b'{"lsn": 26569784, "snapshot": "INITIAL"}',
    ],
)
def test_parse_source_offset_bounds_nothing(value: bytes | None) -> None:
    assert parse_source_offset(value) is None


def test_parse_source_offset_after_snapshot() -> None:
    assert parse_source_offset(b'{"lsn": 7, "snapshot": false}') == SourceOffset(7, None)


# -- watermarks ----------------------------------------------------------------------------------


def checkpoint(lsn: int, end: int, ts: int | None = None) -> Checkpoint:
    return Checkpoint(lsn, ts, {(T, 0): end})


def test_watermarks_keep_increasing_lsns_only() -> None:
    marks = Watermarks()
    assert marks.latest is None
    assert marks.record(checkpoint(100, 5))
    assert not marks.record(checkpoint(100, 9))
    assert not marks.record(checkpoint(50, 9))
    assert marks.record(checkpoint(200, 9))
    assert marks.latest == checkpoint(200, 9)


def test_watermarks_applied_is_the_newest_covered_checkpoint() -> None:
    marks = Watermarks()
    for lsn, end in [(100, 5), (200, 9), (300, 20)]:
        marks.record(checkpoint(lsn, end))
    assert marks.applied((T, 0), 4) is None
    assert marks.applied((T, 0), 5) == checkpoint(100, 5)
    assert marks.applied((T, 0), 19) == checkpoint(200, 9)
    assert marks.applied((T, 0), 20) == checkpoint(300, 20)
    assert marks.applied((T, 1), 1000) is None  # not listed: not covered


def test_watermarks_forget_the_oldest() -> None:
    marks = Watermarks(keep=2)
    for lsn in (1, 2, 3):
        marks.record(checkpoint(lsn, lsn))
    assert marks.applied((T, 0), 1) is None
    assert marks.applied((T, 0), 2) == checkpoint(2, 2)


def test_partition_progress_takes_the_better_fact() -> None:
    marks = Watermarks()
    marks.record(checkpoint(300, 10, ts=5_000))
    # Behind the checkpoint: only its own streamed change counts.
    assert partition_progress(marks, (T, 0), 9, 250, 4_000) == PartitionProgress(250, 4_000)
    # Idle and caught up: the checkpoint carries it past its last change.
    assert partition_progress(marks, (T, 0), 10, 250, 4_000) == PartitionProgress(300, 5_000)
    # Its own change is newer than the checkpoint.
    assert partition_progress(marks, (T, 0), 12, 400, 6_000) == PartitionProgress(400, 6_000)
    # Nothing streamed yet (restored from a snapshot), nothing committed: nothing known.
    assert partition_progress(Watermarks(), (T, 0), 12, 0, None) == PartitionProgress(0, None)


# -- bounds ----------------------------------------------------------------------------------------


def test_shortfall() -> None:
    progress = PartitionProgress(1000, 9_000)
    assert shortfall(progress, 1000, 0, 10_000) is None
    assert shortfall(progress, 0, 1000, 10_000) is None
    short = shortfall(progress, 1001, 0, 10_000)
    assert short is not None and short.position_missing and short.age_ms == 1000
    short = shortfall(progress, 0, 999, 10_000)
    assert short is not None and not short.position_missing
    short = shortfall(PartitionProgress(0, None), 0, 5000, 10_000)
    assert short is not None and short.age_ms is None


def test_describe_position_not_reached() -> None:
    short = shortfall(PartitionProgress(0x1959300, 9_000), 0x1959400, 0, 11_500)
    assert short is not None
    error = describe(short, "public.users", 2, 4950, "cdc-fabric-connect-offsets")
    assert isinstance(error, PositionNotReachedError)
    assert str(error) == (
        "partition 2 of public.users has applied up to LSN 0/1959300, the database as of 2500 ms"
        " ago, 256 bytes of WAL behind token 0/1959400, after waiting 4950 ms; retry with a"
        " longer deadline (a token from another database is never reached)"
    )


def test_describe_too_stale() -> None:
    short = shortfall(PartitionProgress(0x1959300, 9_000), 0, 500, 11_500)
    assert short is not None
    error = describe(short, "public.users", 0, 100, "cdc-fabric-connect-offsets")
    assert isinstance(error, TooStaleError)
    assert "the database as of 2500 ms ago: staler than max_staleness 500 ms" in str(error)


def test_describe_without_any_offset_names_the_topic() -> None:
    short = shortfall(PartitionProgress(0, None), 5, 0, 1)
    assert short is not None
    error = describe(short, "public.users", 0, 100, "my-offsets")
    assert "no committed source offset seen on my-offsets" in str(error)
    assert "FABRIC_CONNECT_OFFSETS_TOPIC" in str(error)
