"""Key values as Postgres matches, reads and orders them."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from fabric.errors import UnsupportedQueryError

_INT_RANGES = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar"})
_BOOL_WORDS = {
    **dict.fromkeys(("t", "true", "y", "yes", "on", "1"), True),
    **dict.fromkeys(("f", "false", "n", "no", "off", "0"), False),
}


class KeyColumnType(Protocol):
    """What planning needs of a key column (the topology's ``KeyColumn`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def pg_type(self) -> str: ...
    @property
    def base_type(self) -> str: ...
    @property
    def is_enum(self) -> bool: ...


def key_values(values: Sequence[Any], column: KeyColumnType) -> list[Any]:
    """The values that can match ``column``: NULLs, out-of-range integers and duplicates go."""
    kept: list[Any] = []
    seen: set[Any] = set()
    base = "text" if column.is_enum else column.base_type
    for given in values:
        if given is None:
            continue
        value = coerce_key_value(given, base, column.pg_type, column.name)
        bound = _INT_RANGES.get(base)
        if bound is not None and isinstance(value, int) and not -bound <= value < bound:
            continue
        marker = (type(value), value) if not isinstance(value, Decimal) else value
        try:
            if marker in seen:
                continue
            seen.add(marker)
        except TypeError:  # unhashable (a key type the server refuses): let it say why
            pass
        kept.append(value)
    return kept


def coerce_key_value(value: Any, base_type: str, pg_type: str, column: str = "") -> Any:
    """``value`` as the Python type of a key column, reading a ``str`` as Postgres reads a quoted
    literal of that type (``'42'`` for a bigint is 42). Other values pass as they are: the key
    codec checks them. Raises :class:`UnsupportedQueryError` for a string this module cannot
    read as the column's type."""
    if not isinstance(value, str) or base_type in _TEXT_TYPES:
        if isinstance(value, int) and not isinstance(value, bool) and base_type == "float8":
            return float(value)
        return value
    text = value.strip()
    reader = _STRING_READERS.get(base_type)
    try:
        if reader is not None:
            return reader(text)
    except (ValueError, InvalidOperation, KeyError):
        pass
    # Postgres reads more spellings than these readers (dates especially): never call a
    # string invalid here, let Postgres (the fallback) decide.
    raise UnsupportedQueryError(
        f"cannot read {value!r:.40} as {pg_type}"
        + (f" for the key column {column}" if column else "")
        + ": pass a value of its Python type"
    )


def _read_int(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(text)
    return int(text)


_STRING_READERS: dict[str, Callable[[str], Any]] = {
    "int2": _read_int,
    "int4": _read_int,
    "int8": _read_int,
    "numeric": Decimal,
    "float8": float,
    "uuid": uuid.UUID,
    "date": date.fromisoformat,
    "bool": lambda text: _BOOL_WORDS[text.lower()],
}


def sort_key(column: KeyColumnType) -> Callable[[Any], Any]:
    """Postgres's order for the column's values: NaN sorts above every number, ``character(n)``
    ignores its padding, text compares by code point (the ``C`` collation)."""
    if column.base_type in ("numeric", "float8", "float4"):
        return lambda v: (1, 0) if _is_nan(v) else (0, v)
    if column.base_type == "bpchar":
        return lambda v: v.rstrip(" ")
    return lambda v: v


def _is_nan(value: Any) -> bool:
    return (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, Decimal) and value.is_nan()
    )
