"""PartitionStore and StoredRow against a real RocksDB in tmp_path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from fabric.errors import StoreCorruptError, StoreError
from fabric.state import PartitionStore, StoredRow, StoreOptions
from fabric.state.store import META_CF

SMALL = StoreOptions(write_buffer_bytes=1 << 20, block_cache_bytes=1 << 20)
REPO = Path(__file__).resolve().parents[2]


def key(n: int) -> bytes:
    return b'{"id":%d}' % n


def row(offset: int, lsn: int | None = 100, image: bytes = b'{"id":1,"name":"a"}') -> StoredRow:
    return StoredRow(lsn=lsn, commit_ts_ms=1_764_000_000_123, offset=offset, image=image)


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., PartitionStore]]:
    opened: list[PartitionStore] = []

    def factory(path: Path | None = None) -> PartitionStore:
        store = PartitionStore.open(path or tmp_path / "store", SMALL)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def commit_rows(store: PartitionStore, rows: dict[bytes, StoredRow], offset: int) -> None:
    batch = store.batch()
    for k, r in rows.items():
        batch.put(k, r)
    store.commit(batch, offset)


# -- StoredRow -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        StoredRow(lsn=24023128, commit_ts_ms=1764000000123, offset=7, image=b'{"a":1}'),
        StoredRow(lsn=None, commit_ts_ms=None, offset=0, image=b""),
        StoredRow(lsn=0, commit_ts_ms=0, offset=2**63 - 1, image=b"\x00\xff"),
        StoredRow(lsn=None, commit_ts_ms=5, offset=3, image=b"{}"),
    ],
)
def test_row_round_trip(stored: StoredRow) -> None:
    assert StoredRow.decode(stored.encode()) == stored


def test_row_header_is_26_bytes() -> None:
    assert len(StoredRow(lsn=1, commit_ts_ms=2, offset=3, image=b"xyz").encode()) == 29


def test_row_short_data_is_corrupt() -> None:
    with pytest.raises(StoreCorruptError, match="shorter than its 26-byte header"):
        StoredRow.decode(b"\x01\x00\x00")


def test_row_unknown_version_is_corrupt() -> None:
    data = bytearray(row(1).encode())
    data[0] = 9
    with pytest.raises(StoreCorruptError, match="version 9"):
        StoredRow.decode(bytes(data))


def test_row_unknown_flag_is_corrupt() -> None:
    data = bytearray(row(1).encode())
    data[1] = 0x80
    with pytest.raises(StoreCorruptError, match="flags 0x80"):
        StoredRow.decode(bytes(data))


def test_row_offset_out_of_range_is_value_error() -> None:
    with pytest.raises(ValueError, match="int64"):
        StoredRow(lsn=None, commit_ts_ms=None, offset=2**63, image=b"").encode()


# -- reads and writes ------------------------------------------------------------------------


def test_new_store_is_empty(open_store: Callable[..., PartitionStore]) -> None:
    store = open_store()
    assert store.applied_offset() is None
    assert store.truncate_watermark() is None
    assert store.get(key(1)) is None
    assert list(store.scan()) == []
    assert store.count_estimate() == 0


def test_put_get_delete(open_store: Callable[..., PartitionStore]) -> None:
    store = open_store()
    commit_rows(store, {key(1): row(0), key(2): row(1, lsn=None)}, offset=1)
    assert store.get(key(1)) == row(0)
    assert store.get(key(2)) == row(1, lsn=None)
    batch = store.batch()
    batch.delete(key(1))
    assert len(batch) == 1
    store.commit(batch, 2)
    assert store.get(key(1)) is None
    assert store.applied_offset() == 2


def test_offset_and_rows_survive_reopen_together(
    tmp_path: Path, open_store: Callable[..., PartitionStore]
) -> None:
    store = open_store()
    commit_rows(store, {key(n): row(n) for n in range(10)}, offset=9)
    store.close()
    reopened = open_store()
    assert reopened.applied_offset() == 9
    assert [r.offset for _, r in reopened.scan()] == sorted(range(10), key=key)


def test_offset_only_moves_forward(open_store: Callable[..., PartitionStore]) -> None:
    store = open_store()
    commit_rows(store, {key(1): row(5)}, offset=5)
    store.commit(store.batch(), 5)
    with pytest.raises(
        StoreError, match=r"offset 4 would move store .* back from applied offset 5"
    ):
        commit_rows(store, {key(2): row(4)}, offset=4)
    assert store.get(key(2)) is None
    assert store.applied_offset() == 5


def test_batch_commits_once(open_store: Callable[..., PartitionStore]) -> None:
    store = open_store()
    batch = store.batch()
    batch.put(key(1), row(0))
    store.commit(batch, 0)
    with pytest.raises(StoreError, match="batch already committed"):
        store.commit(batch, 1)


def test_get_many_keeps_order_with_missing_keys(
    open_store: Callable[..., PartitionStore],
) -> None:
    store = open_store()
    commit_rows(store, {key(1): row(1), key(3): row(3)}, offset=3)
    assert store.get_many([key(3), key(2), key(1), key(3)]) == [row(3), None, row(1), row(3)]
    assert store.get_many([]) == []


def test_scan_is_in_key_byte_order_with_range_and_limit(
    open_store: Callable[..., PartitionStore],
) -> None:
    store = open_store()
    commit_rows(store, {key(n): row(n) for n in (1, 2, 9, 10, 11)}, offset=11)
    # Byte order, not numeric order: '0' (0x30) sorts before '}' (0x7d), so 10 < 11 < 1 < 2.
    assert [k for k, _ in store.scan()] == [key(10), key(11), key(1), key(2), key(9)]
    assert [k for k, _ in store.scan(start=key(11), end=key(9))] == [key(11), key(1), key(2)]
    assert [k for k, _ in store.scan(start=key(1), limit=2)] == [key(1), key(2)]
    assert list(store.scan(limit=0)) == []
    assert [r for _, r in store.scan(start=key(9))] == [row(9)]


def test_scan_reads_a_snapshot(open_store: Callable[..., PartitionStore]) -> None:
    store = open_store()
    commit_rows(store, {key(1): row(1), key(2): row(2)}, offset=2)
    scan = store.scan()
    assert next(scan) == (key(1), row(1))
    commit_rows(store, {key(3): row(3)}, offset=3)
    assert list(scan) == [(key(2), row(2))]


def test_truncate_below(open_store: Callable[..., PartitionStore]) -> None:
    store = open_store()
    rows = {key(1): row(1, lsn=50), key(2): row(2, lsn=100), key(3): row(3, lsn=150)}
    rows[key(4)] = row(4, lsn=None)
    commit_rows(store, rows, offset=4)
    assert store.truncate_below(100) == 2
    assert [k for k, _ in store.scan()] == [key(2), key(3)]
    assert store.truncate_watermark() == 100
    assert store.applied_offset() == 4
    # A replayed, older marker deletes nothing newer and leaves the watermark where it was.
    assert store.truncate_below(60) == 0
    assert store.truncate_watermark() == 100
    store.close()
    assert open_store().truncate_watermark() == 100


def test_batch_truncate_watermark_keeps_the_highest(
    open_store: Callable[..., PartitionStore],
) -> None:
    store = open_store()
    batch = store.batch()
    batch.set_truncate_watermark(300)
    batch.set_truncate_watermark(200)
    store.commit(batch, 0)
    assert store.truncate_watermark() == 300
    batch = store.batch()
    batch.set_truncate_watermark(250)
    store.commit(batch, 1)
    assert store.truncate_watermark() == 300


# -- lifecycle and errors --------------------------------------------------------------------


def test_second_open_names_the_holder_and_path(
    tmp_path: Path, open_store: Callable[..., PartitionStore]
) -> None:
    path = tmp_path / "store"
    open_store(path)
    with pytest.raises(StoreError, match="another instance holds store") as info:
        PartitionStore.open(path, SMALL)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is not None


def test_open_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SCRIPT, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(StoreError, match=f"another instance holds store {path}"):
            PartitionStore.open(path, SMALL)
    finally:
        holder.kill()
        holder.wait()


def test_closed_store_refuses_reads(open_store: Callable[..., PartitionStore]) -> None:
    store = open_store()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.get(key(1))


def test_close_waits_for_reads_in_flight_on_other_threads(
    open_store: Callable[..., PartitionStore],
) -> None:
    """A partition handed over while lookups read it: the close waits for reads already inside
    RocksDB, and every read after it is refused as closed."""
    import threading

    store = open_store()
    commit_rows(store, {key(n): row(n) for n in range(20_000)}, 20_000)
    keys = [key(n) for n in range(20_000)]
    failures: list[BaseException] = []
    reading = threading.Event()

    def read() -> None:
        try:
            while True:
                reading.set()
                store.get_many_stored(keys)
        except StoreError:
            pass  # closed
        except BaseException as exc:
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    reading.wait(5)
    store.close()
    for reader in readers:
        reader.join(10)
    assert failures == []
    assert not store.is_open


def test_close_releases_the_lock_and_destroy_removes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with PartitionStore.open(path, SMALL) as store:
        commit_rows(store, {key(1): row(1)}, offset=1)
    with PartitionStore.open(path, SMALL) as store:
        assert store.get(key(1)) == row(1)
    PartitionStore.destroy(path)
    with PartitionStore.open(path, SMALL) as store:
        assert store.applied_offset() is None
        assert store.get(key(1)) is None


def test_corrupt_stored_row_raises(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with PartitionStore.open(path, SMALL) as store:
        commit_rows(store, {key(1): row(1)}, offset=1)
    raw = Rdict(
        str(path), Options(raw_mode=True), column_families={META_CF: Options(raw_mode=True)}
    )
    raw[key(1)] = b"\x07garbage-header-of-enough-length-to-unpack"
    raw.close()
    with PartitionStore.open(path, SMALL) as store:
        with pytest.raises(StoreCorruptError, match="version 7"):
            store.get(key(1))
        with pytest.raises(StoreCorruptError):
            list(store.scan())


def test_corrupt_metadata_raises_on_open(tmp_path: Path) -> None:
    path = tmp_path / "store"
    PartitionStore.open(path, SMALL).close()
    raw = Rdict(
        str(path), Options(raw_mode=True), column_families={META_CF: Options(raw_mode=True)}
    )
    meta = raw.get_column_family(META_CF)
    meta[b"applied_offset"] = b"\x01"
    del meta
    raw.close()
    with pytest.raises(StoreCorruptError, match="applied_offset"):
        PartitionStore.open(path, SMALL)


# -- crash -----------------------------------------------------------------------------------

_HOLD_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fabric.state import PartitionStore, StoreOptions
    store = PartitionStore.open(Path(sys.argv[1]), StoreOptions(1 << 20, 2, 1 << 20))
    print("open", flush=True)
    sys.stdin.read()
    """
)

_WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fabric.state import PartitionStore, StoredRow, StoreOptions
    store = PartitionStore.open(Path(sys.argv[1]), StoreOptions(1 << 20, 2, 1 << 20))
    offset = -1 if store.applied_offset() is None else store.applied_offset()
    commits = 0
    while True:
        batch = store.batch()
        for _ in range(50):
            offset += 1
            image = b'{"id":%d,"pad":"%s"}' % (offset, b"x" * 200)
            batch.put(b'{"id":%d}' % offset, StoredRow(offset, None, offset, image))
        store.commit(batch, offset)
        commits += 1
        if commits % 20 == 0:
            print(offset, flush=True)
    """
)


def test_sigkill_leaves_exactly_the_rows_up_to_the_stored_offset(tmp_path: Path) -> None:
    path = tmp_path / "store"
    for _ in range(2):  # the second run resumes from the offset the first one left
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER_SCRIPT, str(path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        reported = [int(writer.stdout.readline()) for _ in range(10)]
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        assert writer.returncode == -signal.SIGKILL

        with PartitionStore.open(path, SMALL) as store:
            applied = store.applied_offset()
            assert applied is not None
            assert applied >= reported[-1]
            offsets = sorted(r.offset for _, r in store.scan())
            assert offsets == list(range(applied + 1))
            assert all(store.get(key(n)) is not None for n in (0, applied))
            assert store.get(key(applied + 1)) is None


def test_reopening_keeps_few_info_logs(tmp_path: Path) -> None:
    for _ in range(8):
        PartitionStore.open(tmp_path / "store", SMALL).close()
    assert len(list((tmp_path / "store").glob("LOG.old.*"))) <= 3
