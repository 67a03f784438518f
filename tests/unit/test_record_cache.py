"""The record cache in front of a partition store never answers what the store no longer holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric.state import PartitionStore, StoredRow, StoreOptions
from fabric.state.cache import RecordCache

OPTIONS = StoreOptions(write_buffer_bytes=1 << 20, block_cache_bytes=1 << 20)


def value(offset: int) -> StoredRow:
    return StoredRow(
        lsn=100 + offset, commit_ts_ms=1, offset=offset, image=b'{"id":1,"v":%d}' % offset
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore.open(tmp_path / "store", OPTIONS)
    yield opened
    opened.close()


def put(store: PartitionStore, key: bytes, offset: int) -> None:
    batch = store.batch()
    batch.put(key, value(offset))
    store.commit(batch, offset)


def test_a_write_replaces_a_cached_value(store: PartitionStore) -> None:
    put(store, b"k", 1)
    assert store.get_stored(b"k") == value(1).encode()
    assert store.get_stored(b"k") == value(1).encode()  # now from the cache
    put(store, b"k", 2)
    assert store.get_stored(b"k") == value(2).encode()
    assert store.get_many_stored([b"k", b"missing"]) == [value(2).encode(), None]


def test_a_delete_and_a_truncate_drop_cached_values(store: PartitionStore) -> None:
    put(store, b"a", 1)
    put(store, b"b", 2)
    assert store.get_many_stored([b"a", b"b"]) == [value(1).encode(), value(2).encode()]
    batch = store.batch()
    batch.delete(b"a")
    store.commit(batch, 3)
    assert store.get_stored(b"a") is None
    assert store.get_stored(b"b") == value(2).encode()
    store.truncate_below(10_000)
    assert store.get_stored(b"b") is None


def test_a_closed_store_answers_nothing_from_its_cache(store: PartitionStore) -> None:
    put(store, b"k", 1)
    store.get_stored(b"k")
    store.close()
    with pytest.raises(Exception, match="closed"):
        store.get_stored(b"k")


def test_a_value_read_before_a_write_is_not_filled_after_it() -> None:
    cache = RecordCache(1 << 20)
    before = cache.epoch()
    cache.begin_write()
    during = cache.epoch()
    cache.end_write([b"k"])
    cache.fill(before, b"k", b"old")
    cache.fill(during, b"k", b"old")
    assert cache.get(b"k") is None
    cache.fill(cache.epoch(), b"k", b"new")
    assert cache.get(b"k") == b"new"


def test_the_oldest_entries_leave_when_full() -> None:
    cache = RecordCache(1_000)
    for n in range(20):
        cache.fill(cache.epoch(), b"%02d" % n, b"x" * 100)
    assert 0 < len(cache) < 20
    assert cache.get(b"19") is not None
    assert cache.get(b"00") is None
    assert RecordCache(0).get(b"00") is None


def test_readers_racing_a_writer_end_with_its_last_value(store: PartitionStore) -> None:
    """Readers fill the cache while the writer rewrites the same keys; once the writer is done,
    every key reads as its last write, from the cache or not."""
    keys = [b"k%d" % n for n in range(8)]
    for offset, key in enumerate(keys):
        put(store, key, offset)
    done = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not done.is_set():
                store.get_many_stored(keys)
                for key in keys:
                    store.get_stored(key)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    offset = len(keys)
    last: dict[bytes, int] = {}
    for _ in range(300):
        batch = store.batch()
        for key in keys[offset % 3 :: 2]:
            batch.put(key, value(offset))
            last[key] = offset
        store.commit(batch, offset)
        offset += 1
    done.set()
    for reader in readers:
        reader.join()
    assert not errors
    for key, wrote in last.items():
        assert store.get_stored(key) == value(wrote).encode(), key
