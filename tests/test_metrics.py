"""Metrics and stats: off by default, complete when a collector is attached."""

from __future__ import annotations

from pathlib import Path

import prometheus_client
import pytest
from conformance_support import store_opener

import raftstore
from raftstore import ConfigurationError, Log, RaftStore
from raftstore.metrics import InMemoryCollector, MetricsCollector
from raftstore.metrics.prometheus import PrometheusCollector
from raftstore.testing import OpenStore, RaftStoreConformance

ENGINES = ["memory", "lmdb", "rocksdb", "leveldb"]


def _target(engine: str, tmp_path: Path) -> str:
    return "memory://" if engine == "memory" else f"{engine}://{tmp_path / 'db'}"


def _work(store: RaftStore) -> None:
    store.store_logs([Log(i, 1, data=b"x" * 10) for i in range(1, 11)])
    store.store_log(Log(11, 1, data=b"y" * 5, extensions=b"e"))
    store.store_logs([])  # writes nothing: not an append
    store.get_log(3)
    list(store.iter_logs(1, 4))
    store.delete_range(0, 2)  # head
    store.delete_range(10, 2**64 - 1)  # tail
    store.set_uint64(b"CurrentTerm", 2)
    store.get_uint64(b"CurrentTerm")
    store.sync()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_collector_sees_every_operation(engine: str, tmp_path: Path) -> None:
    collector = InMemoryCollector()
    with raftstore.open(_target(engine, tmp_path), metrics=collector) as store:
        _work(store)
        stats = store.stats()
    assert collector.counters == {
        "appends": 2,
        "entries_written": 11,
        "bytes_written": 10 * 10 + 5 + 1,
        "entries_read": 1 + 4,
        "bytes_read": 5 * 10,
        "head_truncations": 1,
        "tail_truncations": 1,
        "stable_sets": 1,
        "stable_gets": 1,
        "syncs": 1,
    }
    assert collector.samples["batch_size"] == [10, 1]
    assert len(collector.samples["store_seconds"]) == 2
    assert len(collector.samples["get_seconds"]) == 1
    assert len(collector.samples["sync_seconds"]) == 1
    assert collector.gauges["first_index"] == 3
    assert collector.gauges["last_index"] == 9
    assert collector.gauges["disk_usage_bytes"] == stats["disk_usage_bytes"]
    assert stats["counters"]["entries_read"] == 5


@pytest.mark.parametrize("engine", ENGINES)
def test_stats_without_a_collector(engine: str, tmp_path: Path) -> None:
    with raftstore.open(_target(engine, tmp_path)) as store:
        assert type(store) is RaftStore  # nothing instrumented by default
        _work(store)
        store.stage_commit_index(7)
        store.store_log(Log(10, 2))
        stats = store.stats()
    assert stats["engine"] == engine
    assert stats["codec"] == "msgpack"
    assert (stats["first_index"], stats["last_index"], stats["commit_index"]) == (3, 10, 7)
    assert stats["format"] == 2
    assert stats["monotonic"] is False
    assert (stats["disk_usage_bytes"] > 0) is (engine != "memory")
    assert stats["counters"] == {
        "appends": 3,
        "entries_written": 12,
        "head_truncations": 1,
        "tail_truncations": 1,
        "middle_deletes": 0,
        "stable_sets": 1,
        "syncs": 1,
    }


def test_a_collector_must_have_the_three_methods() -> None:
    with pytest.raises(ConfigurationError, match="MetricsCollector"):
        raftstore.open("memory://", metrics=object())  # type: ignore[arg-type]
    assert isinstance(InMemoryCollector(), MetricsCollector)


def test_failed_writes_are_not_counted() -> None:
    collector = InMemoryCollector()
    with raftstore.open("memory://", metrics=collector) as store:
        with pytest.raises(raftstore.InvalidLogError):
            store.store_logs([Log(1, 1), Log(0, 1)])
        assert store.stats()["counters"]["appends"] == 0
    assert "appends" not in collector.counters


def test_prometheus_export(tmp_path: Path) -> None:
    registry = prometheus_client.CollectorRegistry()
    collector = PrometheusCollector(labels={"node": "n1"}, registry=registry)
    with raftstore.open(tmp_path / "db", metrics=collector) as store:
        _work(store)
        store.stats()
    text = prometheus_client.generate_latest(registry).decode()
    assert 'raftstore_entries_written_total{node="n1"} 11.0' in text
    assert 'raftstore_store_seconds_count{node="n1"} 2.0' in text
    assert 'raftstore_last_index{node="n1"} 9.0' in text
    assert "raftstore_disk_usage_bytes" in text


class TestMeteredStore(RaftStoreConformance):
    """The whole contract holds on a store with a collector attached."""

    @pytest.fixture
    def open_store(self, tmp_path: Path) -> OpenStore:
        """An LMDB store reporting to an in-memory collector."""
        return store_opener(tmp_path / "db", "msgpack", metrics=InMemoryCollector())


def test_stats_through_a_log_cache_and_an_async_store(tmp_path: Path) -> None:
    import asyncio

    import raftstore.aio

    with raftstore.LogCache(raftstore.open(tmp_path / "cached"), 8) as cache:
        cache.store_logs([Log(i, 1) for i in range(1, 21)])
        stats = cache.stats()
    assert stats["last_index"] == 20
    assert stats["log_cache"] == {"capacity": 8, "cached": 8}

    async def main() -> dict[str, object]:
        async with await raftstore.aio.open(tmp_path / "async") as store:
            await store.store_log(Log(1, 1))
            return await store.stats()

    async_stats = asyncio.run(main())
    assert async_stats["last_index"] == 1
    assert async_stats["counters"]["appends"] == 1  # type: ignore[index]
