"""When an instance missing from its group's description gets a new consumer."""

from __future__ import annotations

from fabric.serve.topology import AbsenceWatch, TopologySnapshot

ME = "instance-a"


def described(now: float, *members: str) -> TopologySnapshot:
    return TopologySnapshot(read_at=now, member_ids={m: f"{m}-member" for m in members})


def test_a_member_is_never_replaced() -> None:
    watch = AbsenceWatch(30, 10)
    assert not any(
        watch.observe(described(t, ME, "b"), ME, t, holding=True) for t in range(0, 300, 2)
    )


def test_an_absence_longer_than_the_limit_asks_once_then_waits_again() -> None:
    watch = AbsenceWatch(30, 10)
    asked = [t for t in range(0, 100, 2) if watch.observe(described(t, "b"), ME, t, holding=True)]
    assert asked == [30, 60, 90]


def test_coming_back_starts_the_watch_over() -> None:
    watch = AbsenceWatch(30, 10)
    for t in range(0, 20, 2):
        assert not watch.observe(described(t, "b"), ME, t, holding=True)
    assert not watch.observe(described(20, ME), ME, 20, holding=True)
    assert not any(watch.observe(described(t, "b"), ME, t, holding=True) for t in range(22, 52, 2))
    assert watch.observe(described(52, "b"), ME, 52, holding=True)


def test_an_old_description_says_nothing() -> None:
    """Kafka not answering is not an absence: the last description stays, and ages."""
    watch = AbsenceWatch(30, 10)
    assert not any(watch.observe(described(0, "b"), ME, t, holding=False) for t in range(0, 300, 2))


def test_an_instance_holding_nothing_is_replaced_sooner() -> None:
    watch = AbsenceWatch(30, 10)
    asked = [t for t in range(0, 40, 2) if watch.observe(described(t, "b"), ME, t, holding=False)]
    assert asked == [10, 20, 30]
