"""A parsed statement: what it reads and how, before any parameter is bound."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """A placeholder: its position among the statement's placeholders, or its name."""

    key: int | str


@dataclass(frozen=True)
class Literal:
    value: int | str


Operand = Param | Literal


@dataclass(frozen=True)
class Condition:
    """``column = v``, ``column IN (v, ...)``, or ``column = ANY(param)`` (``array``)."""

    column: str
    operands: tuple[Operand, ...]
    array: bool = False


@dataclass(frozen=True)
class SelectItem:
    column: str
    name: str  # the result column's name: the alias, else the column


@dataclass(frozen=True)
class OrderItem:
    column: str
    descending: bool


@dataclass(frozen=True)
class ParsedQuery:
    schema: str
    table: str
    select: tuple[SelectItem, ...] | None  # None: *
    conditions: tuple[Condition, ...]
    order_by: tuple[OrderItem, ...]
    limit: Operand | None  # None: no LIMIT (or LIMIT ALL)
    placeholders: int  # how many positional placeholders; 0 for named ones
    named: bool  # the placeholders are %(name)s

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"
