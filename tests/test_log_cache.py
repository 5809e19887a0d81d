"""`raftstore.LogCache`: ring semantics, ownership, threads, and a cached-vs-uncached model test."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import raftstore
from raftstore import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidLogError,
    Log,
    LogCache,
    LogNotFoundError,
    LogStore,
    RaftStore,
    StableStore,
    StorageError,
    StoreClosedError,
)
from raftstore.log import MAX_INDEX


class CountingStore:
    """Wraps a store: counts get_log calls and fails writes on demand (before touching it)."""

    def __init__(self, store: RaftStore) -> None:
        self.inner = store
        self.get_log_calls = 0
        self.fail_next_write = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_log(self, index: int) -> Log:
        self.get_log_calls += 1
        return self.inner.get_log(index)

    def _maybe_fail(self) -> None:
        if self.fail_next_write:
            self.fail_next_write = False
            raise StorageError("planned failure: nothing was written")

    def store_log(self, log: Log) -> None:
        self._maybe_fail()
        self.inner.store_log(log)

    def store_logs(self, logs: Iterable[Log]) -> None:
        self._maybe_fail()
        self.inner.store_logs(logs)

    def delete_range(self, min_index: int, max_index: int) -> None:
        self._maybe_fail()
        self.inner.delete_range(min_index, max_index)


def counting_cache(capacity: int = 4) -> tuple[LogCache, CountingStore]:
    counting = CountingStore(raftstore.open("memory://"))
    cache = LogCache(counting, capacity)
    return cache, counting


def logs(first: int, last: int, term: int = 1) -> list[Log]:
    return [Log(i, term, data=b"%d/%d" % (i, term)) for i in range(first, last + 1)]


def test_is_a_store() -> None:
    with LogCache(raftstore.open("memory://"), 8) as cache:
        assert isinstance(cache, LogStore)
        assert isinstance(cache, StableStore)
        assert (cache.engine, cache.codec, cache.path) == ("memory", "msgpack", None)
        assert cache.capacity == 8
        assert cache.is_monotonic is False
    assert cache.closed


@pytest.mark.parametrize("capacity", [0, -1, 1.5, "4", True])
def test_capacity_must_be_a_positive_int(capacity: Any) -> None:
    store = raftstore.open("memory://")
    with pytest.raises(ConfigurationError):
        LogCache(store, capacity)
    store.close()


def test_recent_entries_are_served_from_the_ring() -> None:
    cache, counting = counting_cache(capacity=4)
    cache.store_logs(logs(1, 10))
    assert cache.cached_indexes() == [7, 8, 9, 10]
    for index in (7, 8, 9, 10):
        assert cache.get_log(index) == logs(index, index)[0]
    assert counting.get_log_calls == 0
    assert cache.get_log(3) == logs(3, 3)[0]  # evicted: read from the store
    assert counting.get_log_calls == 1
    with pytest.raises(LogNotFoundError):
        cache.get_log(11)  # slot 3 holds 7, not 11
    assert counting.get_log_calls == 2
    cache.close()


def test_a_failed_store_write_leaves_the_ring_unchanged() -> None:
    cache, counting = counting_cache(capacity=4)
    cache.store_logs(logs(1, 4))
    counting.fail_next_write = True
    with pytest.raises(StorageError):
        cache.store_logs(logs(3, 6, term=2))  # would overwrite cached 3 and 4
    assert cache.cached_indexes() == [1, 2, 3, 4]
    assert [cache.get_log(i) for i in range(1, 5)] == logs(1, 4)
    assert counting.get_log_calls == 0
    counting.fail_next_write = True
    with pytest.raises(StorageError):
        cache.delete_range(2, 3)
    assert cache.cached_indexes() == [1, 2, 3, 4]
    cache.close()


def test_an_invalid_batch_leaves_the_ring_unchanged() -> None:
    cache, _ = counting_cache(capacity=4)
    cache.store_logs(logs(1, 4))
    with pytest.raises(InvalidLogError):
        cache.store_logs([*logs(3, 4, term=2), Log(0, 1)])
    with pytest.raises(InvalidLogError):
        cache.store_log(Log(2, -1))
    with pytest.raises(InvalidArgumentError):
        cache.store_logs(Log(2, 1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        cache.store_logs(None)  # type: ignore[arg-type]
    assert cache.cached_indexes() == [1, 2, 3, 4]
    assert [cache.get_log(i) for i in range(1, 5)] == logs(1, 4)
    cache.close()


def test_unreadable_batch_is_refused_by_the_store_with_its_message() -> None:
    def broken() -> Iterator[Log]:
        yield Log(1, 1)
        raise RuntimeError("disk on fire")

    with LogCache(raftstore.open("memory://"), 4) as cache:
        with pytest.raises(InvalidArgumentError, match="disk on fire"):
            cache.store_logs(broken())
        assert cache.last_index() == 0
        assert cache.cached_indexes() == []


def test_delete_range_invalidates_exactly_what_it_covers() -> None:
    cache, _ = counting_cache(capacity=8)
    cache.store_logs(logs(1, 8))
    cache.delete_range(3, 5)
    assert cache.cached_indexes() == [1, 2, 6, 7, 8]
    for index in (3, 4, 5):
        with pytest.raises(LogNotFoundError):
            cache.get_log(index)
    cache.delete_range(7, 6)  # min > max: no-op
    assert cache.cached_indexes() == [1, 2, 6, 7, 8]
    cache.delete_range(0, MAX_INDEX)
    assert cache.cached_indexes() == []
    assert cache.last_index() == 0
    cache.close()


def test_overwrite_replaces_the_cached_entry() -> None:
    cache, _ = counting_cache(capacity=4)
    cache.store_logs(logs(1, 4))
    cache.delete_range(3, 4)
    cache.store_logs(logs(3, 4, term=2))
    assert cache.get_log(3) == logs(3, 3, term=2)[0]
    cache.store_log(Log(4, 3))
    assert cache.get_log(4) == Log(4, 3)
    cache.close()


def test_cached_entries_are_normalised() -> None:
    class Term(int):
        pass

    with LogCache(raftstore.open("memory://"), 4) as cache:
        cache.store_log(Log(Term(1), Term(2), appended_at=Term(3)))
        got = cache.get_log(1)
        assert got == Log(1, 2, appended_at=3)
        assert (type(got.index), type(got.term), type(got.appended_at)) == (int, int, int)


def test_close_closes_the_store_it_owns() -> None:
    store = raftstore.open("memory://")
    cache = LogCache(store, 4)
    cache.store_logs(logs(1, 2))
    cache.close()
    cache.close()
    assert store.closed
    with pytest.raises(StoreClosedError):
        cache.get_log(2)


def test_owns_store_false_leaves_the_store_open() -> None:
    store = raftstore.open("memory://")
    cache = LogCache(store, 4, owns_store=False)
    cache.store_logs(logs(1, 2))
    cache.close()
    assert cache.closed
    assert not store.closed
    for call in (lambda: cache.get_log(2), cache.first_index, lambda: cache.set(b"k", b"v")):
        with pytest.raises(StoreClosedError):
            call()
    assert store.get_log(2) == logs(2, 2)[0]
    store.close()


def test_closing_the_store_underneath_stops_cache_hits() -> None:
    store = raftstore.open("memory://")
    cache = LogCache(store, 4)
    cache.store_logs(logs(1, 2))
    store.close()
    assert cache.closed
    with pytest.raises(StoreClosedError):
        cache.get_log(2)


def test_persistent_store_reopens_through_a_new_cache(tmp_path: Path) -> None:
    with LogCache(raftstore.open(tmp_path / "db", engine="lmdb"), 4) as cache:
        cache.store_logs(logs(1, 10))
        cache.set_uint64(b"CurrentTerm", 3)
    with LogCache(raftstore.open(tmp_path / "db"), 4) as cache:
        assert cache.cached_indexes() == []
        assert [cache.get_log(i) for i in range(1, 11)] == logs(1, 10)
        assert cache.get_uint64(b"CurrentTerm") == 3
        assert list(cache.iter_logs(9)) == logs(9, 10)


def test_readers_never_see_an_older_copy_after_a_newer_one() -> None:
    """Overwriting batches while readers read: once any entry of batch v is seen, none older is."""
    capacity, width, versions = 4, 6, 300
    cache = LogCache(raftstore.open("memory://"), capacity)
    cache.store_logs([Log(i, 0) for i in range(1, width + 1)])
    done = threading.Event()
    failures: list[str] = []

    def write() -> None:
        try:
            for version in range(1, versions + 1):
                cache.store_logs([Log(i, version) for i in range(1, width + 1)])
        finally:
            done.set()

    def read() -> None:
        seen = 0
        for _ in range(50_000):
            if done.is_set():
                return
            for index in range(1, width + 1):
                term = cache.get_log(index).term
                if term < seen:
                    failures.append(f"log {index} term {term} after term {seen} was seen")
                    return
                seen = max(seen, term)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert [cache.get_log(i).term for i in range(1, width + 1)] == [versions] * width
    cache.close()


# -- cached and uncached stores side by side under random operations -------------------------

_indexes = st.integers(1, 20)
_terms = st.integers(0, 3)
_bad = st.sampled_from([Log(0, 1), Log(3, -1), ("not", "a log"), Log(2**64, 1)])


class CachedVersusUncached(RuleBasedStateMachine):
    """The same operations on a cached and an uncached store; every read must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.plain = raftstore.open("memory://")
        self.counting = CountingStore(raftstore.open("memory://"))
        self.cached = LogCache(self.counting, 4)

    def both(self, call: Any) -> None:
        """Run *call* on both; they must both succeed or both raise the same error type."""
        outcomes = []
        for store in (self.plain, self.cached):
            try:
                outcomes.append(("ok", call(store)))
            except Exception as exc:
                outcomes.append(("error", type(exc)))
        assert outcomes[0] == outcomes[1]

    @rule(indexes=st.lists(_indexes, max_size=7), term=_terms)
    def store_logs(self, indexes: list[int], term: int) -> None:
        batch = [Log(i, term, data=bytes([i, term])) for i in indexes]
        self.both(lambda s: s.store_logs(batch))

    @rule(index=_indexes, term=_terms)
    def store_log(self, index: int, term: int) -> None:
        self.both(lambda s: s.store_log(Log(index, term, data=b"one")))

    @rule(indexes=st.lists(_indexes, max_size=5), bad=_bad, position=st.integers(0, 5), term=_terms)
    def store_a_batch_with_a_bad_item(
        self, indexes: list[int], bad: object, position: int, term: int
    ) -> None:
        batch: list[object] = [Log(i, term, data=b"bad batch") for i in indexes]
        batch.insert(min(position, len(batch)), bad)
        self.both(lambda s: s.store_logs(batch))

    @rule(indexes=st.lists(_indexes, min_size=1, max_size=5), term=_terms)
    def store_write_that_fails_in_the_engine(self, indexes: list[int], term: int) -> None:
        self.counting.fail_next_write = True
        with pytest.raises(StorageError):
            self.cached.store_logs([Log(i, term, data=b"never stored") for i in indexes])

    @rule(low=st.integers(0, 22), high=st.integers(0, 22))
    def delete_range(self, low: int, high: int) -> None:
        self.both(lambda s: s.delete_range(low, high))

    @rule(low=st.integers(0, 22), high=st.integers(0, 22))
    def delete_range_that_fails_in_the_engine(self, low: int, high: int) -> None:
        self.counting.fail_next_write = True
        with pytest.raises(StorageError):
            self.cached.delete_range(low, high)

    @rule(index=st.integers(-1, 22))
    def get_log(self, index: int) -> None:
        self.both(lambda s: s.get_log(index))

    @rule(key=st.sampled_from([b"CurrentTerm", b"LastVoteCand"]), value=st.binary(max_size=8))
    def set(self, key: bytes, value: bytes) -> None:
        self.both(lambda s: s.set(key, value))
        self.both(lambda s: s.get(key))

    @invariant()
    def stores_agree(self) -> None:
        self.both(lambda s: (s.first_index(), s.last_index()))
        self.both(lambda s: list(s.iter_logs()))
        for index in range(0, 23):
            self.both(lambda s, index=index: s.get_log(index))

    @invariant()
    def ring_holds_only_what_the_store_holds(self) -> None:
        for index in self.cached.cached_indexes():
            assert self.cached.get_log(index) == self.plain.get_log(index)

    def teardown(self) -> None:
        self.plain.close()
        self.cached.close()


def test_cached_store_behaves_like_the_uncached_one() -> None:
    run_state_machine_as_test(
        CachedVersusUncached,
        settings=settings(
            max_examples=150,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
