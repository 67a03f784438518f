"""Postgres WAL positions (LSNs): the integer the fabric compares, and Postgres's ``X/Y`` text.

Postgres prints an LSN as two hexadecimal halves, ``16/B374D848``: the high and low 32 bits of
a 64-bit byte position in the WAL. Debezium carries the same position as an integer
(``source.lsn``, the ``lsn`` of its offsets). A consistency token is such a position.
"""

from __future__ import annotations

import re

from fabric.errors import InvalidLsnError

MAX_LSN = (1 << 64) - 1
_TEXT = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(token: int | str) -> int:
    """The integer of an LSN given as an integer, its decimal text, or Postgres's ``X/Y``."""
    if isinstance(token, bool):
        raise InvalidLsnError(f"consistency token {token!r} is not an LSN: give an int or 'X/Y'")
    if isinstance(token, int):
        value = token
    elif isinstance(token, str):
        text = token.strip()
        match = _TEXT.fullmatch(text)
        if match is not None:
            value = (int(match.group(1), 16) << 32) | int(match.group(2), 16)
        elif text.isdigit():
            value = int(text)
        else:
            raise InvalidLsnError(
                f"consistency token {token!r} is not an LSN: expected Postgres's form"
                " '16/B374D848' (as pg_current_wal_insert_lsn() prints it) or its integer"
            )
    else:
        raise InvalidLsnError(
            f"consistency token of type {type(token).__name__} is not an LSN: give an int or 'X/Y'"
        )
    if not 0 <= value <= MAX_LSN:
        raise InvalidLsnError(f"consistency token {token!r} is outside the 64-bit LSN range")
    return value


def format_lsn(lsn: int) -> str:
    """Postgres's text of an LSN: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
