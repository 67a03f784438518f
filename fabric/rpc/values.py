"""psycopg values ↔ the API's typed ``Value`` messages.

The server encodes a row with its table's column types (so a ``str`` becomes ``text``, ``uuid``
or ``json`` as the column says); any client decodes a ``Value`` by its kind alone and gets the
value psycopg would have returned. Key values arriving in requests are decoded the same way and
then checked against the key columns by :class:`fabric.core.keys.KeyCodec`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from fabric.core.types import ColumnType, TableSchema
from fabric.errors import InvalidKeyError, UnknownTableError
from fabric.rpc.v1 import fabric_pb2 as pb

Encoder = Callable[[Any], pb.Value]
Filler = Callable[[pb.Value, Any], None]  # sets a psycopg value on a given Value

_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_NULL = pb.Value(null=pb.NULL_VALUE)
_MAX_IDENTIFIER = 63  # bytes in a Postgres name (NAMEDATALEN - 1)


class RowEncoder:
    """Encodes rows of one table definition; built once per definition, used per answer."""

    def __init__(self, table: TableSchema) -> None:
        self.schema = table
        self.version = table.version
        self._columns = tuple((c.name, _filler(value_encoder(c.type))) for c in table.columns)

    def row(self, values: dict[str, Any]) -> pb.Row:
        # Values are set in place on the row's own fields: building each Field and Value apart
        # and copying them into the Row costs twice as much, on every answer.
        row = pb.Row()
        add = row.fields.add
        for name, fill in self._columns:
            value = values.get(name)
            target = add(name=name).value
            if value is None:
                target.null = pb.NULL_VALUE
            else:
                fill(target, value)
        return row


def encode_key(columns: Sequence[str], values: Sequence[Any]) -> pb.Key:
    """A key message from psycopg values in primary-key order (clients build lookups with it)."""
    return pb.Key(
        fields=[
            pb.Field(name=n, value=encode_value(v)) for n, v in zip(columns, values, strict=True)
        ]
    )


def encode_value(value: Any) -> pb.Value:
    """A value by its Python type alone (what a client has for a key): ``int`` → int, ``str`` →
    text, ``UUID`` → uuid, aware ``datetime`` → timestamptz, naive → timestamp, and so on."""
    if value is None:
        return _NULL
    kind = type(value)
    encode = _BY_PYTHON_TYPE.get(kind)
    if encode is None:
        if isinstance(value, datetime):
            encode = _timestamptz if value.tzinfo is not None else _timestamp
        elif isinstance(value, list | tuple):
            encode = _array(encode_value)
        else:
            raise TypeError(f"a {kind.__name__} has no Value kind")
    return encode(value)


def decode_key(key: pb.Key, columns: Sequence[str], table: str) -> dict[str, Any] | list[Any]:
    """A request's key as psycopg values: a mapping when its fields are named, else a list in
    primary-key order. Raises :class:`InvalidKeyError` naming the field that is malformed."""
    named = [f.name for f in key.fields]
    long = next((name for name in named if len(name) > _MAX_IDENTIFIER), None)
    if long is not None:
        raise InvalidKeyError(f"{table} has no column {long!r:.40}… (key is {', '.join(columns)})")
    if any(named) and not all(named):
        raise InvalidKeyError(
            f"{table}: name every key field or none (key is {', '.join(columns)})"
        )
    if len(set(named)) < len(named) and all(named):
        twice = next(name for name in named if named.count(name) > 1)
        raise InvalidKeyError(f"{table}: the key names {twice} more than once", twice)
    values = []
    for position, field in enumerate(key.fields):
        column = field.name or (columns[position] if position < len(columns) else f"#{position}")
        try:
            values.append(decode_value(field.value))
        except (ValueError, OverflowError) as exc:
            raise InvalidKeyError(f"{table}.{column}: {exc}", column) from None
    if all(named) and named:
        return dict(zip(named, values, strict=True))
    return values


def decode_table(name: str) -> str:
    """A request's table as ``schema.table`` (a bare name means public). Raises
    :class:`InvalidKeyError` for a name no request can mean and :class:`UnknownTableError` for
    one no Postgres table can have, before the catalog is asked."""
    if not name:
        raise InvalidKeyError("no table named; give schema.table (a bare name means public)")
    qualified = name if "." in name else f"public.{name}"
    # Most names are short and plain: the checks below only for the others.
    if len(qualified) <= _MAX_IDENTIFIER and "\x00" not in qualified:
        return qualified
    if "\x00" in qualified:
        raise InvalidKeyError(f"table name {name!r:.80} contains a NUL character")
    schema, _, table = qualified.partition(".")
    if max(len(schema.encode()), len(table.encode())) > _MAX_IDENTIFIER:
        raise UnknownTableError(
            f"no table is named {name!r:.80}: Postgres names are at most {_MAX_IDENTIFIER} bytes"
        )
    return qualified


def decode_value(value: pb.Value) -> Any:
    """The psycopg value of a ``Value``; raises ``ValueError`` when it is malformed."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise ValueError("the value has no kind set")
    decode = _DECODERS[kind]
    return decode(getattr(value, kind))


def decode_row(row: pb.Row) -> dict[str, Any]:
    return {f.name: decode_value(f.value) for f in row.fields}


def decoders_by_field() -> tuple[Callable[[Any], Any] | None, ...]:
    """Each ``Value`` kind's decoder at its field number (index 0 unused), for a reader of the
    wire format that decodes only the plain kinds itself; a message kind's decoder takes the
    message's bytes."""
    decoders: list[Callable[[Any], Any] | None] = [None] * 16
    for field in pb.Value.DESCRIPTOR.fields:
        decode = _DECODERS[field.name]
        if field.message_type is not None:
            decode = _from_bytes(getattr(pb, field.message_type.name).FromString, decode)
        decoders[field.number] = decode
    return tuple(decoders)


def _from_bytes(
    parse: Callable[[bytes], Any], decode: Callable[[Any], Any]
) -> Callable[[bytes], Any]:
    def decode_message(data: bytes) -> Any:
        try:
            message = parse(data)
        except DecodeError as exc:
            raise ValueError(f"a value's message does not parse ({exc})") from None
        return decode(message)

    return decode_message


# -- encoders by column type -------------------------------------------------------------------


def value_encoder(column_type: ColumnType) -> Encoder:
    """The encoder of psycopg values of one column type into ``Value`` messages."""
    if column_type.is_array:
        return _array(_scalar_encoder(column_type))
    return _scalar_encoder(column_type)


def _scalar_encoder(column_type: ColumnType) -> Encoder:
    if column_type.is_enum:
        return _text
    return _BY_BASE.get(column_type.base, _fallback)


class _Scalar:
    """The encoder of a scalar kind: ``convert`` turns the psycopg value into the kind's."""

    __slots__ = ("convert", "kind")

    def __init__(self, kind: str, convert: Callable[[Any], Any]) -> None:
        self.kind = kind
        self.convert = convert

    def __call__(self, value: Any) -> pb.Value:
        target = pb.Value()
        setattr(target, self.kind, self.convert(value))
        return target


def _filler(encode: Encoder) -> Filler:
    if isinstance(encode, _Scalar):
        kind, convert = encode.kind, encode.convert

        def fill_scalar(target: pb.Value, value: Any) -> None:
            setattr(target, kind, convert(value))

        return fill_scalar

    def fill_message(target: pb.Value, value: Any) -> None:
        target.CopyFrom(encode(value))

    return fill_message


def _array(element: Encoder) -> Encoder:
    def encode(values: Any) -> pb.Value:
        return pb.Value(
            array=pb.ValueList(values=[_NULL if v is None else element(v) for v in values])
        )

    return encode


def _same(value: Any) -> Any:
    return value


def _days(value: date) -> int:
    return (value - _EPOCH_DATE).days


def _micros_of_day(value: time) -> int:
    seconds = (value.hour * 60 + value.minute) * 60 + value.second
    return seconds * 1_000_000 + value.microsecond


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // _MICRO


def _micros_utc(value: datetime) -> int:
    return (value - _EPOCH_UTC) // _MICRO


_int = _Scalar("int", _same)
_decimal = _Scalar("decimal", str)
_double = _Scalar("double", _same)
_text = _Scalar("text", _same)
_boolean = _Scalar("boolean", _same)
_bytes = _Scalar("bytes", bytes)
_uuid = _Scalar("uuid", str)
_date = _Scalar("date", _days)
_time = _Scalar("time", _micros_of_day)
_timestamp = _Scalar("timestamp", _micros)
_timestamptz = _Scalar("timestamptz", _micros_utc)
# json.dumps(value, ensure_ascii=False) builds this encoder anew on every call.
_json = _Scalar("json", json.JSONEncoder(ensure_ascii=False).encode)


def _interval(value: Any) -> pb.Value:
    micros = value.seconds * 1_000_000 + value.microseconds
    return pb.Value(interval=pb.Interval(months=0, days=value.days, micros=micros))


def _fallback(value: Any) -> pb.Value:
    return encode_value(value)


_BY_BASE: dict[str, Encoder] = {
    "int2": _int,
    "int4": _int,
    "int8": _int,
    "numeric": _decimal,
    "float4": _double,
    "float8": _double,
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
    "bytea": _bytes,
}

_BY_PYTHON_TYPE: dict[type, Encoder] = {
    bool: _boolean,
    int: _int,
    float: _double,
    Decimal: _decimal,
    str: _text,
    bytes: _bytes,
    bytearray: _bytes,
    uuid.UUID: _uuid,
    date: _date,
    time: _time,
    timedelta: _interval,
}


# -- decoders by kind --------------------------------------------------------------------------


def _decode_decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{text!r:.40} is not a decimal") from None


def _decode_interval(value: pb.Interval) -> timedelta:
    # psycopg counts a month as 30 days.
    return timedelta(days=value.months * 30 + value.days, microseconds=value.micros)


def _decode_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON text: {exc}") from None
    except RecursionError:
        raise ValueError("JSON text nested too deeply") from None


def _decode_time(micros: int) -> time:
    if not 0 <= micros < 86_400_000_000:
        raise ValueError(f"time {micros} is not microseconds since midnight")
    return (datetime.min + timedelta(microseconds=micros)).time()


def _decode_array(values: pb.ValueList) -> list[Any]:
    return [decode_value(v) for v in values.values]


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "null": lambda _: None,
    "boolean": bool,
    "int": int,
    "decimal": _decode_decimal,
    "double": float,
    "text": str,
    "bytes": bytes,
    "uuid": uuid.UUID,
    "date": lambda days: _EPOCH_DATE + timedelta(days=days),
    "time": _decode_time,
    "timestamp": lambda micros: _EPOCH + timedelta(microseconds=micros),
    "timestamptz": lambda micros: _EPOCH_UTC + timedelta(microseconds=micros),
    "interval": _decode_interval,
    "json": _decode_json,
    "array": _decode_array,
}
