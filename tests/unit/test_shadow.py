"""Shadow reads without a database: sampling, the re-check, counting, logging and metrics."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client.core import CollectorRegistry

from fabric.errors import FabricTimeoutError, SourceDatabaseError
from fabric.shadow import PostgresSide, ShadowReads, ShadowStats
from fabric.verify import Key, Row

TABLE = "public.users"
TOKEN = 4242


class FakePostgres:
    """Postgres's rows, read in turn: each key's list of readings, the last one repeated."""

    def __init__(self, readings: dict[Key, list[Row | None]], fail: int = 0) -> None:
        self.readings = readings
        self.fail = fail  # the first ``fail`` reads raise
        self.reads = 0
        self.closed = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def row(self, table: str, key: Key) -> Row | None:
        assert table == TABLE
        self.entered.set()
        self.gate.wait(10)
        self.reads += 1
        if self.reads <= self.fail:
            raise SourceDatabaseError("reading rows of public.users by key failed: gone")
        rows = self.readings[key]
        return rows.pop(0) if len(rows) > 1 else rows[0]

    def token(self) -> int:
        return TOKEN

    def close(self) -> None:
        self.closed += 1


class Shadow(ShadowReads):
    def __init__(self, postgres: FakePostgres, fraction: float = 1.0, **kw: Any) -> None:
        super().__init__(lambda: pytest.fail("no connection in unit tests"), fraction, **kw)
        self.postgres = postgres
        self.opened = 0

    def _open(self) -> PostgresSide:
        self.opened += 1
        return self.postgres  # type: ignore[return-value]


def user(email: str = "a@example.com", balance: str = "1.50") -> Row:
    return {"id": 1, "email": email, "balance": Decimal(balance)}


def compared(shadow: ShadowReads) -> ShadowStats:
    assert shadow.drain(10)
    shadow.close()
    return shadow.stats


def test_rows_that_agree_count_as_equal() -> None:
    shadow = Shadow(FakePostgres({(1,): [user()], (2,): [None]}))
    shadow.offer(TABLE, (1,), user())
    shadow.offer(TABLE, (2,), None)  # neither side has it
    assert compared(shadow) == ShadowStats(reads=2, sampled=2, equal=2)


def test_only_the_fraction_is_sampled() -> None:
    postgres = FakePostgres({(1,): [user()]})
    shadow = Shadow(postgres, fraction=0.1, seed=7)
    for _ in range(1000):
        shadow.offer(TABLE, (1,), user())
    stats = compared(shadow)
    assert stats.reads == 1000
    assert 60 <= stats.sampled <= 140
    assert stats.equal == stats.sampled == postgres.reads
    assert compared(Shadow(FakePostgres({}), fraction=0.0)) == ShadowStats()


def test_a_fabric_that_was_behind_is_reread_at_the_token() -> None:
    """Postgres has a newer row than the fabric answered: the fabric, read again once it has
    applied everything before the token, has it too."""
    shadow = Shadow(FakePostgres({(1,): [user("new@example.com")]}))
    asked: list[tuple[str, Key, int]] = []

    def reread(table: str, key: Key, min_lsn: int) -> Row | None:
        asked.append((table, key, min_lsn))
        return user("new@example.com")

    shadow.attach(reread)
    shadow.offer(TABLE, (1,), user("old@example.com"))
    assert compared(shadow) == ShadowStats(reads=1, sampled=1, equal=1)
    assert asked == [(TABLE, (1,), TOKEN)]


def test_a_fabric_ahead_of_the_first_reading_matches_the_second() -> None:
    """A change committed between Postgres's first read and the fabric's re-read."""
    postgres = FakePostgres({(1,): [user("v1@x"), user("v2@x")]})
    shadow = Shadow(postgres)
    shadow.attach(lambda table, key, min_lsn: user("v2@x"))
    shadow.offer(TABLE, (1,), user("v0@x"))
    assert compared(shadow).equal == 1
    assert postgres.reads == 2


def test_a_row_that_stays_different_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    postgres = FakePostgres({(1,): [user()], (2,): [user()], (3,): [None]})
    shadow = Shadow(postgres)
    fabric = {(1,): user(balance="1.5"), (2,): None, (3,): user()}
    shadow.attach(lambda table, key, min_lsn: fabric[key])
    for key, row in fabric.items():
        shadow.offer(TABLE, key, row)
    assert compared(shadow) == ShadowStats(reads=3, sampled=3, diverged=3)
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert logged == [
        # A Decimal's scale counts, as in fabric verify.
        "shadow read diverged table=public.users key=(1,) kind=differing columns=balance",
        "shadow read diverged table=public.users key=(2,) kind=missing columns=-",
        "shadow read diverged table=public.users key=(3,) kind=extra columns=-",
    ]


def test_a_full_queue_skips_the_sample_and_never_blocks() -> None:
    postgres = FakePostgres({(1,): [user()]})
    postgres.gate.clear()  # the worker stalls on its first sample
    shadow = Shadow(postgres, queue_size=2)
    shadow.offer(TABLE, (1,), user())
    assert postgres.entered.wait(10)
    for _ in range(9):
        shadow.offer(TABLE, (1,), user())
    postgres.gate.set()
    stats = compared(shadow)
    # One sample in the worker's hands, two queued, and the rest dropped.
    assert (stats.sampled, stats.equal, stats.skipped) == (10, 3, 7)


def test_errors_count_as_failed_and_the_connection_is_opened_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    postgres = FakePostgres({(1,): [user()]}, fail=1)
    shadow = Shadow(postgres)
    shadow.offer(TABLE, (1,), user())
    assert shadow.drain(10)
    shadow.offer(TABLE, (1,), user())
    assert compared(shadow) == ShadowStats(reads=2, sampled=2, equal=1, failed=1)
    assert (shadow.opened, postgres.closed) == (2, 2)  # the broken one, then the last at close
    assert "shadow read failed table=public.users key=(1,) error=reading rows" in caplog.text


def test_a_fabric_that_cannot_catch_up_counts_as_failed_not_diverged() -> None:
    def reread(table: str, key: Key, min_lsn: int) -> Row | None:
        raise FabricTimeoutError("public.users key 1: not applied up to 0/1092 within 5 s")

    shadow = Shadow(FakePostgres({(1,): [user()]}))
    shadow.attach(reread)
    shadow.offer(TABLE, (1,), user("stale@x"))
    assert compared(shadow) == ShadowStats(reads=1, sampled=1, failed=1)


def test_reads_offered_after_close_are_skipped() -> None:
    shadow = Shadow(FakePostgres({(1,): [user()]}))
    shadow.close()
    shadow.offer(TABLE, (1,), user())
    assert shadow.stats == ShadowStats(reads=1, sampled=1, skipped=1)


def test_counters_are_exported_to_prometheus() -> None:
    registry = CollectorRegistry()
    shadow = Shadow(FakePostgres({(1,): [user()]}))
    shadow.register(registry)
    shadow.offer(TABLE, (1,), user())
    compared(shadow)
    value = registry.get_sample_value
    assert value("fabric_shadow_reads_total", {"outcome": "equal"}) == 1
    assert value("fabric_shadow_reads_total", {"outcome": "diverged"}) == 0
    assert value("fabric_shadow_sampled_total") == 1
    assert value("fabric_shadow_offered_total") == 1


@pytest.mark.parametrize(("fraction", "size"), [(-0.1, 10), (1.5, 10), (0.5, 0)])
def test_bad_settings_are_refused(fraction: float, size: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        ShadowReads("postgresql://127.0.0.1/none", fraction, queue_size=size)
