"""Row answers written straight into protobuf's wire format from stored Debezium images.

Every lookup answer carries a row, and building it as messages — Debezium JSON → psycopg values
→ ``Value`` messages → bytes — costs ~15 µs a row in Python, more than the rest of a lookup. A
:class:`RowWriter` instead turns each JSON value into the bytes of its ``Value`` in one step, and
the answer messages around the row are framed here too; the gRPC handlers send those bytes as
they are (:mod:`fabric.serve.handlers`). What a client parses is exactly the message the
encoders of :mod:`fabric.rpc.values` would have built, with one deliberate difference: ``json``,
``jsonb`` and ``numeric`` values are Postgres's own text, as Debezium captured it, rather than
that text parsed and printed again (both decode to the same values). tests/unit/test_wire.py
holds every column type to that.

The per-row work runs in C (:mod:`fabric.rpc._wire`, compiled by every install): a
:class:`RowWriter` compiles its table's columns into a ``RowPlan`` that writes a row, or a whole
answer from a stored value, in one call. The C code writes natively only the values it can
write exactly as the Python writers here do and calls those writers for the rest; wherever
something may be wrong (an unknown column, a TOAST placeholder, a misfit value, a damaged stored
value) it declines, and the Python spelling (:meth:`RowWriter.reference_row`) answers or raises
the error that names it. tests/unit/test_wire_native.py holds the two to each other.

Wire format (protobuf encoding): a field is a varint tag ``number << 3 | wire type`` followed by
a varint (type 0), eight little-endian bytes (type 1) or a varint length and the bytes (type 2).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from fabric.core.types import (
    Column,
    TableSchema,
    UnavailableValueError,
    UnknownColumnsError,
    column_decoder,
    placeholders,
)
from fabric.errors import MalformedEventError
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import value_encoder

try:
    from fabric.rpc import _wire
except ImportError as exc:  # a source tree used without installing it
    raise ImportError(
        "fabric.rpc._wire, the native half of fabric.rpc.wire, is not built: install cdc-fabric "
        "with `pip install -e .` (scripts/bootstrap does) on a machine with a C compiler"
    ) from exc

ValueWriter = Callable[[Any], bytes]  # a Debezium JSON value (not None) → a serialized Value

_NULL = b"\x08\x00"  # Value.null = NULL_VALUE: written, as a oneof member is even when zero
_DOUBLE = struct.Struct("<d")
_SMALL = [bytes((n,)) for n in range(128)]
_FRESHNESS = pb.Freshness


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint; negative numbers as their 64-bit two's complement."""
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Lengths of values and fields are mostly short: their varints are looked up, not computed.
_VARINTS_KNOWN = 1 << 14
_VARINTS = [varint(n) for n in range(_VARINTS_KNOWN)]


def _tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + varint(len(payload)) + payload


# -- the answers around a row ------------------------------------------------------------------


class AnswerWriter:
    """Writes one instance's answers: rows from stored values, and their ``Freshness``."""

    def __init__(self, served_by: str) -> None:
        self._served_by = served_by
        self._served_by_bytes = served_by.encode()

    @property
    def served_by_bytes(self) -> bytes:
        """``Freshness.served_by`` of every answer, as the native writers take it."""
        return self._served_by_bytes

    def get_response(
        self,
        writer: RowWriter,
        stored: bytes | None,
        *,
        partition: int,
        applied_offset: int,
        lag_records: int,
    ) -> bytes | None:
        """A serialized ``GetResponse`` of a stored value (:mod:`fabric.state.row`; None: no
        such key), or None when the Python path must answer: the stored value is damaged or its
        row does not fit the writer's definition, and that path says how."""
        answer: bytes | None = writer.plan.answer(
            stored, partition, applied_offset, lag_records, self._served_by_bytes, False
        )
        return answer

    def lookup_results(
        self,
        writer: RowWriter,
        stored: list[bytes | None],
        *,
        partition: int,
        applied_offset: int,
        lag_records: int,
    ) -> list[bytes | None]:
        """Serialized OK ``LookupResult`` s of stored values of one partition, None for each
        the Python path must answer (as :meth:`get_response`)."""
        results: list[bytes | None] = writer.plan.lookup_results(
            stored, partition, applied_offset, lag_records, self._served_by_bytes
        )
        return results

    def freshness(
        self,
        *,
        lsn: int,
        commit_time_ms: int,
        partition: int,
        offset: int,
        applied_offset: int,
        lag_records: int,
    ) -> bytes:
        # Six integers: protobuf's own encoder writes them faster than Python varints.
        serialized: bytes = _FRESHNESS(
            lsn=lsn,
            commit_time_ms=commit_time_ms,
            partition=partition,
            offset=offset,
            applied_offset=applied_offset,
            lag_records=lag_records,
            served_by=self._served_by,
        ).SerializeToString()
        return serialized


def get_response(row: bytes | None, freshness: bytes) -> bytes:
    """A serialized ``GetResponse``: ``row`` None means not found."""
    found = b"" if row is None else b"\x08\x01" + length_delimited(2, row)
    return found + length_delimited(3, freshness)


_OK = length_delimited(1, b"OK")


def lookup_result(row: bytes | None, freshness: bytes) -> bytes:
    """A serialized ``LookupResult`` with status OK: ``row`` None means not found."""
    found = b"" if row is None else b"\x18\x01" + length_delimited(4, row)
    return _OK + found + length_delimited(5, freshness)


def batch_get_lookups(request: bytes) -> list[bytes] | None:
    """The serialized ``GetRequest`` s of a serialized ``BatchGetRequest``, in order; None for
    one not encoded field by field as protobuf writes it (parse it then)."""
    return _wire.split_repeated(request, 1)


def batch_get_request(lookups: list[bytes]) -> bytes:
    """A serialized ``BatchGetRequest`` of serialized ``GetRequest`` s, in order."""
    return _wire.frame_repeated(lookups, 1)


def batch_get_response(results: list[bytes]) -> bytes:
    """A serialized ``BatchGetResponse`` of serialized ``LookupResult`` s, in order."""
    return _wire.frame_repeated(results, 1)


def batch_get_results(response: bytes) -> list[bytes]:
    """The serialized ``LookupResult`` s of a serialized ``BatchGetResponse``, in order."""
    results = _wire.split_repeated(response, 1)
    if results is None:  # not written as this module writes it: parsed the long way
        parsed = pb.BatchGetResponse.FromString(response)
        results = [result.SerializeToString() for result in parsed.results]
    return results


_UNAVAILABLE_RESULT = length_delimited(1, b"UNAVAILABLE")


def is_unavailable(result: bytes) -> bool:
    """Whether a serialized ``LookupResult`` has the status UNAVAILABLE: its field 1 comes
    first, as protobuf's encoders and this module write fields, in number order."""
    return result.startswith(_UNAVAILABLE_RESULT)


def unavailable_indexes(response: bytes, results: list[bytes]) -> list[int]:
    """The positions of the UNAVAILABLE ones among ``results``, the ``LookupResult`` s of the
    serialized ``BatchGetResponse`` ``response``. One search of the whole response rules them
    all out in the common case, rather than a test of each result."""
    if _UNAVAILABLE_RESULT not in response:
        return []
    return [i for i, result in enumerate(results) if is_unavailable(result)]


# -- rows ----------------------------------------------------------------------------------------


class RowWriter:
    """Writes stored images of one table definition as serialized ``Row`` s; built once per
    definition. Decoding rules are those of :func:`fabric.core.types.decode_row`: a column the
    image lacks reads as its ``missing`` value (NULL unless added with a constant default), a
    column the definition lacks raises :class:`UnknownColumnsError` unless ``ignore_unknown``, a
    TOAST placeholder raises :class:`UnavailableValueError`, a misfit value
    :class:`MalformedEventError` naming the column."""

    def __init__(self, table: TableSchema) -> None:
        self.schema = table
        columns = []
        plan = []
        for column in table.columns:
            prefix = b"\x0a" + varint(len(column.name.encode())) + column.name.encode() + b"\x12"
            write = _value_writer(table.qualified, column)
            toasted = placeholders(column.type)
            missing = _missing(column)
            columns.append((column.name, prefix, write, toasted, missing))
            kind, tag, low, high = _native_kind(column)
            plan.append((column.name, prefix, kind, tag, low, high, write, toasted, missing))
        self._columns = tuple(columns)
        self.plan = _wire.RowPlan(tuple(plan), orjson.loads)

    def row(self, image: bytes | Mapping[str, Any], *, ignore_unknown: bool = False) -> bytes:
        if isinstance(image, bytes):
            written: bytes | None = self.plan.scan(image)
            if written is not None:
                return written
        document = orjson.loads(image) if isinstance(image, bytes) else image
        written = self.plan.row(document, ignore_unknown)
        if written is not None:
            return written
        return self.reference_row(document, ignore_unknown=ignore_unknown)

    def reference_row(
        self, image: bytes | Mapping[str, Any], *, ignore_unknown: bool = False
    ) -> bytes:
        """:meth:`row` spelled in Python: what the native plan must equal, and what answers
        (or raises) whenever the plan declines."""
        document = orjson.loads(image) if isinstance(image, bytes) else image
        if not ignore_unknown:
            unknown = self.schema.unknown_columns(document)
            if unknown:
                raise UnknownColumnsError(self.schema.qualified, unknown)
        parts: list[bytes] = []
        extend = parts.extend
        unavailable = []
        get = document.get
        for name, prefix, write, toasted, missing in self._columns:
            value = get(name)
            if value is None:
                encoded = missing if name not in document else _NULL
            elif value in toasted:
                unavailable.append(name)
                continue
            else:
                encoded = write(value)
            size = len(encoded)
            size_bytes = _VARINTS[size] if size < _VARINTS_KNOWN else varint(size)
            field_size = len(prefix) + len(size_bytes) + size
            extend(
                (
                    b"\x0a",
                    _VARINTS[field_size] if field_size < _VARINTS_KNOWN else varint(field_size),
                    prefix,
                    size_bytes,
                    encoded,
                )
            )
        if unavailable:
            raise UnavailableValueError(self.schema.qualified, tuple(unavailable))
        return b"".join(parts)


def _missing(column: Column) -> bytes:
    if column.missing is None:
        return _NULL
    serialized: bytes = value_encoder(column.type)(column.missing).SerializeToString()
    return serialized


# The native plan's column kinds (fabric/rpc/_wire.c names the same numbers).
_NATIVE_PYTHON = 0
_NATIVE_INTEGER = 1
_NATIVE_TEXT = 2
_NATIVE_BOOLEAN = 3
_NATIVE_DECIMAL = 4
_NATIVE_DOUBLE = 5
_NATIVE_TIMESTAMPTZ = 6
_NATIVE_JSON = 7
_NATIVE_UUID = 8

_EPOCH_NAIVE = datetime(1970, 1, 1)
# Integers the native plan writes as they are: each kind's range, where the Python writer's
# decoder accepts exactly the integers in it (for dates and timestamps: what Python can hold).
_INTEGERS: dict[str, tuple[int, int, int]] = {
    "int2": (0x18, -(2**15), 2**15 - 1),
    "int4": (0x18, -(2**31), 2**31 - 1),
    "int8": (0x18, -(2**63), 2**63 - 1),
    "date": (
        0x48,
        date.min.toordinal() - _EPOCH_NAIVE.toordinal(),
        date.max.toordinal() - _EPOCH_NAIVE.toordinal(),
    ),
    "time": (0x50, 0, 86_400_000_000 - 1),
    "timestamp": (
        0x58,
        (datetime.min - _EPOCH_NAIVE) // timedelta(microseconds=1),
        (datetime.max - _EPOCH_NAIVE) // timedelta(microseconds=1),
    ),
}
_NATIVE: dict[str, tuple[int, int]] = {
    "numeric": (_NATIVE_DECIMAL, 0x22),
    "float4": (_NATIVE_DOUBLE, 0x29),
    "float8": (_NATIVE_DOUBLE, 0x29),
    "text": (_NATIVE_TEXT, 0x32),
    "varchar": (_NATIVE_TEXT, 0x32),
    "bpchar": (_NATIVE_TEXT, 0x32),
    "bool": (_NATIVE_BOOLEAN, 0x10),
    "uuid": (_NATIVE_UUID, 0x42),
    "timestamptz": (_NATIVE_TIMESTAMPTZ, 0x60),
    "json": (_NATIVE_JSON, 0x72),
    "jsonb": (_NATIVE_JSON, 0x72),
}


def _native_kind(column: Column) -> tuple[int, int, int, int]:
    """The native plan's kind, Value tag and integer range for ``column``."""
    column_type = column.type
    # The same choice as _value_writer's: what it sends through the message encoder stays there.
    if column_type.is_array or column_type.base not in _DIRECT:
        return _NATIVE_PYTHON, 0, 0, 0
    if column_type.is_enum:
        return _NATIVE_TEXT, 0x32, 0, 0
    if column_type.base in _INTEGERS:
        tag, low, high = _INTEGERS[column_type.base]
        return _NATIVE_INTEGER, tag, low, high
    kind, tag = _NATIVE.get(column_type.base, (_NATIVE_PYTHON, 0))
    return kind, tag, 0, 0


def _value_writer(table: str, column: Column) -> ValueWriter:
    column_type = column.type
    decode = column_decoder(table, column)

    def misfit(value: Any, why: str) -> MalformedEventError:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        return MalformedEventError(f"{table}.{column.name} ({column_type.pg_type}): {shown} {why}")

    if column_type.is_array or column_type.base not in _DIRECT:
        # Arrays, intervals and the rarer kinds: through psycopg values and the message encoder.
        encode = value_encoder(column_type)
        return lambda value: encode(decode(value)).SerializeToString()
    if column_type.is_enum:
        return _direct_text(decode)
    return _DIRECT[column_type.base](decode, misfit)


Misfit = Callable[[Any, str], MalformedEventError]
Decode = Callable[[Any], Any]


def _direct_int(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        # The range check of the column's type is the decoder's; it passes an int through.
        return b"\x18" + varint(decode(value))

    return write


def _direct_text(decode: Decode, misfit: Misfit | None = None) -> ValueWriter:
    def write(value: Any) -> bytes:
        if type(value) is not str:
            decode(value)  # raises, naming the column
        encoded: bytes = value.encode()
        return b"\x32" + varint(len(encoded)) + encoded

    return write


def _direct_bool(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        return b"\x10\x01" if decode(value) else b"\x10\x00"

    return write


_NUMERIC = re.compile(r"-?\d+(\.\d+)?")
_NUMERIC_SPECIAL = {
    "NAN": b"NaN",
    "POSITIVE_INFINITY": b"Infinity",
    "NEGATIVE_INFINITY": b"-Infinity",
}


def _direct_decimal(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        # Debezium's plain decimal text is the number with its scale, as Postgres prints it.
        if type(value) is str and _NUMERIC.fullmatch(value):
            encoded = value.encode()
        else:
            special = _NUMERIC_SPECIAL.get(value) if type(value) is str else None
            encoded = special or str(decode(value)).encode()
        return b"\x22" + varint(len(encoded)) + encoded

    return write


def _direct_double(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        return b"\x29" + _DOUBLE.pack(decode(value))

    return write


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _direct_date(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        decode(value)  # a day count Python's dates hold, as psycopg would load it
        return b"\x48" + varint(value)

    return write


def _direct_micros(tag: bytes) -> Callable[[Decode, Misfit], ValueWriter]:
    def build(decode: Decode, misfit: Misfit) -> ValueWriter:
        def write(value: Any) -> bytes:
            decode(value)  # range checks: a time of day, a timestamp Python can hold
            return tag + varint(value)

        return write

    return build


_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_from_iso = datetime.fromisoformat


def _direct_timestamptz(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        try:
            instant = _from_iso(value) if type(value) is str else None
        except ValueError:
            instant = None
        if instant is None or instant.tzinfo is None:
            instant = decode(value)  # raises, naming the column
        return b"\x60" + varint((instant - _EPOCH_UTC) // _MICRO)

    return write


def _direct_json(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        if type(value) is not str:
            decode(value)  # raises, naming the column
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            # orjson refuses what Postgres's JSON allows beyond 64-bit integers: let the
            # column's own decoder judge it.
            decode(value)
        encoded: bytes = value.encode()
        return b"\x72" + varint(len(encoded)) + encoded

    return write


def _direct_bytes(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        if type(value) is not str:
            decode(value)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):  # ValueError: not ASCII
            raise misfit(value, "is not base64") from None
        return b"\x3a" + varint(len(raw)) + raw

    return write


def _direct_uuid(decode: Decode, misfit: Misfit) -> ValueWriter:
    def write(value: Any) -> bytes:
        encoded = str(decode(value)).encode()
        return b"\x42" + varint(len(encoded)) + encoded

    return write


_DIRECT: dict[str, Callable[[Decode, Misfit], ValueWriter]] = {
    "int2": _direct_int,
    "int4": _direct_int,
    "int8": _direct_int,
    "numeric": _direct_decimal,
    "float4": _direct_double,
    "float8": _direct_double,
    "text": _direct_text,
    "varchar": _direct_text,
    "bpchar": _direct_text,
    "bool": _direct_bool,
    "uuid": _direct_uuid,
    "date": _direct_date,
    "time": _direct_micros(b"\x50"),
    "timestamp": _direct_micros(b"\x58"),
    "timestamptz": _direct_timestamptz,
    "json": _direct_json,
    "jsonb": _direct_json,
    "bytea": _direct_bytes,
}
