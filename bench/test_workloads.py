"""Raft-shaped workloads on every engine x codec, each beside its raw binding (``variant``).

- appends in batches of 1, 64 and 1024, synced and unsynced;
- random ``get_log`` over the largest data set (1M entries at full scale);
- tail reads: the last 64 entries, as a leader reads them to replicate;
- compaction churn: appends of 64 with a prefix ``delete_range`` every 16
  batches, keeping 1024 entries;
- reopen (open + first/last index + get_log(last)) at every data set size,
  with the peak RSS growth of a fresh process recorded in ``extra_info``.

The per-call work is the same code ``raftstore bench`` runs
(`raftstore.benchmark.Handle`), so the two report comparable figures.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from raftstore import Log
from raftstore.benchmark import Handle, Sizes, build_logs, run_rss_probe

HandleFactory = Callable[..., Handle]
DataSets = Callable[[str, str, int], object]
TAIL = 64


@pytest.mark.parametrize("batch", [1, 64, 1024])
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_append(
    benchmark: BenchmarkFixture,
    handle_factory: HandleFactory,
    sizes: Sizes,
    batch: int,
    sync: bool,
) -> None:
    handle = handle_factory(sync=sync)
    firsts = itertools.count(1, batch)

    def one_batch() -> tuple[tuple[list[list[Log]]], dict[str, object]]:
        return ([build_logs(next(firsts), batch, sizes.data_bytes)],), {}

    rounds = 20 if sync else max(20, 20_000 // batch)
    benchmark.pedantic(handle.append, setup=one_batch, rounds=rounds)  # type: ignore[no-untyped-call]
    benchmark.extra_info.update(batch=batch, sync=sync, unit="one call of `batch` entries")


def _random_indexes(size: int, count: int = 1024) -> list[int]:
    rng = random.Random(1)
    return [rng.randrange(1, size + 1) for _ in range(count)]


@pytest.fixture
def largest_dataset(
    datasets: Callable[..., object], engine_codec: tuple[str, str], variant: str, sizes: Sizes
) -> Iterator[tuple[Handle, int]]:
    """A handle of this variant on the largest data set of this scale, and that set's size."""
    size = sizes.dataset_sizes[-1]
    data = datasets(*engine_codec, size)
    handle: Handle = data.open(variant)  # type: ignore[attr-defined]
    yield handle, size
    handle.close()


def test_get_random(benchmark: BenchmarkFixture, largest_dataset: tuple[Handle, int]) -> None:
    handle, size = largest_dataset
    indexes = _random_indexes(size)
    benchmark(handle.get_many, indexes)
    benchmark.extra_info.update(entries=size, gets_per_call=len(indexes))


def test_tail_read(benchmark: BenchmarkFixture, largest_dataset: tuple[Handle, int]) -> None:
    handle, size = largest_dataset
    benchmark(handle.tail, size, 1)
    benchmark.extra_info.update(entries=size, gets_per_call=TAIL)


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_churn(
    benchmark: BenchmarkFixture, handle_factory: HandleFactory, sizes: Sizes, sync: bool
) -> None:
    handle = handle_factory(sync=sync)
    firsts = itertools.count(1, 64 * 16)

    def sixteen_batches() -> tuple[tuple[list[list[Log]]], dict[str, object]]:
        logs = build_logs(next(firsts), 64 * 16, sizes.data_bytes)
        return ([logs[at : at + 64] for at in range(0, len(logs), 64)],), {}

    def append_then_truncate(batches: list[list[Log]]) -> None:
        handle.append(batches)
        handle.truncate_prefix(1024)

    benchmark.pedantic(append_then_truncate, setup=sixteen_batches, rounds=5 if sync else 50)  # type: ignore[no-untyped-call]
    benchmark.extra_info.update(unit="16 batches of 64 + one prefix delete keeping 1024")


@pytest.mark.parametrize("size_index", [0, 1, 2], ids=["small", "medium", "large"])
def test_reopen(
    benchmark: BenchmarkFixture,
    datasets: Callable[..., object],
    engine_codec: tuple[str, str],
    variant: str,
    sizes: Sizes,
    size_index: int,
) -> None:
    engine, codec = engine_codec
    if engine == "memory":
        pytest.skip("the memory engine keeps nothing to reopen")
    if size_index >= len(sizes.dataset_sizes):
        pytest.skip(f"the {sizes.name} scale has {len(sizes.dataset_sizes)} data set sizes")
    size = sizes.dataset_sizes[size_index]
    data = datasets(engine, codec, size)

    def reopen() -> int:
        handle: Handle = data.open(variant)  # type: ignore[attr-defined]
        try:
            return handle.startup()
        finally:
            handle.close()

    assert benchmark.pedantic(reopen, rounds=5) == size  # type: ignore[no-untyped-call]
    target = data.path if variant == "raftstore" else data.path / "data"  # type: ignore[attr-defined]
    probe = run_rss_probe(variant, engine, codec, target, size)
    benchmark.extra_info.update(entries=size, rss=probe)
