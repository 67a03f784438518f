"""The record cache in front of a partition store: stored values of recently read keys, in memory.

A lookup that finds its key here costs one dictionary read, where a read through RocksDB walks
its memtable, table cache and row cache; on a busy two-core machine each of those is a walk
through cold CPU caches that also evicts what the gRPC call around it needs next. The cache holds
values exactly as the store holds them and is never ahead of or behind it:

- A write invalidates before it is visible to anyone who consults the cache: the writer marks a
  write in progress, writes to RocksDB, drops the keys it wrote, and only then ends the mark.
- A reader that missed fills the cache only if no write began since it looked, checked and
  filled under the lock the writer drops keys under; so a value read before a write can never be
  put back after the write dropped it.

Bounded by bytes (keys and values), oldest entries out first. Misses are not cached: RocksDB's
bloom filter answers them cheaply.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

_ENTRY_OVERHEAD = 100  # bytes a dict slot and two bytes objects cost beyond their contents


class RecordCache:
    def __init__(self, capacity_bytes: int) -> None:
        self._capacity = capacity_bytes
        self._values: dict[bytes, bytes] = {}
        self._size = 0
        self._lock = threading.Lock()
        # Even between writes, odd during one: a reader's fill needs it unchanged and even.
        self._epoch = 0

    def get(self, key: bytes) -> bytes | None:
        return self._values.get(key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        get = self._values.get
        return [get(key) for key in keys]

    def epoch(self) -> int:
        """What a reader notes before reading the store, to :meth:`fill` with afterwards."""
        return self._epoch

    def fill(self, epoch: int, key: bytes, value: bytes) -> None:
        """Cache ``value``, read from the store after :meth:`epoch` returned ``epoch``, unless a
        write has begun since."""
        if not self._capacity or epoch % 2:
            return
        with self._lock:
            if self._epoch != epoch or key in self._values:
                return
            self._values[key] = value
            self._size += len(key) + len(value) + _ENTRY_OVERHEAD
            while self._size > self._capacity and self._values:
                old_key = next(iter(self._values))
                self._size -= len(old_key) + len(self._values.pop(old_key)) + _ENTRY_OVERHEAD

    def begin_write(self) -> None:
        with self._lock:
            self._epoch += 1

    def end_write(self, keys: Iterable[bytes] | None) -> None:
        """The write is in the store: drop ``keys`` (every key, for None) and end the mark."""
        with self._lock:
            if keys is None:
                self._values.clear()
                self._size = 0
            else:
                for key in keys:
                    value = self._values.pop(key, None)
                    if value is not None:
                        self._size -= len(key) + len(value) + _ENTRY_OVERHEAD
            self._epoch += 1

    def __len__(self) -> int:
        return len(self._values)
