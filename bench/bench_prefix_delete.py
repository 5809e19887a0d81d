"""How long ``first_index()`` takes after deleting a large log prefix, per engine.

For each engine the script stores ``--count + --tail`` entries through
``raftstore.open``, deletes the first ``--count`` with one
``delete_range(1, count)`` and measures:

- ``delete_range``: the delete itself (RocksDB: one range tombstone; LevelDB:
  a point delete per key, then a compaction of the deleted range; LMDB: a
  B+tree delete per key);
- ``first_index``: ``first_index()`` on the open store (cached by the store);
- ``reopen+first``: closing the store, opening it again and the first
  ``first_index()`` call (this one asks the engine for the first key);
- ``engine seek``: the engine's own ``first_key(logs)`` from the start of the
  namespace, the seek every reopen does;
- ``read-only first``: ``first_index()`` on a ``read_only=True`` handle, which
  reads the bounds afresh on every call (a writer may share the store);
- ``naive seek``: the same seek done with the raw binding after deleting the
  prefix the naive way (one point delete per key, no range delete, no
  compaction), for comparison.

Nothing here is asserted; it prints a table. Run it with::

    python bench/bench_prefix_delete.py            # lmdb, rocksdb, leveldb; 100k prefix
    python bench/bench_prefix_delete.py --engines rocksdb --count 200000
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import raftstore
from raftstore import Log
from raftstore.engines.base import LOGS

ENGINES = ("lmdb", "rocksdb", "leveldb")
BATCH = 1000
#: Distributions whose versions the table header names.
PACKAGES = ("lmdb", "rocksdict", "plyvel", "msgpack")


@dataclass
class Result:
    """Timings for one engine, in seconds."""

    engine: str
    delete_range: float
    first_index: float
    reopen_first_index: float
    engine_seek: float
    read_only_first_index: float
    naive_seek: float | None


def median_time(call: Callable[[], object], repeat: int) -> float:
    """Median wall time of *call* over *repeat* runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def scratch_directory(parent: str | None) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="raftstore-bench-", dir=parent))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def fill(store: raftstore.RaftStore, total: int, data: bytes) -> None:
    for start in range(1, total + 1, BATCH):
        stop = min(start + BATCH, total + 1)
        store.store_logs([Log(index, 1, data=data) for index in range(start, stop)])


def measure_store(
    engine: str, directory: Path, count: int, tail: int, repeat: int, sync: bool, data: bytes
) -> Result:
    """Time delete_range, first_index and reopen through raftstore.open."""
    path = directory / engine
    store = raftstore.open(path, engine=engine, sync=sync)
    try:
        fill(store, count + tail, data)
        start = time.perf_counter()
        store.delete_range(1, count)
        delete_time = time.perf_counter() - start
        if store.first_index() != count + 1:
            raise AssertionError(f"{engine}: first_index is {store.first_index()}")
        first_index_time = median_time(store.first_index, repeat)
    finally:
        store.close()

    def reopen_and_ask() -> None:
        with raftstore.open(path, engine=engine, sync=sync) as reopened:
            reopened.first_index()

    reopen_time = median_time(reopen_and_ask, max(3, repeat // 100))
    with raftstore.open(path, engine=engine, sync=sync) as reopened:
        kv = reopened.kv
        engine_seek = median_time(lambda: kv.first_key(LOGS), repeat)
    with raftstore.open(path, engine=engine, read_only=True) as reader:
        read_only_time = median_time(reader.first_index, repeat)
    return Result(
        engine, delete_time, first_index_time, reopen_time, engine_seek, read_only_time, None
    )


def naive_rocksdb_seek(directory: Path, count: int, tail: int, repeat: int, data: bytes) -> float:
    import rocksdict

    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    db = rocksdict.Rdict(str(directory / "naive-rocksdb"), options)
    try:
        for start in range(1, count + tail + 1, BATCH):
            batch = rocksdict.WriteBatch(raw_mode=True)
            for index in range(start, min(start + BATCH, count + tail + 1)):
                batch.put(index.to_bytes(8, "big"), data)
            db.write(batch)
        batch = rocksdict.WriteBatch(raw_mode=True)
        for index in range(1, count + 1):
            batch.delete(index.to_bytes(8, "big"))
        db.write(batch)

        def seek_to_first() -> None:
            iterator = db.iter()
            iterator.seek_to_first()
            del iterator

        return median_time(seek_to_first, repeat)
    finally:
        db.close()


def naive_leveldb_seek(directory: Path, count: int, tail: int, repeat: int, data: bytes) -> float:
    import plyvel

    db = plyvel.DB(str(directory / "naive-leveldb"), create_if_missing=True)
    try:
        for start in range(1, count + tail + 1, BATCH):
            batch = db.write_batch()
            for index in range(start, min(start + BATCH, count + tail + 1)):
                batch.put(index.to_bytes(8, "big"), data)
            batch.write()
        batch = db.write_batch()
        for index in range(1, count + 1):
            batch.delete(index.to_bytes(8, "big"))
        batch.write()

        def seek_to_first() -> None:
            with db.iterator(include_value=False) as keys:
                next(keys, None)

        return median_time(seek_to_first, repeat)
    finally:
        db.close()


def naive_lmdb_seek(directory: Path, count: int, tail: int, repeat: int, data: bytes) -> float:
    import lmdb

    env = lmdb.open(str(directory / "naive-lmdb"), map_size=1 << 30, sync=False)
    try:
        with env.begin(write=True) as txn:
            for index in range(1, count + tail + 1):
                txn.put(index.to_bytes(8, "big"), data)
        with env.begin(write=True) as txn:
            for index in range(1, count + 1):
                txn.delete(index.to_bytes(8, "big"))

        def seek_to_first() -> None:
            with env.begin() as txn:
                txn.cursor().first()

        return median_time(seek_to_first, repeat)
    finally:
        env.close()


NAIVE: dict[str, Callable[[Path, int, int, int, bytes], float]] = {
    "lmdb": naive_lmdb_seek,
    "rocksdb": naive_rocksdb_seek,
    "leveldb": naive_leveldb_seek,
}


def versions() -> str:
    found = []
    for package in PACKAGES:
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"first_index() after delete_range(1, {args.count}) of {args.count + args.tail} entries"
        f" ({args.size}-byte data, sync={args.sync}, median of {args.repeat})"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs;"
        f" {versions()}"
    )
    headers = (
        "engine",
        "delete_range",
        "first_index",
        "reopen+first",
        "engine seek",
        "read-only first",
        "naive seek",
    )
    rows = [
        (
            result.engine,
            format_time(result.delete_range),
            format_time(result.first_index),
            format_time(result.reopen_first_index),
            format_time(result.engine_seek),
            format_time(result.read_only_first_index),
            format_time(result.naive_seek),
        )
        for result in results
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, tuple("-" * width for width in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--count", type=int, default=100_000, help="entries deleted as a prefix")
    parser.add_argument("--tail", type=int, default=10, help="entries kept after the prefix")
    parser.add_argument("--size", type=int, default=128, help="bytes of data per entry")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per measurement")
    parser.add_argument("--sync", action="store_true", help="open stores with sync=True")
    parser.add_argument("--no-naive", action="store_true", help="skip the raw-binding baseline")
    parser.add_argument("--dir", default=None, help="parent directory for scratch stores")
    args = parser.parse_args(argv)
    data = os.urandom(args.size)
    results = []
    for engine in args.engines:
        with scratch_directory(args.dir) as directory:
            result = measure_store(
                engine, directory, args.count, args.tail, args.repeat, args.sync, data
            )
            if not args.no_naive:
                result.naive_seek = NAIVE[engine](
                    directory, args.count, args.tail, max(3, args.repeat // 10), data
                )
        results.append(result)
        print(f"{engine}: done", file=sys.stderr, flush=True)
    print_table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
