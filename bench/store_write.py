"""Write throughput of a PartitionStore: puts of ~300-byte rows in batches, each batch committed
with its offset. Printed beside it, measured in the same run: raw rocksdict puts of the same
bytes in batches of the same size with the same RocksDB options, without the row header and
without the offset — the floor our encoding and bookkeeping add to.

Each run writes into a fresh folder; the figure is the median of the runs. Resident memory is the
process's peak (``ru_maxrss``) after all runs; on-disk size is measured after close.

    .venv/bin/python -m bench.store_write [--rows 1000000] [--batch 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rocksdict import Rdict, WriteBatch

from fabric.state import PartitionStore, StoredRow, StoreOptions

OPTIONS = StoreOptions()
PAD = b"x" * 230


def _key(n: int) -> bytes:
    # Spread keys over the key space, as hashed partitioning leaves them, not in insert order.
    return b'{"id":%d}' % ((n * 2654435761) % 2**32)


def _image(n: int) -> bytes:
    return b'{"id":%d,"name":"user-%d","email":"u%d@example.com","bio":"%s"}' % (n, n, n, PAD)


def write_store(path: Path, rows: int, batch_size: int) -> None:
    with PartitionStore.open(path, OPTIONS) as store:
        for first in range(0, rows, batch_size):
            batch = store.batch()
            last = min(first + batch_size, rows)
            for n in range(first, last):
                batch.put(_key(n), StoredRow(n + 1000, 1_764_000_000_000 + n, n, _image(n)))
            store.commit(batch, last - 1)


def write_raw(path: Path, rows: int, batch_size: int) -> None:
    db = Rdict(str(path), OPTIONS.to_options())
    write_options = OPTIONS.to_write_options()
    try:
        for first in range(0, rows, batch_size):
            batch = WriteBatch(raw_mode=True)
            for n in range(first, min(first + batch_size, rows)):
                batch.put(_key(n), _image(n))
            db.write(batch, write_options)
    finally:
        db.close()


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(write: Callable[[Path, int, int], None], rows: int, batch: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        path = Path(tmp) / "db"
        started = time.perf_counter()
        write(path, rows, batch)
        elapsed = time.perf_counter() - started
        return rows / elapsed, _disk_bytes(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    results: dict[str, list[tuple[float, int]]] = {"store": [], "raw": []}
    for _ in range(args.runs):
        results["raw"].append(measure(write_raw, args.rows, args.batch))
        results["store"].append(measure(write_store, args.rows, args.batch))

    row_bytes = len(_key(1)) + len(_image(1))
    print(f"rows={args.rows} batch={args.batch} runs={args.runs} key+image≈{row_bytes} B")
    for name in ("raw", "store"):
        rates = [rate for rate, _ in results[name]]
        disk = statistics.median(size for _, size in results[name])
        print(
            f"{name:>5}: median {statistics.median(rates):>10,.0f} rows/s "
            f"(runs {', '.join(f'{r:,.0f}' for r in rates)}), on disk {disk / 2**20:,.1f} MiB"
        )
    ratio = statistics.median(r for r, _ in results["store"]) / statistics.median(
        r for r, _ in results["raw"]
    )
    print(f"store/raw: {ratio:.2f}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
