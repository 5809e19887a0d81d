"""A handle's life: its attributes, close, the context manager, reopen and sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raftstore.errors import StoreClosedError
from raftstore.log import Log, LogType
from raftstore.testing.harness import StoreHarness
from raftstore.testing.model import StoreModel, assert_store_matches
from raftstore.testing.suite.cases import (
    CALLS_AFTER_CLOSE,
    Call,
    PlannedError,
    SuiteSettings,
    entries,
    payload,
    stored,
    use_and_fail,
)

__all__ = ["LifecycleTests"]


class LifecycleTests(SuiteSettings):
    """A handle describes itself, closes cleanly, refuses calls once closed, and its writes last."""

    # -- attributes --------------------------------------------------------------------------------

    def test_attributes(self, harness: StoreHarness) -> None:
        """engine, codec, path, closed and is_monotonic are there, typed, and read-only."""
        store: Any = harness.store
        assert isinstance(store.engine, str)
        assert store.engine
        assert isinstance(store.codec, str)
        assert store.codec
        assert store.path is None or isinstance(store.path, Path)
        assert store.closed is False
        assert store.is_monotonic is harness.capabilities.monotonic
        for name in ("engine", "codec", "path", "closed", "is_monotonic"):
            with pytest.raises(AttributeError):
                setattr(store, name, getattr(store, name))
        if harness.capabilities.persistent:
            engine, codec, path = store.engine, store.codec, store.path
            reopened = harness.reopen()
            assert (reopened.engine, reopened.codec, reopened.path) == (engine, codec, path)

    # -- close and the context manager -------------------------------------------------------------

    def test_close_is_idempotent(self, harness: StoreHarness) -> None:
        """close() twice is fine; closed turns True."""
        store = harness.store
        store.store_log(Log(1, 1))
        assert store.closed is False
        store.close()
        assert store.closed is True
        store.close()
        assert store.closed is True

    @pytest.mark.parametrize("call", CALLS_AFTER_CLOSE)
    def test_every_method_after_close_raises(self, harness: StoreHarness, call: Call) -> None:
        """Any call on a closed store raises StoreClosedError."""
        store = harness.store
        store.store_logs(entries(1, 2))
        store.set(b"key", b"value")
        store.close()
        with pytest.raises(StoreClosedError):
            call(store)
        if harness.capabilities.persistent:
            model = StoreModel()
            model.store_logs(entries(1, 2))
            model.set(b"key", b"value")
            assert_store_matches(harness.reopen(), model, "reopened after the refused call")

    def test_iter_logs_after_close_raises(self, harness: StoreHarness) -> None:
        """iter_logs (where the store has it) on a closed store raises StoreClosedError."""
        store: Any = harness.store
        if not hasattr(store, "iter_logs"):
            pytest.skip("the store has no iter_logs (optional)")
        store.close()
        with pytest.raises(StoreClosedError):
            list(store.iter_logs())

    def test_context_manager_closes(self, harness: StoreHarness) -> None:
        """``with store`` returns the store itself and closes it at the end of the block."""
        store = harness.store
        with store as entered:
            assert entered is store
            entered.store_log(Log(1, 1))
        assert store.closed
        with pytest.raises(StoreClosedError):
            store.first_index()
        if harness.capabilities.persistent:
            harness.verify(StoreModel(logs={1: Log(1, 1)}), "written inside the with block")

    def test_context_manager_closes_on_error(self, harness: StoreHarness) -> None:
        """An exception inside ``with store`` propagates and the store is closed."""
        store = harness.store
        with pytest.raises(PlannedError):
            use_and_fail(store)
        assert store.closed
        with pytest.raises(StoreClosedError):
            store.get(b"inside")
        if harness.capabilities.persistent:
            model = StoreModel()
            model.set(b"inside", b"with")
            harness.verify(model, "written inside the failed with block")

    # -- reopen and sync ---------------------------------------------------------------------------

    def test_reopen_keeps_everything(self, harness: StoreHarness) -> None:
        """Logs, stable values and uint64s survive two close/reopen cycles unchanged."""
        harness.require("persistent")
        store = harness.store
        batch = [Log(i, 3, LogType(i % 6), payload(i, 3), b"x" * i, -i) for i in range(1, 40)]
        model = stored(store, batch)
        store.set(b"LastVoteCand", b"node-3")
        model.set(b"LastVoteCand", b"node-3")
        store.set_uint64(b"CurrentTerm", 3)
        model.set_uint64(b"CurrentTerm", 3)
        harness.verify(model)
        harness.verify(model, "second reopen")

    def test_sync_false_then_sync(self, harness: StoreHarness) -> None:
        """A store opened with sync=False takes writes, sync() flushes them, reopen shows them."""
        store = harness.reopen(sync=False)
        model = stored(store, entries(1, 20))
        store.set_uint64(b"CurrentTerm", 4)
        model.set_uint64(b"CurrentTerm", 4)
        store.delete_range(15, 20)
        model.delete_range(15, 20)
        store.sync()
        assert_store_matches(store, model, "sync=False")
        harness.verify(model)

    def test_sync_on_a_synced_store(self, harness: StoreHarness) -> None:
        """sync() works on an empty and on a populated store opened with the default sync=True."""
        store = harness.store
        store.sync()
        store.store_logs(entries(1, 3))
        store.sync()
        model = StoreModel()
        model.store_logs(entries(1, 3))
        harness.verify(model)
