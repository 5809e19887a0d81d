"""Atomic batches: a large batch is stored whole, and a bad item anywhere stores nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from raftstore.errors import InvalidLogError, LogNotFoundError
from raftstore.log import Log
from raftstore.testing.harness import StoreHarness
from raftstore.testing.model import StoreModel, assert_store_matches
from raftstore.testing.suite.cases import BAD_ITEMS, SuiteSettings, entries, stored, unchecked_log

__all__ = ["BatchTests"]


class BatchTests(SuiteSettings):
    """store_logs is all or nothing, however large the batch and wherever the bad item sits."""

    def test_large_batch_is_atomic_and_complete(self, harness: StoreHarness) -> None:
        """A batch bigger than one engine transaction is stored whole; readers see none or all."""
        store = harness.store
        count, size = self.large_batch_count, self.large_batch_entry_size
        batch = entries(1, count, size=size)
        seen: set[tuple[int, int]] = set()
        writing = threading.Event()
        done = threading.Event()
        failures: list[BaseException] = []

        def watch() -> None:
            try:
                writing.wait()
                for _ in range(self.reader_max_ops):
                    seen.add((store.first_index(), store.last_index()))
                    if done.is_set():
                        break
            except BaseException as exc:
                failures.append(exc)

        reader = threading.Thread(target=watch, name="raftstore-conformance-watcher")
        reader.start()
        try:
            writing.set()
            store.store_logs(batch)
        finally:
            done.set()
            reader.join()
        if failures:
            raise failures[0]
        assert seen <= {(0, 0), (1, count)}, f"a reader saw part of the batch: {sorted(seen)}"
        assert (store.first_index(), store.last_index()) == (1, count)
        model = StoreModel()
        model.store_logs(batch)
        harness.verify(model)

    def test_large_batch_with_a_bad_last_item_stores_nothing(self, harness: StoreHarness) -> None:
        """A large batch whose last item is invalid raises InvalidLogError and stores nothing."""
        store = harness.store
        model = stored(store, entries(1, 2))
        count = self.large_batch_count
        batch: list[Any] = entries(3, count + 2, size=self.large_batch_entry_size)
        batch.append(unchecked_log(count + 3, 1, data=bytearray(b"not bytes")))
        with pytest.raises(InvalidLogError):
            store.store_logs(batch)
        harness.verify(model)

    @pytest.mark.parametrize("bad", [pytest.param(item, id=name) for name, item in BAD_ITEMS])
    def test_bad_item_mid_batch_stores_nothing(self, harness: StoreHarness, bad: object) -> None:
        """A batch with an invalid item in its middle raises InvalidLogError, stores none of it."""
        store = harness.store
        model = stored(store, entries(1, 5))
        batch: list[Any] = entries(6, 15, term=2)
        batch.insert(5, bad)
        with pytest.raises(InvalidLogError):
            store.store_logs(batch)
        assert_store_matches(store, model, "right after the failed batch")
        assert store.last_index() == 5
        with pytest.raises(LogNotFoundError):
            store.get_log(6)
        harness.verify(model)

    def test_bad_item_mid_overwriting_batch_changes_nothing(self, harness: StoreHarness) -> None:
        """A failed batch that would have overwritten entries leaves the old entries in place."""
        harness.forbid("monotonic", "monotonic stores refuse overwrites")
        store = harness.store
        model = stored(store, entries(1, 10))
        batch: list[Any] = entries(3, 12, term=2)
        batch.insert(4, Log(0, 2))
        with pytest.raises(InvalidLogError):
            store.store_logs(batch)
        assert store.get_log(3).term == 1
        harness.verify(model)
