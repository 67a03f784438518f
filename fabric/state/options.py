"""RocksDB tuning for a partition store, as one frozen value with a single ``to_options()``.

Crash model. The write-ahead log is on and writes do not fsync (``sync=False``). Every commit is
handed to the operating system before ``commit`` returns, so it survives the process dying at any
instant (``kill -9``, OOM kill). It does not survive the machine dying (power loss, kernel panic):
the store may then lose its most recent commits. Because a commit writes the rows and the applied
offset in one ``WriteBatch``, a lost tail takes both with it, and recovery (point-in-time) leaves a
store whose offset is older but still names exactly the rows it holds; the materializer resumes
from ``applied_offset() + 1`` and replays what was lost from the compacted topic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    DBRecoveryMode,
    Options,
    WriteOptions,
)

MiB = 1024 * 1024
_KEPT_INFO_LOGS = 3

Compression = Literal["lz4", "zstd", "none"]


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How every partition store of one process is tuned.

    ``shared_block_cache`` makes all stores opened with the same ``block_cache_bytes`` share one
    LRU cache, so a process with many assigned partitions has one memory budget for reads instead
    of one per partition; the row cache is always shared that way.

    ``row_cache_bytes`` sizes RocksDB's row cache (0: none): a point read of a row found there
    skips the data block, its index and its bloom filter. Lookups are point reads, and on a busy
    machine each of those structures is a cold-cache walk, so a cached row costs a fraction of
    a read through the blocks (docs/performance.md).
    """

    write_buffer_bytes: int = 64 * MiB
    max_write_buffers: int = 3
    block_cache_bytes: int = 128 * MiB
    shared_block_cache: bool = True
    row_cache_bytes: int = 256 * MiB
    # Per store: the record cache of fabric.state.cache (0: none).
    record_cache_bytes: int = 32 * MiB
    compression: Compression = "lz4"
    bottommost_compression: Compression = "zstd"
    background_jobs: int = 2
    wal: bool = True
    sync: bool = False

    def __post_init__(self) -> None:
        if self.write_buffer_bytes <= 0 or self.block_cache_bytes <= 0:
            raise ValueError("write_buffer_bytes and block_cache_bytes must be positive")
        if self.row_cache_bytes < 0 or self.record_cache_bytes < 0:
            raise ValueError("row_cache_bytes and record_cache_bytes must be 0 (none) or more")
        if self.max_write_buffers < 2:
            raise ValueError("max_write_buffers must be at least 2 so flushes do not stall writes")

    def to_options(self) -> Options:
        """RocksDB options in raw mode: keys and values are bytes, the fabric encodes itself."""
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.create_missing_column_families(True)
        options.set_write_buffer_size(self.write_buffer_bytes)
        options.set_max_write_buffer_number(self.max_write_buffers)
        options.set_max_background_jobs(self.background_jobs)
        options.set_compression_type(_compression(self.compression))
        options.set_bottommost_compression_type(_compression(self.bottommost_compression))
        # Point-in-time recovery stops replay at the first damaged WAL record, which keeps the
        # rows-and-offset batches whole: a machine crash costs a tail, never a torn batch.
        options.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
        # RocksDB starts a new info log at every open and keeps the old ones by default: a
        # store reopened at each restart or handover would gather them without end.
        options.set_keep_log_file_num(_KEPT_INFO_LOGS)
        table = BlockBasedOptions()
        table.set_block_cache(
            _shared_cache("block", self.block_cache_bytes)
            if self.shared_block_cache
            else Cache(self.block_cache_bytes)
        )
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        if self.row_cache_bytes:
            options.set_row_cache(_shared_cache("row", self.row_cache_bytes))
        return options

    def to_write_options(self) -> WriteOptions:
        """Per-commit durability: the WAL and fsync live on write options in RocksDB."""
        write = WriteOptions()
        # rocksdict's stub declares a method; the binding exposes a settable property.
        write.disable_wal = not self.wal  # type: ignore[method-assign, assignment]
        write.sync = self.sync
        return write


@functools.cache
def _shared_cache(kind: str, capacity: int) -> Cache:
    return Cache(capacity)


def _compression(name: Compression) -> DBCompressionType:
    if name == "lz4":
        return DBCompressionType.lz4()
    if name == "zstd":
        return DBCompressionType.zstd()
    return DBCompressionType.none()
