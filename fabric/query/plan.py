"""Binding: a parsed statement, the table's key and the parameters give the lookups and the
rows' order."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fabric.errors import InvalidQueryError, UnsupportedQueryError
from fabric.query.statement import Literal, Operand, OrderItem, ParsedQuery, SelectItem
from fabric.query.values import KeyColumnType, key_values, sort_key

MAX_KEYS = 100_000


@dataclass(frozen=True)
class ReadPlan:
    """The lookups a statement needs and how to turn their rows into its result."""

    table: str
    primary_key: tuple[str, ...]
    keys: tuple[tuple[Any, ...], ...]  # distinct, in primary-key order
    select: tuple[SelectItem, ...] | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    sort_keys: tuple[Callable[[Any], Any], ...]  # per key column, Postgres's order

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the statement names (to check against the table's columns)."""
        return tuple(item.column for item in self.select or ())

    def check_columns(self, known: Collection[str]) -> None:
        """Raise :class:`InvalidQueryError` if the statement names a column not in ``known``."""
        for column in self.columns:
            if column not in known:
                raise InvalidQueryError(f"column {column} does not exist in {self.table}")

    def result(self, rows: Sequence[Mapping[str, Any] | None], *, as_dicts: bool) -> list[Any]:
        """The statement's rows from the lookups' answers (``None``: no such key), as tuples in
        select-list order, or as dicts, like a psycopg cursor's ``fetchall()``."""
        found: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        for row in rows:
            if row is not None:
                self.check_columns(row.keys())
                found.setdefault(tuple(row[name] for name in self.primary_key), row)
        ordered = self._ordered(list(found.values()))
        if self.limit is not None:
            ordered = ordered[: self.limit]
        names = [i.name for i in self.select] if self.select is not None else None
        columns = [i.column for i in self.select] if self.select is not None else None
        if as_dicts:
            if names is None or columns is None:
                return [dict(row) for row in ordered]
            return [dict(zip(names, (row[c] for c in columns), strict=True)) for row in ordered]
        if columns is None:
            return [tuple(row.values()) for row in ordered]
        return [tuple(row[c] for c in columns) for row in ordered]

    def _ordered(self, rows: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        position = {name: i for i, name in enumerate(self.primary_key)}

        def by(columns: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
            return lambda row: tuple(self.sort_keys[position[c]](row[c]) for c in columns)

        backward = bool(self.order_by) and self.order_by[0].descending
        rows.sort(key=by(self.primary_key), reverse=backward)
        for item in reversed(self.order_by):
            rows.sort(key=by([item.column]), reverse=item.descending)  # stable: ties keep order
        return rows


def bind(
    query: ParsedQuery,
    key_columns: Sequence[KeyColumnType],
    params: Sequence[Any] | Mapping[str, Any] | None,
) -> ReadPlan:
    """The lookups of ``query`` on a table whose primary key is ``key_columns`` (in the
    constraint's order), with ``params`` bound as psycopg binds them.

    Raises :class:`UnsupportedQueryError` when the conditions do not fix every key column (or
    name others), :class:`InvalidQueryError` when the parameters do not fit the placeholders.
    """
    by_name = {c.name: c for c in key_columns}
    primary_key = tuple(c.name for c in key_columns)
    _check_shape(query, by_name, primary_key)
    values = _ParamValues(query, params)
    constrained: dict[str, list[Any]] = {}
    for condition in query.conditions:
        column = by_name[condition.column]
        operands = (
            values.array(condition.operands[0], column.name)
            if condition.array
            else [values.value(o) for o in condition.operands]
        )
        constrained[column.name] = key_values(operands, column)
    count = 1
    for candidates in constrained.values():
        count *= len(candidates)
    if count > MAX_KEYS:
        raise UnsupportedQueryError(f"the conditions name {count} keys; at most {MAX_KEYS}")
    keys = tuple(itertools.product(*(constrained[name] for name in primary_key)))
    return ReadPlan(
        table=query.qualified,
        primary_key=primary_key,
        keys=keys,
        select=query.select,
        order_by=query.order_by,
        limit=None if query.limit is None else _limit(values.value(query.limit)),
        sort_keys=tuple(sort_key(c) for c in key_columns),
    )


def _check_shape(
    query: ParsedQuery, by_name: Mapping[str, KeyColumnType], primary_key: tuple[str, ...]
) -> None:
    """Refuse conditions that are not one per key column, and orders not on key columns."""
    constrained: set[str] = set()
    for condition in query.conditions:
        if condition.column not in by_name:
            raise UnsupportedQueryError(
                f"the condition on {condition.column} is not supported: only the key of "
                f"{query.qualified} ({', '.join(primary_key)}) can be looked up"
            )
        if condition.column in constrained:
            raise UnsupportedQueryError(f"{condition.column} is constrained twice")
        constrained.add(condition.column)
    missing = [name for name in primary_key if name not in constrained]
    if missing:
        raise UnsupportedQueryError(
            f"the conditions leave {', '.join(missing)} open: a key read fixes every key column "
            f"of {query.qualified} ({', '.join(primary_key)}); scan a key prefix with the client"
        )
    for item in query.order_by:
        column = by_name.get(item.column)
        if column is None:
            raise UnsupportedQueryError(
                f"ORDER BY {item.column} is not supported: only key columns order a key read"
            )
        if column.is_enum:
            raise UnsupportedQueryError(
                f"ORDER BY the enum column {item.column} is not supported: its labels' order "
                "is not known here"
            )


class _ParamValues:
    def __init__(
        self, query: ParsedQuery, params: Sequence[Any] | Mapping[str, Any] | None
    ) -> None:
        if query.named:
            if not isinstance(params, Mapping):
                raise InvalidQueryError("%(name)s placeholders take a mapping of parameters")
        elif params is not None:
            if isinstance(params, Mapping | str | bytes) or not isinstance(params, Sequence):
                raise InvalidQueryError("%s placeholders take a sequence of parameters")
            if len(params) != query.placeholders:
                raise InvalidQueryError(
                    f"the query has {query.placeholders} placeholders but {len(params)} "
                    "parameters were passed"
                )
        elif query.placeholders:
            raise InvalidQueryError(f"the query has {query.placeholders} placeholders, no params")
        self._params = params

    def value(self, operand: Operand) -> Any:
        if isinstance(operand, Literal):
            return operand.value
        if isinstance(operand.key, str):
            assert isinstance(self._params, Mapping)
            if operand.key not in self._params:
                raise InvalidQueryError(f"no parameter named {operand.key!r} was passed")
            return self._params[operand.key]
        assert isinstance(self._params, Sequence)
        return self._params[operand.key]

    def array(self, operand: Operand, column: str) -> list[Any]:
        value = self.value(operand)
        if not isinstance(value, list):
            raise InvalidQueryError(
                f"{column} = ANY(…) takes a list (psycopg adapts only lists to arrays), "
                f"got {type(value).__name__}"
            )
        return value


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidQueryError(f"LIMIT takes an integer, got {value!r:.40}")
    if value < 0:
        raise InvalidQueryError("LIMIT must not be negative")
    return value
