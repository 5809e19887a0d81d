"""The peers and the floor: PySyncObj's journals and the disk's write+fsync.

The same append / read / reopen work as ``test_workloads.py`` on
``pysyncobj.journal.FileJournal`` (which never fsyncs) and ``MemoryJournal``,
plus the fsync floor every synced write pays.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from raftstore import Log
from raftstore.benchmark import JournalHandle, Sizes, build_logs

journal = pytest.importorskip("pysyncobj.journal", reason="needs pysyncobj (raftstore[pysyncobj])")


@pytest.fixture(params=["FileJournal", "MemoryJournal"])
def journal_handle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JournalHandle]:
    """A fresh PySyncObj journal."""
    if request.param == "FileJournal":
        handle = JournalHandle(journal.FileJournal(str(tmp_path / "journal")))
    else:
        handle = JournalHandle(journal.MemoryJournal())
    yield handle
    handle.close()


@pytest.mark.parametrize("batch", [1, 64, 1024])
def test_journal_append(
    benchmark: BenchmarkFixture, journal_handle: JournalHandle, sizes: Sizes, batch: int
) -> None:
    firsts = itertools.count(1, batch)

    def one_batch() -> tuple[tuple[list[list[Log]]], dict[str, object]]:
        return ([build_logs(next(firsts), batch, sizes.data_bytes)],), {}

    benchmark.pedantic(journal_handle.append, setup=one_batch, rounds=max(20, 20_000 // batch))  # type: ignore[no-untyped-call]


def _filled(handle: JournalHandle, size: int, sizes: Sizes) -> JournalHandle:
    for first in range(1, size + 1, 1024):
        handle.append([build_logs(first, min(1024, size - first + 1), sizes.data_bytes)])
    return handle


def test_journal_get_random(
    benchmark: BenchmarkFixture, journal_handle: JournalHandle, sizes: Sizes
) -> None:
    size = sizes.dataset_sizes[-1]
    _filled(journal_handle, size, sizes)
    rng = random.Random(1)
    indexes = [rng.randrange(1, size + 1) for _ in range(1024)]
    benchmark(journal_handle.get_many, indexes)


def test_journal_tail_read(
    benchmark: BenchmarkFixture, journal_handle: JournalHandle, sizes: Sizes
) -> None:
    size = sizes.dataset_sizes[-1]
    _filled(journal_handle, size, sizes)
    benchmark(journal_handle.tail, size, 1)


@pytest.mark.parametrize("size_index", [0, 1, 2], ids=["small", "medium", "large"])
def test_file_journal_reopen(
    benchmark: BenchmarkFixture, tmp_path: Path, sizes: Sizes, size_index: int
) -> None:
    if size_index >= len(sizes.dataset_sizes):
        pytest.skip(f"the {sizes.name} scale has {len(sizes.dataset_sizes)} data set sizes")
    size = sizes.dataset_sizes[size_index]
    path = str(tmp_path / "journal")
    _filled(JournalHandle(journal.FileJournal(path)), size, sizes).close()

    def reopen() -> int:
        handle = JournalHandle(journal.FileJournal(path))
        try:
            return handle.startup()
        finally:
            handle.close()

    assert benchmark.pedantic(reopen, rounds=3) == size  # type: ignore[no-untyped-call]


def test_fsync_floor(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "floor", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    record = b"r" * 64

    def write_and_fsync() -> None:
        os.write(fd, record)
        os.fsync(fd)

    try:
        benchmark(write_and_fsync)
    finally:
        os.close(fd)
