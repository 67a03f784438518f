"""How a change event changes a table: the apply rules, as pure functions.

The materializer applies a partition's records in offset order. These rules make the result
equal the source table, also when Debezium and Connect deliver a suffix of the stream twice
(both are at-least-once) and when the table was truncated:

- ``r``, ``c``, ``u``: the after-image becomes the row. A primary-key change arrives as a delete
  of the old key and a create of the new one, so it needs no rule of its own.
- ``d``: the row is deleted.
- A tombstone (null value) changes nothing. It follows the ``d`` event of the same key, which has
  already deleted the row; compaction never keeps a tombstone while dropping that ``d`` but
  keeping an older image of the key, so a tombstone never has anything left to delete. Treating it
  as a no-op means a re-delivered tombstone can never remove a row re-created after it.
- A truncate marker at LSN ``T`` for a table: every row of that table whose change LSN is below
  ``T`` is gone, and any event of that table with an LSN below ``T`` that arrives afterwards (a
  partition that lags behind the marker topic, or a re-delivery) is skipped. TRUNCATE's ACCESS
  EXCLUSIVE lock guarantees that no change to the table with a lower LSN commits after it.
- Unchanged TOASTed columns (default replica identity) arrive as Debezium's placeholder; the
  stored value of such a column is kept (:func:`merge_unavailable`).

Re-delivery replays a suffix of the stream in its original order, so applying full after-images
in order converges to the same final state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from fabric.core.events import ChangeEvent, Op

UNAVAILABLE = "__debezium_unavailable_value"
# bytea columns carry the placeholder's bytes, base64-encoded like every bytea value.
_UNAVAILABLE_BYTES_B64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
# Integer arrays carry the placeholder's bytes as a list of numbers.
_UNAVAILABLE_AS_NUMBERS = list(UNAVAILABLE.encode())


class Upsert(NamedTuple):
    """Store ``image`` as the row. ``unavailable`` names columns whose value is the stored one."""

    image: dict[str, Any]
    lsn: int | None
    commit_ts_ms: int | None
    unavailable: tuple[str, ...]


class Remove(NamedTuple):
    lsn: int | None


class Skip(NamedTuple):
    reason: str


Mutation = Upsert | Remove | Skip


def plan(event: ChangeEvent | None, truncated_before: int | None) -> Mutation:
    """The mutation one record of a table topic makes to its key's row.

    ``event`` is the decoded record value (None for a tombstone); ``truncated_before`` is the LSN
    of the latest truncate marker known for the event's table, if any.
    """
    if event is None:
        return Skip("tombstone")
    lsn = event.source.lsn
    if truncated_before is not None and lsn is not None and lsn < truncated_before:
        return Skip("before truncate")
    if event.op is Op.DELETE:
        return Remove(lsn)
    if event.op in (Op.READ, Op.CREATE, Op.UPDATE) and event.after is not None:
        unavailable = unavailable_columns(event.after) if event.may_carry_placeholder else ()
        return Upsert(event.after, lsn, event.source.commit_ts_ms, unavailable)
    return Skip(f"op {event.op.value!r} does not change a row")


def unavailable_columns(image: Mapping[str, Any]) -> tuple[str, ...]:
    """Columns whose value is Debezium's unchanged-TOAST placeholder, in any of its forms."""
    return tuple(name for name, value in image.items() if _is_placeholder(value))


def merge_unavailable(
    image: Mapping[str, Any], stored: Mapping[str, Any] | None, columns: tuple[str, ...]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Replace placeholder ``columns`` of ``image`` with the stored row's values.

    Returns the merged image and the columns that could not be filled (no stored row, or the
    stored row lacks the column, e.g. it was rebuilt from a compacted topic whose only image of
    the key is this update). The caller must not serve such columns as values.
    """
    merged = dict(image)
    missing = []
    for name in columns:
        if stored is not None and name in stored and not _is_placeholder(stored[name]):
            merged[name] = stored[name]
        else:
            missing.append(name)
    return merged, tuple(missing)


def _is_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return value in (UNAVAILABLE, _UNAVAILABLE_BYTES_B64)
    if isinstance(value, list):
        # Arrays of TOASTable types carry a one-element array holding the placeholder.
        return (len(value) == 1 and value[0] == UNAVAILABLE) or value == _UNAVAILABLE_AS_NUMBERS
    return False
