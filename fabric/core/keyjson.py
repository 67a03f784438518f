"""Record keys as Kafka Connect's JsonConverter writes them, so a router can rebuild the key bytes.

Debezium's key is a Connect ``Struct`` of the primary-key columns in the constraint's order; the
key converter (``JsonConverter``, ``schemas.enable=false``) turns it into a Jackson ``ObjectNode``
and serializes it with ``ObjectMapper.writeValueAsBytes``, that is with jackson-core's
``UTF8JsonGenerator`` at default settings. :func:`encode_key` reproduces those bytes exactly, so
that :func:`fabric.core.partitioner.partition_for` picks the partition Connect's producer picked.

Jackson's output, read from jackson-core 2.x (``CharTypes.sOutputEscapes128``,
``UTF8JsonGenerator._writeStringSegment2``, ``_outputMultiByteChar``, ``_writeGenericEscape``,
``writeNumber(double)``; the Connect worker here ships jackson-core 2.21.2) and confirmed
byte for byte against connect-json 4.3.1 on JDK 25:

- Compact: no spaces; fields in the given order; field names escaped like string values.
- Strings: ``"`` and ``\\`` become ``\\"`` and ``\\\\``; the control characters U+0008, U+0009,
  U+000A, U+000C and U+000D become ``\\b \\t \\n \\f \\r``; every other character below U+0020
  becomes ``\\u00XX`` with upper-case hex (``\\u001F``). Nothing else in ASCII is escaped: ``/``
  and DEL (U+007F) are written raw.
- Non-ASCII BMP characters, U+2028 and U+2029 included, are written raw as UTF-8.
- A character outside the BMP (an emoji) is two UTF-16 surrogates in a Java string, and Jackson
  escapes each surrogate on its own with upper-case hex: U+1F600 becomes ``\\uD83D\\uDE00``
  (``COMBINE_UNICODE_SURROGATES_IN_UTF8`` is off by default). A lone surrogate in a Python string
  is escaped the same way, as Jackson would escape it in a Java string.
- Integers: plain decimal. Connect has no integer wider than INT64, so a larger ``int`` cannot be
  a key Connect wrote and is rejected.
- Doubles (FLOAT64 columns): ``Double.toString``. Since JDK 19 that is the shortest decimal that
  round-trips (the digits of Python's ``repr``), laid out Java's way: plain for
  ``1e-3 <= |x| < 1e7`` with at least one fractional digit (``0.001``, ``1234567.0``), otherwise
  ``d.dddE±n`` (``1.0E7``, ``1.0E-5``); ``-0.0`` stays ``-0.0``. One more rule: when a single
  digit would do, Java picks the closest decimal of one *or two* digits, which matters only for
  subnormals (``Double.MIN_VALUE`` is ``4.9E-324``, not ``5e-324``). JDK 17 and earlier print
  some doubles differently (``2.0E23`` was ``1.9999999999999998E23``): keys with double columns
  match only a Connect worker on JDK 19 or later.
- NaN and ±Infinity are written as JSON *strings* ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
  (``QUOTE_NON_NUMERIC_NUMBERS`` is on by default).
- BYTES (``bytea`` and ``decimal.handling.mode=precise`` values): base64, standard alphabet,
  padded, no line breaks, as a JSON string.

A REAL (FLOAT32) column is written with ``Float.toString``, which this module does not model: a
Python ``float`` is always treated as a FLOAT64.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import TypeAlias

KeyValue: TypeAlias = "bool | int | float | str | bytes | None"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_SMALLEST_NORMAL = 2.2250738585072014e-308

# Characters Jackson escapes, plus every character outside the BMP and every surrogate, which
# Jackson sees as UTF-16 surrogates and escapes one by one.
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f\ud800-\udfff\U00010000-\U0010ffff]')
# The same set restricted to ASCII: the whole check for the common all-ASCII string.
_NEEDS_ESCAPE_ASCII = re.compile('["\\\\\x00-\x1f]')

_ESCAPES: dict[str, str] = {chr(c): f"\\u{c:04X}" for c in range(0x20)} | {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    escaped = _ESCAPES.get(char)
    if escaped is not None:
        return escaped
    code = ord(char)
    if code < 0x10000:  # a lone surrogate
        return f"\\u{code:04X}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04X}\\u{0xDC00 | (code & 0x3FF):04X}"


def _quote(text: str) -> str:
    """``text`` as a JSON string literal, escaped as Jackson escapes it."""
    if text.isascii():
        if _NEEDS_ESCAPE_ASCII.search(text) is None:
            return '"' + text + '"'
    elif _NEEDS_ESCAPE.search(text) is None:
        return '"' + text + '"'
    return '"' + _NEEDS_ESCAPE.sub(_escape_match, text) + '"'


# Field names repeat on every key of a table; caching their quoted form saves the escape check.
_quote_name = lru_cache(maxsize=4096)(_quote)


def _java_double(x: float) -> str:
    """``x`` as JDK 19+ ``Double.toString`` prints it; ``x`` is finite."""
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    digits, exp = _shortest_digits(abs(x))
    if 0 <= exp < 7:
        whole = digits[: exp + 1].ljust(exp + 1, "0")
        return f"{sign}{whole}.{digits[exp + 1 :] or '0'}"
    if -3 <= exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exp}"


def _shortest_digits(x: float) -> tuple[str, int]:
    """Java's decimal for positive finite ``x``: significant digits ``d1d2...`` and the exponent
    ``e`` of ``d1.d2... * 10**e``, without trailing zeros."""
    text = repr(x)
    mantissa, _, exp_text = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    if whole != "0":
        digits = whole + fraction
        exp = len(whole) - 1
    else:
        stripped = fraction.lstrip("0")
        digits = stripped
        exp = len(stripped) - len(fraction) - 1
    if exp_text:
        exp += int(exp_text)
    digits = digits.rstrip("0")
    if len(digits) == 1 and x < _SMALLEST_NORMAL:
        return _closest_of_two_digits(x, digits, exp)
    return digits, exp


def _closest_of_two_digits(x: float, digit: str, exp: int) -> tuple[str, int]:
    """Java's rule when one digit round-trips: pick the closest decimal of length 1 or 2.

    Only subnormals have a rounding interval wide enough to hold another 2-digit decimal. When
    ``x`` lies below the decade of the 1-digit decimal (``1e-323`` for ``9.88e-324``), the 2-digit
    neighbours are those of the decade below (``9.9e-324``).
    """
    exact = Fraction(x)
    one_digit = int(digit) * Fraction(10) ** exp
    scale = exp - 1 if exact >= Fraction(10) ** exp else exp - 2
    nearest = round(exact / Fraction(10) ** scale)
    if not 10 <= nearest <= 99 or nearest % 10 == 0:
        return digit, exp
    two_digits = nearest * Fraction(10) ** scale
    if abs(two_digits - exact) < abs(one_digit - exact) and float(f"{nearest}e{scale}") == x:
        return str(nearest), scale + 1
    return digit, exp


def _encode_other(name: str, value: object) -> str:
    """The JSON text of a value that is not a plain ``int`` or ``str``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return _encode_int(name, int(value))
    if isinstance(value, str):
        return _quote(str(value))
    if isinstance(value, float):
        number = float(value)
        if math.isfinite(number):
            return _java_double(number)
        if math.isnan(number):
            return '"NaN"'
        return '"Infinity"' if number > 0 else '"-Infinity"'
    if isinstance(value, bytes | bytearray):
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    raise TypeError(
        f"key field {name!r} has a value of type {type(value).__name__}; "
        "expected None, bool, int, float, str or bytes"
    )


def _encode_int(name: str, value: int) -> str:
    if _INT64_MIN <= value <= _INT64_MAX:
        return str(value)
    raise ValueError(f"key field {name!r} is {value}, outside Connect's INT64 range")


def encode_key(fields: Sequence[tuple[str, KeyValue]]) -> bytes:
    """Return the UTF-8 key bytes Connect's JsonConverter writes for a key with these fields.

    ``fields`` are ``(column, value)`` pairs in the primary-key constraint's order, which is the
    order of the JSON object. Values map as: ``None`` to ``null``; ``bool`` to ``true``/``false``;
    ``int`` (within INT64) to decimal; ``float`` to Java's ``Double.toString`` (non-finite values
    as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``); ``str`` to a Jackson-escaped
    string; ``bytes``/``bytearray`` to a padded standard base64 string. See the module docstring
    for the exact rules.

    Raises:
        TypeError: a value has another type; the message names the field.
        ValueError: an ``int`` is outside INT64, or a column name repeats.
    """
    parts: list[str] = []
    for name, value in fields:
        if type(value) is int:
            text = _encode_int(name, value)
        elif type(value) is str:
            text = _quote(value)
        else:
            text = _encode_other(name, value)
        parts.append(_quote_name(name) + ":" + text)
    if len(parts) > 1 and len({name for name, _ in fields}) != len(parts):
        names = [name for name, _ in fields]
        raise ValueError(f"key has a repeated field name: {names}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def decode_key(data: bytes) -> dict[str, object]:
    """Parse key bytes into a dict whose order is the key's field order.

    The inverse of :func:`encode_key` up to JSON's loss of type: base64 ``bytes`` and non-finite
    doubles come back as strings, and an integral double such as ``1.0E10`` comes back as a float.

    Raises:
        ValueError: ``data`` is not UTF-8 JSON, or is JSON but not an object.
    """
    document = json.loads(data)
    if not isinstance(document, dict):
        raise ValueError(f"key is not a JSON object: {data[:80]!r}")
    return document
