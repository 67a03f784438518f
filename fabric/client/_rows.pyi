# The native half of fabric.client.messages (fabric/client/_rows.c).
from collections.abc import Callable
from typing import Any

# lsn, commit_time_ms, partition, offset, applied_offset, lag_records, served_by
FreshnessFields = tuple[int, int, int, int, int, int, str]

def decode_results(
    answer: bytes, decoders: tuple[Callable[[Any], Any] | None, ...], /
) -> list[tuple[str, str, bool, dict[str, Any] | None, FreshnessFields]]: ...
