"""The value stored for one row: where it came from, then its after-image.

Layout, little-endian, one fixed 26-byte header then the image::

    version u8 | flags u8 | lsn i64 | commit_ts_ms i64 | offset i64 | image bytes

A ``None`` LSN or commit time is a flag bit with a zero in its slot, so the header has one shape
and encodes and decodes with a single ``struct`` call.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from fabric.errors import StoreCorruptError

VERSION = 1
_HEADER = struct.Struct("<BBqqq")
_NO_LSN = 0x01
_NO_COMMIT_TS = 0x02
_KNOWN_FLAGS = _NO_LSN | _NO_COMMIT_TS


class StoredRow(NamedTuple):
    """One materialized row.

    ``offset`` is the Kafka offset of the record that wrote this image; ``image`` is the row's
    after-image as compact JSON bytes, stored exactly as the materializer hands it over.
    """

    lsn: int | None
    commit_ts_ms: int | None
    offset: int
    image: bytes

    def encode(self) -> bytes:
        flags = (_NO_LSN if self.lsn is None else 0) | (
            _NO_COMMIT_TS if self.commit_ts_ms is None else 0
        )
        try:
            header = _HEADER.pack(
                VERSION, flags, self.lsn or 0, self.commit_ts_ms or 0, self.offset
            )
        except struct.error as exc:
            raise ValueError(f"row position out of int64 range: {self!r:.200}") from exc
        return header + self.image

    @staticmethod
    def decode(data: bytes) -> StoredRow:
        """Decode stored bytes; raises :class:`StoreCorruptError` if they are not a stored row."""
        try:
            version, flags, lsn, commit_ts_ms, offset = _HEADER.unpack_from(data)
        except struct.error:
            raise StoreCorruptError(
                f"stored row is {len(data)} bytes, shorter than its {_HEADER.size}-byte header"
            ) from None
        if version != VERSION or flags & ~_KNOWN_FLAGS:
            raise StoreCorruptError(
                f"stored row has version {version} and flags {flags:#04x}; "
                f"this fabric reads version {VERSION}"
            )
        return StoredRow(
            None if flags & _NO_LSN else lsn,
            None if flags & _NO_COMMIT_TS else commit_ts_ms,
            offset,
            data[_HEADER.size :],
        )
