# The native half of fabric.rpc.wire (fabric/rpc/_wire.c).
from collections.abc import Callable
from typing import Any

# name, Field prefix, kind, Value tag, integer range, Python writer, TOAST spellings, missing
Column = tuple[str, bytes, int, int, int, int, Callable[[Any], bytes], tuple[object, ...], bytes]

class RowPlan:
    def __init__(
        self,
        columns: tuple[Column, ...],
        loads: Callable[[Any], Any],
    ) -> None: ...
    def row(self, document: Any, ignore_unknown: bool, /) -> bytes | None: ...
    def scan(self, image: bytes, /) -> bytes | None: ...
    def answer(
        self,
        stored: bytes | None,
        partition: int,
        applied_offset: int,
        lag_records: int,
        served_by: bytes,
        lookup: bool,
        /,
    ) -> bytes | None: ...
    def lookup_results(
        self,
        stored: list[bytes | None],
        partition: int,
        applied_offset: int,
        lag_records: int,
        served_by: bytes,
        /,
    ) -> list[bytes | None]: ...

def frame_repeated(messages: list[bytes], field: int, /) -> bytes: ...
def split_repeated(message: bytes, field: int, /) -> list[bytes] | None: ...
