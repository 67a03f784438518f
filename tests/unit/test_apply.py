from typing import Any

import pytest

from fabric.core.apply import (
    UNAVAILABLE,
    Remove,
    Skip,
    Upsert,
    merge_unavailable,
    plan,
    unavailable_columns,
)
from fabric.core.events import ChangeEvent, Op, Source


def _event(op: Op, *, after: dict[str, Any] | None = None, lsn: int | None = 100) -> ChangeEvent:
    source = Source("public", "items", lsn, 7, 1_764_000_000_000, op is Op.READ)
    before = {"id": 1} if op is Op.DELETE else None
    return ChangeEvent(op, before, after, source, 1_764_000_000_100)


@pytest.mark.parametrize("op", [Op.READ, Op.CREATE, Op.UPDATE])
def test_after_image_becomes_the_row(op: Op) -> None:
    mutation = plan(_event(op, after={"id": 1, "title": "lamp"}), truncated_before=None)
    assert mutation == Upsert({"id": 1, "title": "lamp"}, 100, 1_764_000_000_000, ())


def test_delete_removes_and_tombstone_changes_nothing() -> None:
    assert plan(_event(Op.DELETE), truncated_before=None) == Remove(100)
    assert plan(None, truncated_before=None) == Skip("tombstone")
    assert plan(None, truncated_before=10**9) == Skip("tombstone")


def test_events_before_a_truncate_are_skipped_and_later_ones_applied() -> None:
    assert plan(_event(Op.CREATE, after={"id": 1}, lsn=99), 100) == Skip("before truncate")
    assert plan(_event(Op.DELETE, lsn=99), 100) == Skip("before truncate")
    assert plan(_event(Op.READ, after={"id": 1}, lsn=99), 100) == Skip("before truncate")
    assert isinstance(plan(_event(Op.CREATE, after={"id": 1}, lsn=100), 100), Upsert)
    assert isinstance(plan(_event(Op.UPDATE, after={"id": 1}, lsn=101), 100), Upsert)


def test_truncate_rule_needs_an_lsn() -> None:
    assert isinstance(plan(_event(Op.CREATE, after={"id": 1}, lsn=None), 100), Upsert)


def test_placeholder_columns_are_named_in_every_form() -> None:
    image = {
        "id": 1,
        "description": UNAVAILABLE,
        "thumbnail": "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==",
        "tags": [UNAVAILABLE],
        "title": "kept",
        "empty": [],
        "nothing": None,
    }
    assert unavailable_columns(image) == ("description", "thumbnail", "tags")
    mutation = plan(_event(Op.UPDATE, after=image), truncated_before=None)
    assert isinstance(mutation, Upsert)
    assert mutation.unavailable == ("description", "thumbnail", "tags")


def test_merge_keeps_stored_values_of_unchanged_toasted_columns() -> None:
    image = {"id": 1, "title": "new", "description": UNAVAILABLE}
    stored = {"id": 1, "title": "old", "description": "x" * 5000}
    merged, missing = merge_unavailable(image, stored, ("description",))
    assert merged == {"id": 1, "title": "new", "description": "x" * 5000}
    assert missing == ()
    assert image["description"] == UNAVAILABLE  # the input is not changed


def test_merge_reports_columns_it_cannot_fill() -> None:
    image = {"id": 1, "description": UNAVAILABLE, "tags": [UNAVAILABLE]}
    merged, missing = merge_unavailable(image, None, ("description", "tags"))
    assert missing == ("description", "tags")
    assert merged == image
    stored = {"id": 1, "description": UNAVAILABLE}
    assert merge_unavailable(image, stored, ("description",))[1] == ("description",)
