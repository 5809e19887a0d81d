"""Commit tracking (hashicorp's CommitTrackingLogStore), for stores that offer it."""

from __future__ import annotations

from typing import Any

import pytest

from raftstore.errors import InvalidArgumentError, InvalidLogError
from raftstore.log import Log
from raftstore.testing.harness import StoreHarness
from raftstore.testing.suite.cases import SuiteSettings, entries, payload, unchecked_log

__all__ = ["CommitTrackingTests"]


class CommitTrackingTests(SuiteSettings):
    """A staged commit index is persisted with the next batch, atomically, and only then."""

    @staticmethod
    def _tracking(harness: StoreHarness) -> Any:
        store: Any = harness.store
        if not hasattr(store, "stage_commit_index"):
            pytest.skip("the store does not track commit indexes (no stage_commit_index)")
        return store

    def test_commit_index_is_persisted_with_the_next_batch(self, harness: StoreHarness) -> None:
        """A staged commit index is stored by the next store_logs, atomically, and only then."""
        store = self._tracking(harness)
        assert store.get_commit_index() == 0
        store.store_logs(entries(1, 5))
        store.stage_commit_index(3)
        assert store.get_commit_index() == 0  # staged, not yet written
        store.store_logs(entries(6, 8))
        assert store.get_commit_index() == 3
        store.stage_commit_index(7)
        store.store_log(Log(9, 1, data=payload(9, 1)))  # store_log counts as a batch
        assert store.get_commit_index() == 7
        store.store_logs([])  # an empty batch writes nothing, the commit index neither
        store.stage_commit_index(8)
        store.store_logs([])
        assert store.get_commit_index() == 7
        if harness.capabilities.persistent:
            reopened: Any = harness.reopen()
            assert reopened.get_commit_index() == 7

    def test_a_failed_batch_keeps_the_commit_index_staged(self, harness: StoreHarness) -> None:
        """A batch that fails stores neither its entries nor the staged commit index."""
        store = self._tracking(harness)
        store.store_logs(entries(1, 3))
        store.stage_commit_index(2)
        with pytest.raises(InvalidLogError):
            store.store_logs([Log(4, 1), unchecked_log(0, 1)])
        assert store.get_commit_index() == 0
        store.store_logs(entries(4, 4))
        assert store.get_commit_index() == 2

    def test_a_staged_commit_index_never_written_is_lost_at_reopen(
        self, harness: StoreHarness
    ) -> None:
        """A close (or crash) between staging and the write keeps the last persisted value."""
        harness.require("persistent")
        store = self._tracking(harness)
        store.store_logs(entries(1, 3))
        store.stage_commit_index(2)
        store.store_logs(entries(4, 4))
        store.stage_commit_index(4)
        reopened: Any = harness.reopen()
        store = reopened
        assert store.get_commit_index() == 2
        assert store.last_index() == 4
        with pytest.raises(InvalidArgumentError):
            store.stage_commit_index(-1)
