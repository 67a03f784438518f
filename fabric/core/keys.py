"""A table's record keys built from primary-key values, the way Connect wrote them.

Debezium keys a change event by the row's primary-key columns, in the constraint's order, as a
JSON object (:mod:`fabric.core.keyjson` writes those bytes exactly). A lookup knows its key as
psycopg values (``int``, ``UUID``, ``datetime`` …); :class:`KeyCodec` turns them into the JSON
values Debezium writes for each column type (with the connector settings of docs/types.md) and
then into key bytes, so that the murmur2 partition and the store key are the ones Connect used.
The materializer runs the same codec on every record's row image (decode, then encode again) to
prove that lookups route to the partition the record arrived on.

Key columns of these types route exactly: smallint, integer, bigint, numeric (NaN and ±Infinity
included, which Debezium's string mode writes as ``NAN``, ``POSITIVE_INFINITY`` and
``NEGATIVE_INFINITY``), double precision, text, varchar, char, boolean, uuid, date, time,
timestamp, timestamptz, bytea and enums.
Not modelled, so refused as lookup keys: real (Connect writes it with ``Float.toString``), json
and jsonb (Postgres's own text form is not recoverable from the parsed value), arrays, and
negative intervals. An interval key routes exactly only when Postgres stores it as days plus a
time part under 24 hours, without months: a ``timedelta`` does not say how Postgres spelled it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from fabric.core.keyjson import KeyValue, encode_key
from fabric.core.types import Column, Converter, TableSchema, column_decoder
from fabric.errors import InvalidKeyError, MalformedEventError

Encoder = Callable[[Any], KeyValue]


class KeyCodec:
    """Record keys of one table: from psycopg values (lookups) and from row images (self-check)."""

    def __init__(self, table: TableSchema) -> None:
        if not table.primary_key:
            raise InvalidKeyError(f"table {table.qualified} has no primary key to look rows up by")
        by_name = {c.name: c for c in table.columns}
        unknown = [name for name in table.primary_key if name not in by_name]
        if unknown:
            raise InvalidKeyError(
                f"table {table.qualified}: key columns {', '.join(unknown)} are not columns of "
                "its definition; re-read the catalog"
            )
        self.table = table.qualified
        self.columns: tuple[str, ...] = table.primary_key
        self._parts: tuple[tuple[str, Converter, Encoder], ...] = tuple(
            (name, column_decoder(table.qualified, by_name[name]), _encoder(by_name[name]))
            for name in table.primary_key
        )
        # A one-column integer key, the commonest kind: its record key is fixed text around the
        # number, written by encode_integer without the general encoder.
        self._integer: tuple[bytes, int, int] | None = None
        only = by_name[table.primary_key[0]].type
        bounds = _INTEGER_BOUNDS.get(only.base)
        if len(self._parts) == 1 and bounds is not None and not only.is_array:
            self._integer = (encode_key([(self.columns[0], 0)])[:-2], *bounds)

    @property
    def integer_key(self) -> bool:
        """True when the key is one integer column: :meth:`encode_integer` applies."""
        return self._integer is not None

    @property
    def integer_layout(self) -> tuple[bytes, int, int] | None:
        """For a one-column integer key: the record key's text before the number (the key is
        that, the number in decimal, then ``}``) and the column's range; else None."""
        return self._integer

    def encode_integer(self, value: int) -> bytes:
        """``encode([value])`` for a one-column integer key, the lookup hot path."""
        assert self._integer is not None, "not a one-column integer key"
        head, low, high = self._integer
        if not low <= value <= high:
            name = self.columns[0]
            raise InvalidKeyError(f"{self.table}.{name}: {value} is outside [{low}, {high}]", name)
        return head + str(value).encode() + b"}"

    def encode(self, values: Mapping[str, Any] | Sequence[Any]) -> bytes:
        """The record key of the row whose primary key has these psycopg values.

        ``values`` maps every key column to its value, or lists the values in key order. Raises
        :class:`InvalidKeyError` naming the column that is missing, of the wrong type or out of
        range.
        """
        if isinstance(values, Mapping):
            missing = [name for name in self.columns if name not in values]
            extra = [name for name in values if name not in self.columns]
            if missing or extra:
                raise InvalidKeyError(
                    f"{self.table}: the key is ({', '.join(self.columns)})"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; {', '.join(extra)} not in the key" if extra else ""),
                    (missing or extra)[0],
                )
            ordered = [values[name] for name in self.columns]
        else:
            ordered = list(values)
            if len(ordered) != len(self.columns):
                raise InvalidKeyError(
                    f"{self.table}: the key is ({', '.join(self.columns)}), "
                    f"{len(self.columns)} value(s); got {len(ordered)}"
                )
        fields: list[tuple[str, KeyValue]] = []
        for (name, _, encode), value in zip(self._parts, ordered, strict=True):
            if value is None:
                raise InvalidKeyError(f"{self.table}.{name}: a key value is never NULL", name)
            try:
                fields.append((name, encode(value)))
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise InvalidKeyError(f"{self.table}.{name}: {exc}", name) from None
        return encode_key(fields)

    def encode_image(self, image: Mapping[str, Any]) -> bytes:
        """The record key rebuilt from a Debezium row image: its key columns decoded to psycopg
        values, then encoded as a lookup would. Raises :class:`MalformedEventError` or
        :class:`InvalidKeyError` when the image's key columns cannot make a key.

        Runs once per record (the materializer's routing self-check), hence the direct loop.
        """
        fields: list[tuple[str, KeyValue]] = []
        for name, decode, encode in self._parts:
            value = image.get(name)
            if value is None:
                raise MalformedEventError(f"{self.table}: key column {name} is missing or null")
            try:
                fields.append((name, encode(decode(value))))
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise InvalidKeyError(f"{self.table}.{name}: {exc}", name) from None
        return encode_key(fields)


def _encoder(column: Column) -> Encoder:
    column_type = column.type
    if column_type.is_array:
        return _refuse("array columns are not supported as lookup keys")
    if column_type.is_enum:
        return _text
    if column_type.base == "timestamptz":
        return _timestamptz(_fraction_digits(column_type.pg_type))
    # Postgres stores numeric(p,s) at scale s and char(n) padded to n, and Debezium writes them
    # so: a lookup's 1.5 or 'ab' must become 1.50 or 'ab   ' to find the key.
    scale = _NUMERIC_SCALE.fullmatch(column_type.pg_type)
    if column_type.base == "numeric" and scale:
        return _scaled_numeric(int(scale.group(1)))
    length = _CHAR_LENGTH.fullmatch(column_type.pg_type)
    if column_type.base == "bpchar" and length:
        return _padded_text(int(length.group(1)))
    encoder = _ENCODERS.get(column_type.base)
    if encoder is None:
        return _refuse(f"{column_type.pg_type} columns are not supported as lookup keys")
    return encoder


def _refuse(why: str) -> Encoder:
    def refuse(value: Any) -> KeyValue:
        raise ValueError(why)

    return refuse


def _expect(value: Any, *kinds: type) -> None:
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"expected {names}, got {type(value).__name__} {value!r:.60}")


def _integer(low: int, high: int) -> Encoder:
    def encode(value: Any) -> KeyValue:
        _expect(value, int)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside [{low}, {high}]")
        return int(value)

    return encode


def _numeric(value: Any) -> KeyValue:
    _expect(value, Decimal, int)
    number = Decimal(value)
    if not number.is_finite():
        return _special_numeric(number)
    # Debezium's string mode writes BigDecimal.toPlainString(): never an exponent.
    return format(number, "f")


def _special_numeric(number: Decimal) -> str:
    # Debezium's string mode names numeric's special values rather than writing a number.
    if number.is_snan():
        raise ValueError(f"{number} is not a Postgres numeric")
    if number.is_nan():
        return "NAN"
    return "POSITIVE_INFINITY" if number > 0 else "NEGATIVE_INFINITY"


_NUMERIC_SCALE = re.compile(r"numeric\(\d+,(\d+)\)")
_CHAR_LENGTH = re.compile(r"character\((\d+)\)")


def _scaled_numeric(scale: int) -> Encoder:
    exponent = Decimal(1).scaleb(-scale)

    def encode(value: Any) -> KeyValue:
        _expect(value, Decimal, int)
        number = Decimal(value)
        if not number.is_finite():
            return _special_numeric(number)
        return format(number.quantize(exponent), "f")

    return encode


def _padded_text(length: int) -> Encoder:
    def encode(value: Any) -> KeyValue:
        _expect(value, str)
        return str(value).ljust(length)

    return encode


def _float(value: Any) -> KeyValue:
    _expect(value, float, int)
    return float(value)


def _text(value: Any) -> KeyValue:
    _expect(value, str)
    return str(value)


def _boolean(value: Any) -> KeyValue:
    _expect(value, bool)
    return bool(value)


def _uuid(value: Any) -> KeyValue:
    _expect(value, uuid.UUID, str)
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))


_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1)
_MICROS = timedelta(microseconds=1)


def _date(value: Any) -> KeyValue:
    if isinstance(value, datetime):
        raise TypeError(f"expected date, got datetime {value!r:.60}")
    _expect(value, date)
    days: int = (value - _EPOCH_DATE).days
    return days


def _time(value: Any) -> KeyValue:
    _expect(value, time)
    if value.tzinfo is not None:
        raise TypeError("expected a time without time zone")
    seconds = (value.hour * 60 + value.minute) * 60 + value.second
    micros: int = seconds * 1_000_000 + value.microsecond
    return micros


def _timestamp(value: Any) -> KeyValue:
    _expect(value, datetime)
    if value.tzinfo is not None:
        raise TypeError("expected a naive datetime (timestamp without time zone)")
    micros: int = (value - _EPOCH) // _MICROS
    return micros


_PRECISION = re.compile(r"\((\d)\)")


def _fraction_digits(pg_type: str) -> int:
    match = _PRECISION.search(pg_type)
    return int(match.group(1)) if match else 6


def _timestamptz(digits: int) -> Encoder:
    # Debezium's ZonedTimestamp: UTC, 'Z', exactly the column's fractional digits.
    def encode(value: Any) -> KeyValue:
        _expect(value, datetime)
        if value.tzinfo is None:
            raise TypeError("expected an aware datetime (timestamp with time zone)")
        utc = value.astimezone(UTC)
        text = f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}"
        if digits:
            text += "." + f"{utc.microsecond:06d}"[:digits].ljust(digits, "0")
        return text + "Z"

    return encode


def _interval(value: Any) -> KeyValue:
    _expect(value, timedelta)
    if value < timedelta(0):
        raise ValueError("negative intervals are not supported as lookup keys")
    minutes, seconds = divmod(value.seconds, 60)
    hours, minutes = divmod(minutes, 60)
    fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
    return f"P0Y0M{value.days}DT{hours}H{minutes}M{seconds}{fraction}S"


def _bytea(value: Any) -> KeyValue:
    _expect(value, bytes, bytearray, memoryview)
    return bytes(value)


_INTEGER_BOUNDS: dict[str, tuple[int, int]] = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
}

_ENCODERS: dict[str, Encoder] = {
    **{base: _integer(*bounds) for base, bounds in _INTEGER_BOUNDS.items()},
    "numeric": _numeric,
    "float8": _float,
    "text": _text,
    "varchar": _text,
    "bpchar": _text,
    "bool": _boolean,
    "uuid": _uuid,
    "date": _date,
    "time": _time,
    "timestamp": _timestamp,
    "interval": _interval,
    "bytea": _bytea,
}
