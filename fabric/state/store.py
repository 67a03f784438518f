"""One RocksDB database per topic-partition: the materialized rows and the position they reflect.

Keys. A row's key is the Kafka record key, byte for byte. A table topic carries one table, and a
store holds one partition of one topic, so no table prefix is needed. Metadata lives apart from
rows, in the ``__meta__`` column family, so no record key can ever collide with it:

- ``applied_offset``: the offset of the last record applied (int64 big-endian). Offsets always
  represent the last applied record; the consumer resumes at ``applied_offset() + 1``.
- ``truncated_before_lsn``: the truncate watermark of the store's table (int64 big-endian).

Consistency. :meth:`PartitionStore.commit` writes the rows and the applied offset in one
``WriteBatch``: after any crash the store holds exactly the rows of the records up to its stored
offset (see :mod:`fabric.state.options` for what a machine crash costs). Reads see every committed
batch and never half of one; a single ``get`` needs no snapshot, and a ``scan`` iterates over the
implicit snapshot RocksDB takes when the iterator is created.

Reads go through a :class:`fabric.state.cache.RecordCache` of recently read values, which every
write invalidates before it ends; a read never sees a value the store no longer holds.

Errors. rocksdict raises bare ``Exception`` for RocksDB statuses; they are translated here, and
only here, into :class:`StoreError` and :class:`StoreCorruptError`.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import cast

from rocksdict import ColumnFamily, DbClosedError, Options, Rdict, WriteBatch, WriteOptions

from fabric.errors import StoreCorruptError, StoreError, StoreLockedError
from fabric.state.cache import RecordCache
from fabric.state.options import StoreOptions
from fabric.state.row import StoredRow

log = logging.getLogger(__name__)

META_CF = "__meta__"
_APPLIED_OFFSET = b"applied_offset"
_TRUNCATED_BEFORE_LSN = b"truncated_before_lsn"
_CLOSE_WAIT_S = 5.0  # for reads in flight on other threads to leave RocksDB
_INT64 = struct.Struct(">q")


class StoreBatch:
    """Row changes to commit together with the offset of the last record they apply.

    Holds no reference to a store: build it, then hand it to :meth:`PartitionStore.commit` once.
    """

    __slots__ = ("_batch", "_committed", "_keys", "_truncate_watermark")

    def __init__(self) -> None:
        self._batch = WriteBatch(raw_mode=True)
        self._truncate_watermark: int | None = None
        self._committed = False
        self._keys: list[bytes] = []  # written, for the record cache to drop

    def put(self, key: bytes, row: StoredRow) -> None:
        self._batch.put(key, row.encode())
        self._keys.append(key)

    def delete(self, key: bytes) -> None:
        self._batch.delete(key)
        self._keys.append(key)

    def set_truncate_watermark(self, lsn: int) -> None:
        """Record a truncate watermark; the store keeps the highest it has seen."""
        if self._truncate_watermark is None or lsn > self._truncate_watermark:
            self._truncate_watermark = lsn

    def __len__(self) -> int:
        """Number of row puts and deletes in the batch."""
        return len(self._keys)


class PartitionStore:
    """The materialized rows of one topic-partition, at one folder. Open with :meth:`open`.

    One process, one writer: RocksDB's LOCK file refuses a second opener, here or elsewhere.
    """

    def __init__(
        self,
        path: Path,
        db: Rdict,
        write_options: WriteOptions,
        applied_offset: int | None,
        truncate_watermark: int | None,
        *,
        record_cache_bytes: int = 0,
    ) -> None:
        self._path = path
        self._db: Rdict | None = db
        self._meta: Rdict | None = db.get_column_family(META_CF)
        self._meta_handle: ColumnFamily | None = db.get_column_family_handle(META_CF)
        self._write_options = write_options
        self._applied_offset = applied_offset
        self._truncate_watermark = truncate_watermark
        self._cache = RecordCache(record_cache_bytes)

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, options: StoreOptions) -> PartitionStore:
        """Open the store at ``path``, creating it (and its parent folders) if missing."""
        rocks_options = options.to_options()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = Rdict(str(path), rocks_options, column_families={META_CF: rocks_options})
        except OSError as exc:
            raise StoreError(f"cannot create the folder of store {path}: {exc}") from exc
        except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
            raise _translate(exc, path, "open") from exc
        try:
            meta = db.get_column_family(META_CF)
            applied = _read_int(meta, _APPLIED_OFFSET, path)
            watermark = _read_int(meta, _TRUNCATED_BEFORE_LSN, path)
            del meta
        except BaseException:
            db.close()
            raise
        store = cls(
            path,
            db,
            options.to_write_options(),
            applied,
            watermark,
            record_cache_bytes=options.record_cache_bytes,
        )
        log.info(
            "store opened path=%s applied_offset=%s truncated_before_lsn=%s",
            path,
            applied,
            watermark,
        )
        return store

    def close(self) -> None:
        """Close the store; idempotent. The LOCK is released once no scan iterator is alive."""
        db, self._db, self._meta, self._meta_handle = self._db, None, None, None
        if db is None:
            return
        self._cache = RecordCache(0)
        deadline = time.monotonic() + _CLOSE_WAIT_S
        while True:
            try:
                db.close()
                break
            except RuntimeError as exc:
                # A read that began before the store was marked closed is still inside RocksDB
                # on another thread, and rocksdict refuses to close under it ("Already
                # borrowed"); such a read ends within microseconds.
                if "borrowed" not in str(exc) or time.monotonic() > deadline:
                    raise _translate(exc, self._path, "close") from exc
                time.sleep(0.001)
            except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
                raise _translate(exc, self._path, "close") from exc
        log.info("store closed path=%s applied_offset=%s", self._path, self._applied_offset)

    def __enter__(self) -> PartitionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def destroy(path: Path) -> None:
        """Delete the store at ``path`` and every file RocksDB keeps for it. It must be closed."""
        try:
            Rdict.destroy(str(path), Options(raw_mode=True))
        except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
            raise _translate(exc, path, "destroy") from exc

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def path(self) -> Path:
        return self._path

    # -- reads -------------------------------------------------------------------------------

    def applied_offset(self) -> int | None:
        """Offset of the last record applied, ``None`` for a new store; resume at +1."""
        return self._applied_offset

    def truncate_watermark(self) -> int | None:
        """The LSN of the latest truncate applied: no row with a lower LSN is stored.

        A record that arrives later carrying an LSN below it predates the truncate; the
        materializer must not apply it.
        """
        return self._truncate_watermark

    def get(self, key: bytes) -> StoredRow | None:
        """The row stored under ``key``, or ``None`` if there is none."""
        value = self.get_stored(key)
        return None if value is None else StoredRow.decode(value)

    def get_stored(self, key: bytes) -> bytes | None:
        """:meth:`get` undecoded: the stored value (:class:`StoredRow`'s encoding)."""
        cache = self._cache
        value = cache.get(key)
        if value is not None:
            return value
        db = self._require_open()
        epoch = cache.epoch()
        try:
            value = db.get(key)
        except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
            raise _translate(exc, self._path, "read") from exc
        if value is not None:
            cache.fill(epoch, key, value)
        return value

    def get_many(self, keys: Sequence[bytes]) -> list[StoredRow | None]:
        """The rows under ``keys``, in the order of ``keys``, ``None`` where a key has none."""
        values = self.get_many_stored(keys)
        return [None if value is None else StoredRow.decode(value) for value in values]

    def get_many_stored(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`get_many` undecoded, as :meth:`get_stored`."""
        cache = self._cache
        values = cache.get_many(keys)
        missed = [index for index, value in enumerate(values) if value is None]
        if not missed:
            return values
        db = self._require_open()
        epoch = cache.epoch()
        try:
            read = cast("list[bytes | None]", db.get([keys[index] for index in missed]))
        except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
            raise _translate(exc, self._path, "read") from exc
        for index, value in zip(missed, read, strict=True):
            if value is not None:
                values[index] = value
                cache.fill(epoch, keys[index], value)
        return values

    def scan(
        self, start: bytes | None = None, end: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, StoredRow]]:
        """Rows with ``start <= key < end``, at most ``limit``, in the byte order of their keys.

        Byte order of the encoded keys is not SQL order: ``{"id":10}`` sorts before ``{"id":1}``.
        The scan reads one consistent snapshot taken when it starts. An unfinished scan keeps the
        database open: exhaust or ``close()`` it before closing the store.
        """
        if limit is not None and limit <= 0:
            return
        db = self._require_open()
        try:
            # Raw mode: every key and value is bytes.
            items = cast("Iterator[tuple[bytes, bytes]]", db.items(from_key=start))
        except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
            raise _translate(exc, self._path, "scan") from exc
        count = 0
        try:
            for key, value in items:
                if end is not None and key >= end:
                    return
                yield key, StoredRow.decode(value)
                count += 1
                if count == limit:
                    return
        finally:
            del items

    def count_estimate(self) -> int:
        """RocksDB's estimate of the number of rows; cheap, and approximate after deletes."""
        db = self._require_open()
        try:
            estimate = db.property_int_value("rocksdb.estimate-num-keys")
        except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
            raise _translate(exc, self._path, "read") from exc
        return int(estimate or 0)

    # -- writes ------------------------------------------------------------------------------

    def batch(self) -> StoreBatch:
        return StoreBatch()

    def commit(self, batch: StoreBatch, offset: int) -> None:
        """Apply ``batch`` and record ``offset`` as the last applied record, atomically.

        Offsets only move forward; committing the current offset again is allowed (an empty
        batch at the same position), a lower one raises :class:`StoreError`: it means a bug.
        """
        if batch._committed:
            raise StoreError(f"batch already committed to store {self._path}")
        current = self._applied_offset
        if offset < 0 or (current is not None and offset < current):
            raise StoreError(
                f"offset {offset} would move store {self._path} back from applied offset "
                f"{current}; offsets only move forward"
            )
        meta_handle = self._require_meta_handle()
        write = batch._batch
        write.put(_APPLIED_OFFSET, _INT64.pack(offset), meta_handle)
        watermark = self._merged_watermark(batch._truncate_watermark)
        if watermark != self._truncate_watermark:
            write.put(_TRUNCATED_BEFORE_LSN, _INT64.pack(watermark), meta_handle)
        self._write(write, "commit", batch._keys)
        batch._committed = True
        self._applied_offset = offset
        self._truncate_watermark = watermark
        log.debug("store commit path=%s offset=%d changes=%d", self._path, offset, len(batch))

    def truncate_below(self, lsn: int) -> int:
        """Apply a truncate marker: delete every row whose LSN is below ``lsn``; return how many.

        Afterwards only rows with ``lsn >= watermark`` survive, and the watermark is at least
        ``lsn``. Rows without an LSN are deleted: nothing shows they were written after the
        truncate. The deletes and the watermark are one atomic write, so a reader sees the table
        before or after the truncate, never between; the batch holds only the deleted keys. The
        applied offset does not change: the marker comes from another topic.
        """
        meta_handle = self._require_meta_handle()
        write = WriteBatch(raw_mode=True)
        deleted = 0
        for key, row in self.scan():
            if row.lsn is None or row.lsn < lsn:
                write.delete(key)
                deleted += 1
        watermark = self._merged_watermark(lsn)
        write.put(_TRUNCATED_BEFORE_LSN, _INT64.pack(watermark), meta_handle)
        self._write(write, "truncate", None)
        self._truncate_watermark = watermark
        log.info("store truncated path=%s below_lsn=%d deleted=%d", self._path, lsn, deleted)
        return deleted

    # -- internals ---------------------------------------------------------------------------

    def _merged_watermark(self, lsn: int | None) -> int | None:
        current = self._truncate_watermark
        if lsn is None:
            return current
        return lsn if current is None else max(current, lsn)

    def _write(self, write: WriteBatch, action: str, keys: list[bytes] | None) -> None:
        """Write ``write``, dropping ``keys`` (every key, for None) from the record cache."""
        db = self._require_open()
        cache = self._cache
        cache.begin_write()
        try:
            db.write(write, self._write_options)
        except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
            keys = None  # what the failed write left in RocksDB is unknown: drop everything
            raise _translate(exc, self._path, action) from exc
        finally:
            cache.end_write(keys)

    def _require_open(self) -> Rdict:
        if self._db is None:
            raise StoreError(f"store {self._path} is closed")
        return self._db

    def _require_meta_handle(self) -> ColumnFamily:
        if self._meta_handle is None:
            raise StoreError(f"store {self._path} is closed")
        return self._meta_handle


def _read_int(meta: Rdict, key: bytes, path: Path) -> int | None:
    try:
        value = meta.get(key)
    except Exception as exc:  # rocksdict reports every RocksDB status as a bare Exception
        raise _translate(exc, path, "read metadata of") from exc
    if value is None:
        return None
    if len(value) != _INT64.size:
        raise StoreCorruptError(f"store {path}: metadata {key!r} is {len(value)} bytes, not 8")
    return int(_INT64.unpack(value)[0])


def _translate(exc: Exception, path: Path, action: str) -> StoreError:
    message = str(exc)
    if isinstance(exc, DbClosedError):
        return StoreError(f"store {path} is closed; cannot {action} it")
    if "LOCK" in message and ("lock" in message.lower()):
        return StoreLockedError(
            f"another instance holds store {path} (its LOCK file is taken); stop that instance "
            f"or give this one another state folder"
        )
    if message.startswith("Corruption"):
        return StoreCorruptError(
            f"store {path} is corrupt ({message}); destroy it and rebuild it from the topic"
        )
    return StoreError(f"cannot {action} store {path}: {message}")
