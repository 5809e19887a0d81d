"""A port of hashicorp/raft's shared store benchmarks (``raft/bench/bench.go``).

The same ten operations, on every available engine x codec; indexes start
at 1 (raftstore rejects index 0). Writes run synced (raft-boltdb's default)
and unsynced.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from raftstore import Log, RaftStore

StoreFactory = Callable[..., RaftStore]
#: Rounds of the benchmarks that need fresh arguments per call (pedantic mode).
ROUNDS = 200
DATA = b"data"


def _nine_logs(store: RaftStore) -> RaftStore:
    store.store_logs([Log(index, 1, data=DATA) for index in range(1, 10)])
    return store


def test_first_index(benchmark: BenchmarkFixture, store_factory: StoreFactory) -> None:
    store = _nine_logs(store_factory())
    assert benchmark(store.first_index) == 1


def test_last_index(benchmark: BenchmarkFixture, store_factory: StoreFactory) -> None:
    store = _nine_logs(store_factory())
    assert benchmark(store.last_index) == 9


def test_get_log(benchmark: BenchmarkFixture, store_factory: StoreFactory) -> None:
    store = _nine_logs(store_factory())
    assert benchmark(store.get_log, 5).index == 5


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_store_log(benchmark: BenchmarkFixture, store_factory: StoreFactory, sync: bool) -> None:
    store = store_factory(sync=sync)
    indexes = itertools.count(1)
    benchmark(lambda: store.store_log(Log(next(indexes), 1, data=DATA)))
    assert store.first_index() == 1


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_store_logs(benchmark: BenchmarkFixture, store_factory: StoreFactory, sync: bool) -> None:
    store = store_factory(sync=sync)
    calls = itertools.count(1)

    def three_logs() -> tuple[tuple[list[Log]], dict[str, object]]:
        offset = 3 * next(calls)
        return ([Log(index, 1, data=DATA) for index in range(offset - 2, offset + 1)],), {}

    benchmark.pedantic(store.store_logs, setup=three_logs, rounds=ROUNDS)  # type: ignore[no-untyped-call]
    assert store.first_index() == 1


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_delete_range(benchmark: BenchmarkFixture, store_factory: StoreFactory, sync: bool) -> None:
    store = store_factory(sync=sync)
    # Three entries every ten indexes, so each delete covers indexes that are absent too.
    store.store_logs(
        [Log(10 * n + i, 1, data=DATA) for n in range(ROUNDS + 1) for i in range(1, 4)]
    )
    calls = itertools.count(0)

    def next_range() -> tuple[tuple[int, int], dict[str, object]]:
        offset = 10 * next(calls)
        return (offset + 1, offset + 10), {}

    benchmark.pedantic(store.delete_range, setup=next_range, rounds=ROUNDS)  # type: ignore[no-untyped-call]
    assert store.first_index() > 1  # --benchmark-disable runs one round


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_set(benchmark: BenchmarkFixture, store_factory: StoreFactory, sync: bool) -> None:
    store = store_factory(sync=sync)
    keys = itertools.cycle([b"key-%d" % n for n in range(256)])
    benchmark(lambda: store.set(next(keys), DATA))


def test_get(benchmark: BenchmarkFixture, store_factory: StoreFactory) -> None:
    store = store_factory()
    store.set(b"key", DATA)
    assert benchmark(store.get, b"key") == DATA


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_set_uint64(benchmark: BenchmarkFixture, store_factory: StoreFactory, sync: bool) -> None:
    store = store_factory(sync=sync)
    values = itertools.count(1)
    benchmark(lambda: store.set_uint64(b"CurrentTerm", next(values)))


def test_get_uint64(benchmark: BenchmarkFixture, store_factory: StoreFactory) -> None:
    store = store_factory()
    store.set_uint64(b"CurrentTerm", 42)
    assert benchmark(store.get_uint64, b"CurrentTerm") == 42
