"""The pure parts of the auction sample: row values, the change planner, pacing, the CLI's shape."""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, cast

import pytest

from fabric.cli import build_parser
from fabric.cli import sample as sample_cli
from fabric.sample.generator import ChangeGenerator, GenerationReport, Pacer
from fabric.sample.planner import (
    DEFAULT_MIX,
    Change,
    ChangePlanner,
    KeyPool,
    Op,
    OpKind,
    SampleState,
)
from fabric.sample.seed import (
    BID_COLUMNS,
    ITEM_COLUMNS,
    ITEM_STATUSES,
    USER_COLUMNS,
    RowFactory,
    schema_sql,
)

CONTROL_CHARS = ("\t", "\x07", "\x1b", "\x7f")


def _factory(seed: int = 42) -> RowFactory:
    return RowFactory(random.Random(seed))


def _users(n: int, seed: int = 42) -> list[dict[str, object]]:
    factory = _factory(seed)
    return [factory.user(i) for i in range(1, n + 1)]


def _items(n: int, seed: int = 42) -> list[dict[str, object]]:
    factory = _factory(seed)
    return [factory.item(i, i % 7 or None) for i in range(1, n + 1)]


def _state(users: int = 10, items: int = 5, bids: int = 20) -> SampleState:
    """Users 1..n; item i sold by user i; bids spread round-robin, bidder = user (k % users) + 1."""
    bid_rows = [(k % items + 1, k // items + 1, k % users + 1) for k in range(bids)]
    return SampleState.from_rows(
        range(1, users + 1), [(i, i) for i in range(1, items + 1)], bid_rows
    )


def _assert_references_valid(state: SampleState) -> None:
    for item_id in state.items:
        seller = state.seller[item_id]
        assert seller is None or seller in state.users, (item_id, seller)
    for key in state.bids:
        assert key[0] in state.items, key
        bidder = state.bidder[key]
        assert bidder is None or bidder in state.users, (key, bidder)
    referenced = {s for s in state.seller.values() if s is not None}
    referenced |= {b for b in state.bidder.values() if b is not None}
    assert set(state.free_users) == set(state.users) - referenced


# Row values


def test_same_seed_gives_the_same_rows_and_another_seed_other_rows() -> None:
    assert _users(50) == _users(50)
    assert _items(50) == _items(50)
    assert _users(50) != _users(50, seed=43)
    bids_a = [_factory(1).bid(1, n, 2) for n in range(1, 20)]
    assert bids_a == [_factory(1).bid(1, n, 2) for n in range(1, 20)]


def test_rows_have_exactly_the_table_columns() -> None:
    factory = _factory()
    assert tuple(factory.user(1)) == USER_COLUMNS
    assert tuple(factory.item(1, 1)) == ITEM_COLUMNS
    assert tuple(factory.bid(1, 1, 1)) == BID_COLUMNS


def test_user_values_fit_their_columns() -> None:
    users = _users(1_000)
    emails = [u["email"] for u in users]
    assert len(set(emails)) == len(emails)
    assert all(
        isinstance(e, str) and e.isascii() and f".{u['id']}@" in e
        for e, u in zip(emails, users, strict=True)
    )
    ratings = [u["rating"] for u in users if u["rating"] is not None]
    assert all(
        isinstance(r, Decimal) and Decimal(0) <= r <= 5 and r.as_tuple().exponent == -2
        for r in ratings
    )
    assert len({u["external_id"] for u in users}) == len(users)
    for column in ("display_name", "rating", "birth_date", "tags", "profile"):
        assert any(u[column] is None for u in users), f"no NULL {column}"
    assert any(u["tags"] == [] for u in users)
    assert any(u["profile"] == "null" for u in users)  # the JSON null literal, not SQL NULL
    for profile in (u["profile"] for u in users if u["profile"] is not None):
        json.loads(cast(str, profile))


def test_text_values_carry_accents_cjk_emoji_and_control_characters() -> None:
    users, items = _users(1_000), _items(500)
    names = " ".join(cast(str, u["display_name"]) for u in users if u["display_name"])
    descriptions = " ".join(cast(str, i["description"]) for i in items if i["description"])
    for text in (names, descriptions):
        assert any(c in text for c in "éëøñ"), "no accents"
        assert any("\u4e00" <= c <= "\u9fff" for c in text), "no CJK"
    assert "🔨" in names and "🔨" in descriptions
    assert any(c in names for c in CONTROL_CHARS)
    assert any(c in descriptions for c in CONTROL_CHARS)
    assert "\x00" not in names + descriptions  # Postgres text cannot hold NUL


def test_descriptions_include_values_stored_out_of_line() -> None:
    sizes = [len(cast(str, i["description"]).encode()) for i in _items(500) if i["description"]]
    assert sum(size > 2048 for size in sizes) >= 50
    assert sum(size > 4096 for size in sizes) >= 25
    assert sum(size < 400 for size in sizes) >= 100
    assert len(sizes) < 500  # and some NULLs


def test_item_values_fit_their_columns() -> None:
    items = _items(500)
    assert {i["status"] for i in items} == set(ITEM_STATUSES)
    assert all(i["ends_at"] is None for i in items if i["status"] == "draft")
    for item in items:
        reserve = item["reserve_price"]
        assert reserve is None or (
            isinstance(reserve, Decimal) and reserve.as_tuple().exponent == -2
        )
        assert reserve is None or reserve < Decimal("1e10")
        thumbnail = item["thumbnail"]
        assert thumbnail is None or cast(bytes, thumbnail).startswith(b"\x89PNG\r\n\x1a\n")
        if item["attributes"] is not None:
            json.loads(cast(str, item["attributes"]))
    exponents = {
        cast(Decimal, i["starting_price"]).as_tuple().exponent
        for i in items
        if i["starting_price"] is not None
    }
    assert len(exponents) >= 4  # an unconstrained numeric sees many scales
    digits = [
        len(cast(Decimal, i["starting_price"]).as_tuple().digits)
        for i in items
        if i["starting_price"]
    ]
    assert max(digits) == 30  # wider than a double or Decimal's default 28-digit context
    for column in (
        "seller_id",
        "description",
        "reserve_price",
        "starting_price",
        "ends_at",
        "attributes",
        "thumbnail",
    ):
        assert any(i[column] is None for i in items), f"no NULL {column}"


def test_bid_amounts_fit_numeric_12_2() -> None:
    factory = _factory()
    amounts = [factory.bid_amount(n) for n in range(1, 2_000)]
    assert all(a.as_tuple().exponent == -2 and Decimal(0) < a < Decimal("1e10") for a in amounts)


def test_schema_is_idempotent_ddl_for_the_three_tables() -> None:
    ddl = schema_sql()
    for table in ("users", "items", "bids"):
        assert f"CREATE TABLE IF NOT EXISTS public.{table} (" in ddl
    assert "PRIMARY KEY (item_id, bid_no)" in ddl
    assert ddl.index("bid_no    integer") < ddl.index("item_id   bigint")
    assert "IF NOT EXISTS" in ddl.split("CREATE TYPE")[0]
    for owned_by_connector_tooling in ("TRIGGER", "PUBLICATION", "REPLICA IDENTITY"):
        assert f"CREATE {owned_by_connector_tooling}" not in ddl.upper()
        assert f"ALTER TABLE PUBLIC.ITEMS {owned_by_connector_tooling}" not in ddl.upper()


# Pacing


def test_pacer_schedules_from_the_start_so_late_ops_do_not_drift() -> None:
    pacer = Pacer(rate=20.0, start=100.0)
    assert [pacer.due(n) for n in range(4)] == [100.0, 100.05, 100.1, 100.15]
    assert pacer.wait_s(3, now=100.12) == pytest.approx(0.03)
    # Op 2 ran 0.2 s late; op 10 is still due at start + 10 / rate, not 0.2 s later.
    assert pacer.wait_s(10, now=100.3) == pytest.approx(0.2)
    assert pacer.wait_s(4, now=100.5) == 0.0  # overdue: no wait while catching up
    assert pacer.due(1_000_000) == pytest.approx(100.0 + 50_000.0)


def test_unpaced_ops_never_wait() -> None:
    pacer = Pacer(rate=None, start=5.0)
    assert pacer.due(1_000) == 5.0
    assert pacer.wait_s(1_000, now=5.0) == 0.0


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_rate_must_be_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be a positive number of ops/s"):
        Pacer(rate=rate, start=0.0)


# Keys and references


def test_key_pool_choice_depends_only_on_the_sequence_of_changes() -> None:
    def build() -> KeyPool[int]:
        pool = KeyPool(range(10))
        pool.discard(3)
        pool.discard(42)
        pool.add(11)
        pool.add(11)
        return pool

    a, b = build(), build()
    assert len(a) == 10 and 3 not in a and 11 in a
    assert sorted(a) == [0, 1, 2, 4, 5, 6, 7, 8, 9, 11]
    ra, rb = random.Random(5), random.Random(5)
    assert [a.choice(ra) for _ in range(50)] == [b.choice(rb) for _ in range(50)]


def test_state_tracks_which_users_are_free_of_references() -> None:
    state = SampleState.from_rows([1, 2, 3, 4], [(10, 1), (11, None)], [(10, 1, 2), (10, 2, 2)])
    assert sorted(state.free_users) == [3, 4]
    assert (state.next_user_id, state.next_item_id, state.next_bid_no[10]) == (5, 12, 3)
    with pytest.raises(ValueError, match="user 2 is still referred to by 2 rows"):
        state.remove_user(2)
    assert state.remove_item(10) == [(10, 1), (10, 2)]
    assert sorted(state.free_users) == [1, 2, 3, 4]
    _assert_references_valid(state)


# Planning


def _plan(seed: int, changes: int, state: SampleState | None = None) -> list[Change]:
    planner = ChangePlanner(state or _state(), random.Random(seed))
    return [planner.next() for _ in range(changes)]


def test_same_seed_and_rows_plan_the_same_changes() -> None:
    assert _plan(7, 500) == _plan(7, 500)
    assert _plan(7, 500) != _plan(8, 500)


def test_op_draws_follow_the_mix() -> None:
    planner = ChangePlanner(_state(), random.Random(1))
    draws = Counter(planner.choose() for _ in range(50_000))
    total = sum(DEFAULT_MIX.values())
    for op, weight in DEFAULT_MIX.items():
        assert draws[op] / 50_000 == pytest.approx(weight / total, abs=0.01), op


def test_every_kind_of_change_happens_and_references_stay_valid() -> None:
    state = _state(users=30, items=20, bids=80)
    planner = ChangePlanner(state, random.Random(3))
    seen: Counter[Op] = Counter()
    for _ in range(3_000):
        change = planner.next()
        seen[change.op] += 1
        _assert_references_valid(state)
    assert set(seen) == set(DEFAULT_MIX)


def test_deleting_an_item_deletes_its_bids_first_in_the_same_change() -> None:
    state = _state(users=10, items=1, bids=4)
    planner = ChangePlanner(state, random.Random(0), {Op("items", OpKind.DELETE): 1})
    change = planner.next()
    assert change.op == Op("items", OpKind.DELETE)
    bids, item = change.statements
    assert (bids.sql, bids.params, bids.counts_as, bids.rows) == (
        "DELETE FROM public.bids WHERE item_id = %s",
        (1,),
        Op("bids", OpKind.DELETE),
        4,
    )
    assert (item.sql, item.params, item.rows) == ("DELETE FROM public.items WHERE id = %s", (1,), 1)
    assert len(state.items) == 0 and len(state.bids) == 0


def test_key_change_renumbers_a_user_nobody_refers_to() -> None:
    state = _state(users=10, items=5, bids=0)  # users 6..10 sell nothing
    planner = ChangePlanner(state, random.Random(0), {Op("users", OpKind.KEY_CHANGE): 1})
    (statement,) = planner.next().statements
    assert statement.sql == "UPDATE public.users SET id = %s WHERE id = %s"
    new_id, old_id = cast(tuple[int, int], statement.params)
    assert new_id == 11 and 6 <= old_id <= 10
    assert new_id in state.free_users and old_id not in state.users


def test_ops_the_rows_cannot_serve_fall_back() -> None:
    empty = SampleState()
    planner = ChangePlanner(empty, random.Random(0), {Op("bids", OpKind.INSERT): 1})
    assert planner.next().op == Op("items", OpKind.INSERT)  # nothing to bid on yet
    assert planner.next().op == Op("bids", OpKind.INSERT)
    busy = _state(users=5, items=5, bids=0)  # every user sells an item
    planner = ChangePlanner(busy, random.Random(0), {Op("users", OpKind.DELETE): 1})
    assert planner.next().op == Op("users", OpKind.UPDATE)
    planner = ChangePlanner(SampleState(), random.Random(0), {Op("users", OpKind.DELETE): 1})
    assert planner.next().op == Op("users", OpKind.INSERT)


def test_item_updates_leave_the_description_to_description_updates() -> None:
    changes = _plan(11, 2_000)
    updates = [c.statements[0].sql for c in changes if c.op == Op("items", OpKind.UPDATE)]
    assert updates and not any("description" in sql for sql in updates)
    rewrites = [c for c in changes if c.op == Op("items", OpKind.UPDATE_DESCRIPTION)]
    assert rewrites
    assert all(
        c.statements[0].sql == "UPDATE public.items SET description = %s WHERE id = %s"
        for c in rewrites
    )


def test_inserts_let_the_server_stamp_creation_times() -> None:
    changes = _plan(5, 300)
    inserts = [c.statements[0] for c in changes if c.op.kind is OpKind.INSERT]
    assert {s.counts_as.table for s in inserts} == {"users", "items", "bids"}
    for statement in inserts:
        assert "created_at" not in statement.sql and "placed_at" not in statement.sql
        assert statement.sql.count("%s") == len(statement.params)


@pytest.mark.parametrize(
    "mix", [{}, {Op("users", OpKind.INSERT): 0}, {Op("users", OpKind.INSERT): -1}]
)
def test_a_mix_needs_a_positive_weight(mix: dict[Op, int]) -> None:
    with pytest.raises(ValueError, match="the mix needs non-negative weights"):
        ChangePlanner(SampleState(), random.Random(0), mix)


# The run loop, over a connection that records statements instead of running them


class _RecordingCursor:
    def __init__(self, conn: _RecordingConnection) -> None:
        self.conn = conn
        self.rowcount = 1  # the test mixes below change exactly one row per statement
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: tuple[object, ...] | None = None) -> _RecordingCursor:
        if sql.startswith("SELECT"):
            table = sql.partition("FROM public.")[2].split(maxsplit=1)[0]
            self._rows = self.conn.tables[table]
        else:
            self.conn.statements.append((sql, params))
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)

    def __enter__(self) -> _RecordingCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _RecordingConnection:
    def __init__(self) -> None:
        self.tables: dict[str, list[tuple[Any, ...]]] = {
            "users": [(1,), (2,), (3,)],
            "items": [(1, 1)],
            "bids": [(1, 1, 2)],
        }
        self.statements: list[tuple[str, tuple[object, ...] | None]] = []
        self.transactions = 0

    def cursor(self) -> _RecordingCursor:
        return _RecordingCursor(self)

    def transaction(self) -> contextlib.nullcontext[None]:
        self.transactions += 1
        return contextlib.nullcontext()


_SINGLE_ROW_MIX = {
    Op("users", OpKind.INSERT): 1,
    Op("users", OpKind.UPDATE): 1,
    Op("items", OpKind.UPDATE): 1,
    Op("bids", OpKind.INSERT): 1,
}


def _generator(conn: _RecordingConnection, seed: int = 9) -> ChangeGenerator:
    return ChangeGenerator(cast(Any, conn), rate=None, seed=seed, mix=_SINGLE_ROW_MIX)


def test_run_commits_the_planned_changes_one_transaction_each() -> None:
    conn = _RecordingConnection()
    report = _generator(conn).run(ops=40)
    assert report.transactions == 40
    assert sum(report.rows.values()) == 40
    assert conn.transactions == 1 + 40  # one to read the keys, then one per change
    planner = ChangePlanner(
        SampleState.from_rows([1, 2, 3], [(1, 1)], [(1, 1, 2)]), random.Random(9), _SINGLE_ROW_MIX
    )
    expected = [s for _ in range(40) for s in planner.next().statements]
    assert conn.statements == [(s.sql, s.params) for s in expected]


def test_runs_with_the_same_seed_over_the_same_rows_match() -> None:
    first, second, other = _RecordingConnection(), _RecordingConnection(), _RecordingConnection()
    _generator(first).run(ops=25)
    _generator(second).run(ops=25)
    _generator(other, seed=10).run(ops=25)
    assert first.statements == second.statements != other.statements


def test_a_stop_that_is_already_set_runs_nothing() -> None:
    conn = _RecordingConnection()
    stop = threading.Event()
    stop.set()
    report = _generator(conn).run(stop=stop)
    assert (report.transactions, report.rows, conn.statements) == (0, {}, [])


# Command line


def test_cli_parses_sample_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["sample", "load", "--users", "5", "--reset"])
    assert (args.users, args.items, args.bids, args.seed, args.reset) == (
        5,
        2_000,
        10_000,
        42,
        True,
    )
    assert args.handler.__module__ == "fabric.cli.sample"
    args = parser.parse_args(["sample", "generate", "--rate", "0", "--ops", "10", "--seed", "3"])
    assert (args.rate, args.ops, args.duration, args.seed) == (0.0, 10, None, 3)


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "load", "--users", "-1"],
        ["sample", "load", "--bids", "many"],
        ["sample", "generate", "--rate", "-2"],
        ["sample", "generate", "--duration", "0"],
        ["sample", "generate", "--duration", "5", "--ops", "10"],
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


def test_report_lines_list_rows_per_table_and_kind_in_schema_order() -> None:
    report = GenerationReport(
        transactions=30,
        rows={
            Op("bids", OpKind.INSERT): 12,
            Op("users", OpKind.KEY_CHANGE): 1,
            Op("items", OpKind.DELETE): 2,
            Op("users", OpKind.INSERT): 3,
        },
        elapsed_s=1.5,
    )
    assert sample_cli.report_lines(report) == [
        "users  insert                     3",
        "users  key-change                 1",
        "items  delete                     2",
        "bids   insert                    12",
        "30 transactions in 1.5s (20.0/s)",
    ]
