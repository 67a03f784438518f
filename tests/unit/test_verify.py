"""fabric.verify against in-memory fakes of both sides: the value equality rules, missing, extra
and differing rows, re-reads that absorb replication lag and keep real divergence, sampling,
freshness; and the `fabric verify` command's output and exit code."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fabric import cli
from fabric.client import FabricRow, Freshness, PartitionInfo, TableInfo, Topology
from fabric.errors import InvalidKeyError
from fabric.verify import (
    ComparedFreshness,
    Difference,
    TableReport,
    differing_columns,
    mismatch,
    same_value,
    verify_table,
)

Key = tuple[Any, ...]
Row = dict[str, Any]
TABLE = "public.bids"
KEY = ("item_id", "bid_no")


def bid(item_id: int, bid_no: int, amount: str = "10.00", **extra: Any) -> Row:
    return {"bid_no": bid_no, "item_id": item_id, "amount": Decimal(amount), **extra}


def key_of(row: Row) -> Key:
    return (row["item_id"], row["bid_no"])


class Clock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class FakeSource:
    """Postgres: rows by key; ``changes`` are (time, row or key to delete) applied once due."""

    clock: Clock
    by_key: dict[Key, Row]
    primary: tuple[str, ...] = KEY
    changes: list[tuple[float, Row | Key]] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)

    def _catch_up(self) -> None:
        apply(self.by_key, self.changes, self.clock.now)

    def primary_key(self, table: str) -> tuple[str, ...]:
        return self.primary

    def rows(self, table: str) -> list[Row]:
        self._catch_up()
        self.reads.append("rows")
        return [dict(r) for r in self.by_key.values()]

    def sample_keys(self, table: str, count: int) -> list[Key]:
        self.reads.append("sample")
        return sorted(self.by_key)[:count]

    def rows_for(self, table: str, keys: Sequence[Key]) -> list[Row]:
        self._catch_up()
        self.reads.append(f"rows_for {len(keys)}")
        return [dict(self.by_key[k]) for k in keys if k in self.by_key]


@dataclass
class FakeFabric:
    """The fabric: rows by key, ``changes`` applied once due (its replication lag)."""

    clock: Clock
    rows: dict[Key, Row]
    changes: list[tuple[float, Row | Key]] = field(default_factory=list)
    lag_records: int = 0
    partition_lag: int = 0
    commit_ms: dict[Key, int] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    def _catch_up(self) -> None:
        apply(self.rows, self.changes, self.clock.now)

    def table_info(self, table: str) -> TableInfo:
        assert table in ("bids", TABLE)
        partitions = (PartitionInfo(0, "i1", "x:1", "ACTIVE", self.partition_lag),)
        return TableInfo(TABLE, "auction.public.bids", KEY, (), partitions)

    def topology(self) -> Topology:
        return Topology((self.table_info(TABLE),), ())

    def scan(self, table: str) -> Iterator[dict[str, Any]]:
        self._catch_up()
        self.reads.append("scan")
        yield from (dict(r) for r in list(self.rows.values()))

    def get_many_rows(
        self, table: str, keys: Sequence[Mapping[str, Any]]
    ) -> list[FabricRow | None]:
        self._catch_up()
        self.reads.append(f"get_many {len(keys)}")
        found: list[FabricRow | None] = []
        for named in keys:
            key = (named["item_id"], named["bid_no"])
            row = self.rows.get(key)
            commit = self.commit_ms.get(key, 0)
            freshness = Freshness(0, commit, 0, 0, 0, self.lag_records, "i1")
            found.append(None if row is None else FabricRow(dict(row), freshness))
        return found


def apply(rows: dict[Key, Row], changes: list[tuple[float, Row | Key]], now: float) -> None:
    for due, change in [c for c in changes if c[0] <= now]:
        changes.remove((due, change))
        if isinstance(change, tuple):
            rows.pop(change, None)
        else:
            rows[key_of(change)] = change


def sides(rows: list[Row]) -> tuple[Clock, FakeSource, FakeFabric]:
    clock = Clock()
    source = FakeSource(clock, {key_of(r): dict(r) for r in rows})
    fabric = FakeFabric(clock, {key_of(r): dict(r) for r in rows})
    return clock, source, fabric


def run(source: FakeSource, fabric: FakeFabric, clock: Clock, **options: Any) -> TableReport:
    return verify_table(fabric, source, "bids", clock=clock, sleep=clock.sleep, **options)


ROWS = [bid(1, 1), bid(1, 2, "12.50"), bid(2, 1, "7.25"), bid(3, 1)]


# -- value equality --------------------------------------------------------------------------------

KOLKATA = timezone(timedelta(hours=5, minutes=30))
INSTANT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (math.nan, math.nan, True),
        (math.nan, 1.0, False),
        (-0.0, 0.0, False),
        (-0.0, -0.0, True),
        (math.inf, math.inf, True),
        (1.5, 1.5, True),
        (1, 1.0, False),
        (1, True, False),
        (None, None, True),
        (None, 0, False),
        ("ab", "ab ", False),
        (Decimal("1.5"), Decimal("1.50"), False),
        (Decimal("12.50"), Decimal("12.50"), True),
        (Decimal("NaN"), Decimal("NaN"), True),
        (Decimal("Infinity"), Decimal("-Infinity"), False),
        (Decimal("0"), Decimal("0E-2"), False),
        ([1, None, [math.nan]], [1, None, [math.nan]], True),
        ([1, 2], [1, 2, 3], False),
        ([Decimal("1.0")], [Decimal("1")], False),
        ({"a": [1.5, None], "b": {"c": True}}, {"b": {"c": True}, "a": [1.5, None]}, True),
        ({"a": 1}, {"a": 1.0}, False),
        ({"a": 1}, {"a": 1, "b": None}, False),
        (INSTANT, INSTANT.astimezone(KOLKATA), True),
        (INSTANT, INSTANT.replace(tzinfo=None), False),
        (b"\x00\xff", b"\x00\xff", True),
    ],
)
def test_values_are_the_same_by_type_and_value(a: Any, b: Any, same: bool) -> None:
    assert same_value(a, b) is same
    assert same_value(b, a) is same


def test_differing_columns_name_every_column_that_differs_or_is_absent() -> None:
    source = {"id": 1, "a": 1.0, "b": Decimal("2.0"), "c": "x"}
    fabric = {"id": 1, "a": 1.0, "b": Decimal("2.00"), "d": None}
    assert differing_columns(source, fabric) == ("b", "c", "d")
    assert differing_columns(source, dict(source)) == ()


def test_mismatch_kinds() -> None:
    assert mismatch(None, None) is None
    assert mismatch({"id": 1}, {"id": 1}) is None
    assert mismatch({"id": 1}, None) == ("missing", ())
    assert mismatch(None, {"id": 1}) == ("extra", ())
    assert mismatch({"id": 1, "v": -0.0}, {"id": 1, "v": 0.0}) == ("differing", ("v",))


# -- whole tables ----------------------------------------------------------------------------------


def test_equal_tables_report_every_row_equal() -> None:
    clock, source, fabric = sides(ROWS)
    report = run(source, fabric, clock)
    assert report == TableReport(
        table=TABLE,
        sample=None,
        compared=4,
        equal=4,
        missing=0,
        extra=0,
        differing=0,
        columns={},
        examples=(),
        settled=0,
        freshness=ComparedFreshness(0, None, None),
    )
    assert report.ok
    assert source.reads == ["rows"] and fabric.reads == ["scan"]
    assert clock.sleeps == []


def test_missing_extra_and_differing_rows_are_counted_with_examples() -> None:
    clock, source, fabric = sides(ROWS)
    del fabric.rows[(1, 2)]
    fabric.rows[(9, 9)] = bid(9, 9)
    fabric.rows[(2, 1)] = bid(2, 1, "7.250")
    fabric.rows[(3, 1)] = {**bid(3, 1, "10.0"), "note": "x"}
    report = run(source, fabric, clock, recheck_s=0.0)
    assert (report.compared, report.equal) == (5, 1)
    assert (report.missing, report.extra, report.differing) == (1, 1, 2)
    assert report.columns == {"amount": 2, "note": 1}
    assert not report.ok
    first, second = fabric.rows[(2, 1)], fabric.rows[(3, 1)]
    assert report.examples == (
        Difference("missing", {"item_id": 1, "bid_no": 2}, (), ROWS[1], None),
        Difference("differing", {"item_id": 2, "bid_no": 1}, ("amount",), ROWS[2], first),
        Difference("differing", {"item_id": 3, "bid_no": 1}, ("amount", "note"), ROWS[3], second),
        Difference("extra", {"item_id": 9, "bid_no": 9}, (), None, bid(9, 9)),
    )
    assert clock.sleeps == []  # recheck_s=0: no re-read


def test_examples_are_capped() -> None:
    clock, source, fabric = sides([bid(1, n) for n in range(20)])
    fabric.rows.clear()
    report = run(source, fabric, clock, recheck_s=0.0)
    assert (report.missing, len(report.examples)) == (20, 5)


# -- replication lag -------------------------------------------------------------------------------


def test_rechecks_absorb_lag_and_keep_real_divergence() -> None:
    clock, source, fabric = sides(ROWS)
    # Changed in Postgres just before verify; the fabric applies the change 0.5 s later.
    source.by_key[(1, 1)] = bid(1, 1, "99.00")
    source.by_key[(5, 1)] = bid(5, 1)
    fabric.changes += [(0.5, bid(1, 1, "99.00")), (0.5, bid(5, 1))]
    # A divergence: the fabric lost a row and holds a wrong value, and no change will fix them.
    del fabric.rows[(2, 1)]
    fabric.rows[(3, 1)] = bid(3, 1, "10.01")
    report = run(source, fabric, clock, recheck_s=3.0)
    assert (report.compared, report.equal, report.settled) == (5, 3, 2)
    assert (report.missing, report.extra, report.differing) == (1, 0, 1)
    assert [(d.kind, d.key) for d in report.examples] == [
        ("missing", {"item_id": 2, "bid_no": 1}),
        ("differing", {"item_id": 3, "bid_no": 1}),
    ]
    # Re-read until the deadline, backing off, and no longer.
    assert clock.now == pytest.approx(3.0)
    assert clock.sleeps[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert all(s <= 1.0 for s in clock.sleeps)


def test_rechecks_stop_once_every_key_agrees() -> None:
    clock, source, fabric = sides(ROWS)
    del fabric.rows[(1, 2)]
    fabric.changes.append((0.25, bid(1, 2, "12.50")))
    report = run(source, fabric, clock, recheck_s=30.0)
    assert report.ok and report.settled == 1
    assert clock.sleeps == pytest.approx([0.1, 0.2])
    # Only the mismatching key is read again, on both sides, Postgres first.
    assert source.reads == ["rows", "rows_for 1", "rows_for 1"]
    assert fabric.reads == ["scan", "get_many 1", "get_many 1"]


def test_rechecks_read_postgres_again_for_a_row_changing_meanwhile() -> None:
    clock, source, fabric = sides(ROWS)
    # Deleted in Postgres before the scan of the fabric; changed again in Postgres at 0.2 s
    # (an insert of the key again), which the fabric applies at 0.4 s.
    del source.by_key[(3, 1)]
    source.changes.append((0.2, bid(3, 1, "1.00")))
    fabric.changes += [(0.3, (3, 1)), (0.4, bid(3, 1, "1.00"))]
    report = run(source, fabric, clock, recheck_s=5.0)
    assert report.ok and report.compared == 4 and report.settled == 1


def test_a_lag_longer_than_the_recheck_is_reported_with_the_last_readings() -> None:
    clock, source, fabric = sides(ROWS)
    source.by_key[(1, 1)] = bid(1, 1, "50.00")
    fabric.changes.append((10.0, bid(1, 1, "50.00")))
    report = run(source, fabric, clock, recheck_s=1.0)
    assert (report.differing, report.settled) == (1, 0)
    (example,) = report.examples
    assert example.source == bid(1, 1, "50.00") and example.fabric == bid(1, 1)


def test_a_row_deleted_in_postgres_and_not_yet_in_the_fabric_settles() -> None:
    clock, source, fabric = sides(ROWS)
    del source.by_key[(1, 1)]
    fabric.changes.append((0.15, (1, 1)))
    report = run(source, fabric, clock)
    # Compared as a key both sides now agree does not exist.
    assert report.ok and (report.compared, report.equal, report.settled) == (4, 4, 1)


# -- sampling and freshness ------------------------------------------------------------------------


def test_a_sample_reads_only_its_keys_on_both_sides() -> None:
    clock, source, fabric = sides([bid(1, n) for n in range(10)])
    fabric.rows[(9, 9)] = bid(9, 9)  # only in the fabric: a sample drawn in Postgres misses it
    fabric.rows[(1, 1)] = bid(1, 1, "0.00")
    fabric.rows[(1, 8)] = bid(1, 8, "0.00")  # not among the sampled keys
    report = run(source, fabric, clock, sample=3, recheck_s=0.0)
    assert (report.sample, report.compared, report.equal, report.differing) == (3, 3, 2, 1)
    assert report.examples[0].key == {"item_id": 1, "bid_no": 1}
    assert source.reads == ["sample", "rows_for 3"] and fabric.reads == ["get_many 3"]


def test_a_sample_larger_than_the_table_compares_every_row() -> None:
    clock, source, fabric = sides(ROWS)
    report = run(source, fabric, clock, sample=100)
    assert report.ok and report.compared == 4


def test_sample_must_be_positive() -> None:
    clock, source, fabric = sides(ROWS)
    with pytest.raises(ValueError, match="at least one key"):
        run(source, fabric, clock, sample=0)


def test_freshness_of_what_was_compared() -> None:
    clock, source, fabric = sides(ROWS)
    fabric.lag_records = 3
    fabric.commit_ms = {(1, 1): 5_000, (1, 2): 2_000, (2, 1): 9_000, (3, 1): 0}
    report = run(source, fabric, clock, sample=4)
    assert report.freshness == ComparedFreshness(3, 2_000, 9_000)
    fabric.partition_lag = 7
    assert run(source, fabric, clock).freshness == ComparedFreshness(7, None, None)


def test_a_table_keyed_differently_in_postgres_is_refused() -> None:
    clock, source, fabric = sides(ROWS)
    source.primary = ("bid_no", "item_id")
    with pytest.raises(InvalidKeyError, match=r"re-keyed"):
        run(source, fabric, clock)


# -- the command -----------------------------------------------------------------------------------


class _Client:
    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def topology(self) -> Topology:
        return FakeFabric(Clock(), {}).topology()


def _report(**changes: Any) -> TableReport:
    clock, source, fabric = sides(ROWS)
    report = run(source, fabric, clock)
    return TableReport(**{**report.__dict__, **changes})


@pytest.fixture
def command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    """Run `fabric verify ARGS` with canned reports: ``code, out, err, calls = command(...)``."""
    from fabric.cli import verify as command_module

    calls: list[tuple[list[str], dict[str, Any]]] = []
    canned: dict[str, TableReport] = {}

    def fake_verify(client: Any, conn: Any, tables: list[str], **options: Any) -> list[TableReport]:
        calls.append((list(tables), options))
        return [canned[t] for t in tables]

    monkeypatch.setattr(command_module, "FabricClient", _Client)
    monkeypatch.setattr(command_module.db, "connect", lambda endpoints: nullcontext())
    monkeypatch.setattr(command_module, "verify", fake_verify)

    def run_command(reports: dict[str, TableReport], *argv: str) -> tuple[int, str, str, Any]:
        canned.clear()
        canned.update(reports)
        code = cli.main(["verify", *argv], environ={"FABRIC_STATE_DIR": str(tmp_path)})
        out, err = capsys.readouterr()
        return code, out, err, calls

    yield run_command


def test_command_verifies_every_table_and_exits_0_when_all_agree(command: Any) -> None:
    ok = _report()
    code, out, err, calls = command({TABLE: ok}, "--recheck", "2.5")
    assert (code, err) == (0, "")
    assert calls == [([TABLE], {"sample": None, "recheck_s": 2.5})]
    assert out.startswith(f"{TABLE}: ok: 4 of 4 rows equal (every row); 0 missing in the fabric")


def test_command_exits_1_naming_tables_and_columns(command: Any) -> None:
    fabric_row = bid(1, 1, "10.0", note="x" * 80)
    differing = Difference(
        "differing", {"item_id": 1, "bid_no": 1}, ("amount", "note"), bid(1, 1), fabric_row
    )
    missing = Difference("missing", {"item_id": 2, "bid_no": 1}, (), bid(2, 1), None)
    bad = _report(
        sample=4,
        equal=2,
        missing=1,
        differing=1,
        columns={"amount": 1, "note": 1},
        examples=(missing, differing),
    )
    code, out, err, calls = command({"bids": bad}, "bids", "--sample", "4")
    assert code == 1
    assert calls == [(["bids"], {"sample": 4, "recheck_s": 10.0})]
    assert out.splitlines() == [
        f"{TABLE}: DIFFERS: 2 of 4 rows equal (a sample of 4 keys); 1 missing in the fabric, "
        "0 only in the fabric, 1 differing (amount: 1, note: 1); 0 settled on re-reading; "
        "lag 0 records",
        "  missing in the fabric: item_id=2 bid_no=1",
        "  differing item_id=1 bid_no=1: amount: Postgres Decimal('10.00'), fabric "
        f"Decimal('10.0'); note: Postgres (no such column), fabric '{'x' * 56}...",
    ]
    assert err == (
        f"fabric verify: differences remain in {TABLE} (1 missing in the fabric; "
        "1 differing in columns amount, note)\n"
    )


def test_command_json_output(command: Any) -> None:
    fresh = ComparedFreshness(0, 1_000, 2_000)
    example = Difference(
        "differing", {"item_id": 1, "bid_no": 1}, ("v",), {"v": math.nan}, {"v": Decimal("1")}
    )
    bad = _report(equal=3, differing=1, columns={"v": 1}, examples=(example,), freshness=fresh)
    code, out, _, _ = command({TABLE: bad}, "--json")
    assert code == 1
    line = json.loads(out)
    assert (line["table"], line["ok"], line["differing"]) == (TABLE, False, 1)
    assert line["examples"][0]["source"] == {"v": "nan"}
    assert line["examples"][0]["fabric"] == {"v": "1"}
    assert line["freshness"] == {
        "max_lag_records": 0,
        "min_commit_time_ms": 1000,
        "max_commit_time_ms": 2000,
    }
