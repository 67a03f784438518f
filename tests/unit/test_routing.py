"""A batch's lookups retried one by one (fabric.serve.routing.retried_in_time): every retry ends
early enough for the batch to answer before its deadline, and a lookup past that moment, or
whose retry stayed unavailable, is answered UNAVAILABLE in the batch rather than failing it."""

from __future__ import annotations

from fabric.materialize.tables import KeyQueryMetadata
from fabric.serve.routing import UnavailableError, retried_in_time


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _meta(partition: int) -> KeyQueryMetadata:
    return KeyQueryMetadata("public.t", "topic.t", partition, b'{"id":%d}' % partition)


def _unavailable(exc: UnavailableError) -> bytes:
    return b"UNAVAILABLE " + exc.message.encode()


def test_each_lookup_is_retried_with_a_deadline_that_leaves_time_to_answer() -> None:
    clock = _Clock()
    asked: list[tuple[int, float]] = []

    def retry(index: int, meta: KeyQueryMetadata, until: float) -> bytes:
        asked.append((index, until))
        clock.now += 0.01
        return b"ok %d" % index

    waiting = [(3, _meta(0)), (7, _meta(1))]
    answers = list(retried_in_time(waiting, 105.0, retry, _unavailable, clock))
    assert answers == [(3, b"ok 3"), (7, b"ok 7")]
    assert [index for index, _ in asked] == [3, 7]
    assert all(100.0 < until < 105.0 for _, until in asked)


def test_lookups_left_when_time_is_up_are_unavailable_without_a_retry() -> None:
    clock = _Clock()
    asked: list[int] = []

    def retry(index: int, meta: KeyQueryMetadata, until: float) -> bytes:
        asked.append(index)
        clock.now = until  # this one took all the time there was
        raise UnavailableError(f"partition {meta.partition} is moving or restoring; retry")

    waiting = [(0, _meta(2)), (1, _meta(2)), (2, _meta(5))]
    answers = dict(retried_in_time(waiting, 102.0, retry, _unavailable, clock))
    assert asked == [0]
    assert answers == {
        0: b"UNAVAILABLE partition 2 is moving or restoring; retry",
        1: b"UNAVAILABLE public.t: partition 2 is moving or restoring; retry",
        2: b"UNAVAILABLE public.t: partition 5 is moving or restoring; retry",
    }
    assert clock.now < 102.0  # the retry stopped short of the batch's deadline


def test_a_deadline_already_too_close_retries_nothing() -> None:
    def retry(index: int, meta: KeyQueryMetadata, until: float) -> bytes:
        raise AssertionError("no time to retry")

    answers = list(retried_in_time([(0, _meta(1))], 100.05, retry, _unavailable, _Clock()))
    assert answers == [(0, b"UNAVAILABLE public.t: partition 1 is moving or restoring; retry")]
