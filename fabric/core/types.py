"""Column types from Postgres's catalog, and Debezium JSON values turned back into psycopg values.

With JsonConverter and schemas disabled a change event's column values lose their types (a DATE
is an integer, a NUMERIC a string, a UUID a string). :func:`decode_row` restores them from the
table's definition, so that a decoded row equals what psycopg 3 returns for the same row: same
Python types, equal values. The connector settings this assumes are those of the sample spec:
``decimal.handling.mode=string``, ``interval.handling.mode=string``,
``time.precision.mode=microseconds``, ``binary.handling.mode=bytes`` (base64 in JSON). docs/types.md
has the full mapping and the documented exceptions.

A value psycopg itself cannot load (``time '24:00:00'``, a timestamp before year 1 or ``infinity``)
raises :class:`MalformedEventError` here too. Debezium's TOAST placeholder is never decoded as a
value: callers merge unchanged TOASTed columns from the stored row before decoding, and
:func:`decode_row` raises :class:`UnavailableValueError` if one is left.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from fabric.errors import MalformedEventError

UNAVAILABLE_VALUE = "__debezium_unavailable_value"

Converter = Callable[[Any], Any]


class UnavailableValueError(MalformedEventError):
    """An image still carries Debezium's placeholder for an unchanged TOASTed column.

    Merge the column's value from the stored row (or use REPLICA IDENTITY FULL) before decoding.
    """

    def __init__(self, table: str, columns: tuple[str, ...]) -> None:
        super().__init__(
            f"{table}: columns {', '.join(columns)} carry Debezium's TOAST placeholder; merge "
            "them from the stored row before decoding"
        )
        self.columns = columns


class UnknownColumnsError(MalformedEventError):
    """An image names columns the table definition lacks: re-read the catalog (ALTER TABLE)."""

    def __init__(self, table: str, columns: tuple[str, ...]) -> None:
        super().__init__(
            f"{table}: the event has columns {', '.join(columns)} the table definition lacks; "
            "re-read the table definitions from the catalog"
        )
        self.columns = columns


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column's type as the catalog describes it.

    ``pg_type`` is ``format_type()``'s name (``numeric(12,2)``, ``text[]``); ``base`` is the
    element type's ``pg_type.typname`` (``int4``, ``timestamptz``), qualified with its schema
    when it is not a ``pg_catalog`` type; ``enum_labels`` is non-empty exactly for enums.
    """

    pg_type: str
    base: str
    is_array: bool = False
    enum_labels: tuple[str, ...] = ()

    @property
    def is_enum(self) -> bool:
        return bool(self.enum_labels)


@dataclass(frozen=True, slots=True)
class Column:
    """``missing`` is the value Postgres shows for the column in rows written before it was added
    (``ADD COLUMN … DEFAULT`` with a constant: ``pg_attribute.attmissingval``), as psycopg
    returns it; ``None`` otherwise. A stored image without the column reads as this value."""

    name: str
    type: ColumnType
    not_null: bool = False
    missing: Any = None


@dataclass(frozen=True)
class TableSchema:
    """A table's columns in table order and its primary key in the constraint's order.

    ``version`` is a fingerprint of the whole definition: equal definitions, equal versions.
    The per-column converters are built once, here, so that a row decodes in one loop.
    """

    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    _decoders: tuple[tuple[str, Converter, tuple[object, ...], Any], ...] = field(
        init=False, repr=False, compare=False
    )
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        decoders = tuple(
            (c.name, column_decoder(self.qualified, c), placeholders(c.type), c.missing)
            for c in self.columns
        )
        object.__setattr__(self, "_decoders", decoders)
        object.__setattr__(self, "_names", frozenset(c.name for c in self.columns))

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def version(self) -> str:
        canonical = json.dumps(
            [
                self.qualified,
                [
                    [
                        c.name,
                        c.type.pg_type,
                        c.type.base,
                        c.type.is_array,
                        c.type.enum_labels,
                        c.not_null,
                        repr(c.missing),
                    ]
                    for c in self.columns
                ],
                self.primary_key,
            ]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def unknown_columns(self, image: Mapping[str, Any]) -> tuple[str, ...]:
        """Columns of ``image`` this definition does not know, in image order; () when none."""
        if len(image) <= len(self._names) and self._names.issuperset(image):
            return ()
        return tuple(name for name in image if name not in self._names)


def decode_row(
    table: TableSchema, image: Mapping[str, Any], *, ignore_unknown: bool = False
) -> dict[str, Any]:
    """The psycopg values of a Debezium row image, keyed in table column order.

    A column the image lacks (the image predates an ADD COLUMN) decodes as the value Postgres
    shows for it in such rows: :attr:`Column.missing`, ``None`` unless it was added with a
    constant default. A column
    the table lacks raises :class:`UnknownColumnsError` unless ``ignore_unknown`` (the catalog
    was re-read and the column is gone). A TOAST placeholder raises
    :class:`UnavailableValueError`; a value that does not fit its type raises
    :class:`MalformedEventError` naming the column and type.
    """
    if not ignore_unknown:
        unknown = table.unknown_columns(image)
        if unknown:
            raise UnknownColumnsError(table.qualified, unknown)
    row: dict[str, Any] = {}
    unavailable: list[str] = []
    for name, convert, placeholders, missing in table._decoders:
        value = image.get(name)
        if value is None:
            row[name] = missing if missing is not None and name not in image else None
        elif value in placeholders:
            unavailable.append(name)
        else:
            row[name] = convert(value)
    if unavailable:
        raise UnavailableValueError(table.qualified, tuple(unavailable))
    return row


def decode_value(column_type: ColumnType, value: Any) -> Any:
    """The psycopg value of one Debezium JSON value of ``column_type``; ``None`` stays ``None``.

    Raises :class:`MalformedEventError` when the value does not fit the type.
    """
    if value is None:
        return None
    return column_decoder("value", Column("value", column_type))(value)


def placeholders(column_type: ColumnType) -> tuple[object, ...]:
    """The spellings of Debezium's TOAST placeholder a column of this type may carry."""
    raw = UNAVAILABLE_VALUE.encode()
    if column_type.is_array:
        # Text arrays carry [placeholder]; integer arrays the placeholder's bytes as numbers.
        return ([UNAVAILABLE_VALUE], list(raw))
    if column_type.base == "bytea":
        return (UNAVAILABLE_VALUE, base64.b64encode(raw).decode())
    return (UNAVAILABLE_VALUE,)


def column_decoder(table: str, column: Column) -> Converter:
    """The function turning a Debezium JSON value of ``column`` into its psycopg value.

    It raises :class:`MalformedEventError` naming ``table``, the column and its type; it does not
    accept ``None`` (callers keep ``None`` as ``None``).
    """
    column_type = column.type
    element = _ELEMENT.get(column_type.base)
    if element is None:
        element = _text if column_type.is_enum else _unsupported

    def fail(value: Any, why: str) -> MalformedEventError:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        return MalformedEventError(f"{table}.{column.name} ({column_type.pg_type}): {shown} {why}")

    def scalar(value: Any) -> Any:
        try:
            return element(value)
        except _MisfitError as exc:
            raise fail(value, str(exc)) from None

    if not column_type.is_array:
        return scalar

    def array(value: Any) -> Any:
        if not isinstance(value, list):
            raise fail(value, "is not a JSON array")
        try:
            return [None if v is None else element(v) for v in value]
        except _MisfitError as exc:
            raise fail(value, f"has an element that {exc}") from None

    return array


class _MisfitError(Exception):
    """A JSON value that does not fit the column type; the column converter names the column."""


def _integer(low: int, high: int) -> Converter:
    def convert(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise _MisfitError(f"is not an integer in [{low}, {high}]")
        return value

    return convert


_NUMERIC = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_NUMERIC_SPECIAL = {
    "NAN": Decimal("NaN"),
    "POSITIVE_INFINITY": Decimal("Infinity"),
    "NEGATIVE_INFINITY": Decimal("-Infinity"),
}


def _numeric(value: Any) -> Decimal:
    if isinstance(value, str):
        if _NUMERIC.fullmatch(value):
            return Decimal(value)
        special = _NUMERIC_SPECIAL.get(value)
        if special is not None:
            return special
    raise _MisfitError("is not a decimal string")


_FLOAT_SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    special = _FLOAT_SPECIAL.get(value) if isinstance(value, str) else None
    if special is None:
        raise _MisfitError("is not a number")
    return special


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _MisfitError("is not a string")
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _MisfitError("is not a boolean")
    return value


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(_text(value))
    except ValueError:
        raise _MisfitError("is not a UUID") from None


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _date(value: Any) -> date:
    if type(value) is not int:
        raise _MisfitError("is not a day count")
    try:
        return date.fromordinal(_EPOCH_ORDINAL + value)
    except (ValueError, OverflowError):
        raise _MisfitError("is outside Python's dates (psycopg cannot load it either)") from None


_DAY_US = 86_400_000_000


def _time(value: Any) -> time:
    if type(value) is not int or not 0 <= value < _DAY_US:
        raise _MisfitError("is not a time of day in microseconds (24:00:00 has no Python time)")
    seconds, micros = divmod(value, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return time(hour, minute, second, micros)


_EPOCH = datetime(1970, 1, 1)


def _timestamp(value: Any) -> datetime:
    if type(value) is not int:
        raise _MisfitError("is not a microsecond count")
    try:
        return _EPOCH + timedelta(microseconds=value)
    except OverflowError:
        raise _MisfitError(
            "is outside Python's datetimes (psycopg cannot load it either)"
        ) from None


def _timestamptz(value: Any) -> datetime:
    # Debezium writes UTC with a 'Z'; ±infinity and BC values arrive as text Python cannot parse.
    try:
        parsed = datetime.fromisoformat(_text(value))
    except ValueError:
        raise _MisfitError("is not an ISO timestamp Python can hold") from None
    if parsed.tzinfo is None:
        raise _MisfitError("has no UTC offset")
    return parsed.astimezone(UTC)


_INTERVAL = re.compile(r"P(-?\d+)Y(-?\d+)M(-?\d+)DT(-?\d+)H(-?\d+)M(-?\d+(?:\.\d+)?)S")


def _interval(value: Any) -> timedelta:
    match = _INTERVAL.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _MisfitError("is not an ISO 8601 interval")
    years, months, days, hours, minutes = (int(g) for g in match.groups()[:5])
    # psycopg counts a month as 30 days and a year as 365, as Postgres's own justify functions do.
    micros = int(Decimal(match.group(6)) * 1_000_000)
    try:
        return timedelta(
            days=years * 365 + months * 30 + days,
            hours=hours,
            minutes=minutes,
            microseconds=micros,
        )
    except OverflowError:
        raise _MisfitError("is outside Python's timedelta range") from None


def _json(value: Any) -> Any:
    try:
        return json.loads(_text(value))
    except json.JSONDecodeError:
        raise _MisfitError("is not JSON text") from None


def _bytea(value: Any) -> bytes:
    try:
        return base64.b64decode(_text(value), validate=True)
    except binascii.Error:
        raise _MisfitError("is not base64") from None


def _unsupported(value: Any) -> Any:
    raise _MisfitError("has a type the fabric does not decode (see docs/types.md)")


_ELEMENT: dict[str, Converter] = {
    "int2": _integer(-(2**15), 2**15 - 1),
    "int4": _integer(-(2**31), 2**31 - 1),
    "int8": _integer(-(2**63), 2**63 - 1),
    "numeric": _numeric,
    "float4": _float,
    "float8": _float,
    "text": _text,
    "varchar": _text,
    "bpchar": _text,
    "bool": _boolean,
    "uuid": _uuid,
    "date": _date,
    "time": _time,
    "timestamp": _timestamp,
    "timestamptz": _timestamptz,
    "interval": _interval,
    "json": _json,
    "jsonb": _json,
    "bytea": _bytea,
}
