"""delete_range: inclusive ends, holes, clamping, emptying the log, and appending after it."""

from __future__ import annotations

import pytest

from raftstore.errors import LogNotFoundError
from raftstore.log import MAX_INDEX
from raftstore.testing.harness import StoreHarness
from raftstore.testing.model import StoreModel
from raftstore.testing.suite.cases import SuiteSettings, entries, stored

__all__ = ["DeleteRangeTests"]


class DeleteRangeTests(SuiteSettings):
    """delete_range(low, high) deletes low..high inclusive and keeps first/last index right."""

    def test_delete_range_is_inclusive_at_both_ends(self, harness: StoreHarness) -> None:
        """delete_range(a, b) deletes a and b themselves: from the head, then from the tail."""
        store = harness.store
        model = stored(store, entries(1, 10))
        store.delete_range(1, 3)
        model.delete_range(1, 3)
        assert store.first_index() == 4
        with pytest.raises(LogNotFoundError):
            store.get_log(3)
        store.delete_range(8, 10)
        model.delete_range(8, 10)
        assert store.last_index() == 7
        with pytest.raises(LogNotFoundError):
            store.get_log(8)
        store.delete_range(7, 7)
        model.delete_range(7, 7)
        assert store.last_index() == 6
        harness.verify(model)

    def test_delete_range_in_the_middle(self, harness: StoreHarness) -> None:
        """Deleting inside the log leaves a hole and keeps both bounds."""
        harness.forbid("monotonic", "monotonic stores truncate only at the head or the tail")
        store = harness.store
        model = stored(store, entries(1, 10))
        store.delete_range(4, 6)
        model.delete_range(4, 6)
        store.delete_range(8, 8)
        model.delete_range(8, 8)
        assert (store.first_index(), store.last_index()) == (1, 10)
        harness.verify(model)

    def test_delete_range_past_the_ends(self, harness: StoreHarness) -> None:
        """Ranges that reach beyond the stored entries are clamped to them."""
        store = harness.store
        model = stored(store, entries(10, 20))
        for low, high, bounds in ((1, 12, (13, 20)), (18, MAX_INDEX, (13, 17)), (0, 14, (15, 17))):
            store.delete_range(low, high)
            model.delete_range(low, high)
            assert (store.first_index(), store.last_index()) == bounds, f"after ({low}, {high})"
        harness.verify(model)

    @pytest.mark.parametrize(
        ("low", "high"),
        [(10, 20), (0, MAX_INDEX), (5, 30), (1, MAX_INDEX)],
        ids=["exactly", "0..2**64-1", "around", "1..2**64-1"],
    )
    def test_delete_range_everything(self, harness: StoreHarness, low: int, high: int) -> None:
        """Deleting a range that covers every entry empties the log (first/last 0)."""
        store = harness.store
        store.store_logs(entries(10, 20))
        store.set(b"CurrentTerm", b"kept")
        store.delete_range(low, high)
        assert (store.first_index(), store.last_index()) == (0, 0)
        harness.verify(StoreModel(stable={b"CurrentTerm": b"kept"}))

    def test_delete_range_over_nothing(self, harness: StoreHarness) -> None:
        """Ranges holding no entry change nothing, on an empty and on a populated store."""
        store = harness.store
        store.delete_range(1, 10)
        store.delete_range(0, MAX_INDEX)
        assert (store.first_index(), store.last_index()) == (0, 0)
        model = stored(store, entries(10, 20))
        for low, high in ((1, 9), (21, 30), (MAX_INDEX, MAX_INDEX), (0, 0)):
            store.delete_range(low, high)
            assert (store.first_index(), store.last_index()) == (10, 20), f"after ({low}, {high})"
        harness.verify(model)

    def test_delete_range_min_greater_than_max_is_a_no_op(self, harness: StoreHarness) -> None:
        """delete_range(min, max) with min > max deletes nothing."""
        store = harness.store
        model = stored(store, entries(1, 10))
        for low, high in ((5, 4), (10, 1), (MAX_INDEX, 0), (11, 10)):
            store.delete_range(low, high)
            assert (store.first_index(), store.last_index()) == (1, 10), f"after ({low}, {high})"
        harness.verify(model)

    # -- appending after a delete ------------------------------------------------------------------

    @pytest.mark.parametrize("start", [1, 2, 100, 2**32, MAX_INDEX - 2])
    def test_append_after_deleting_everything(self, harness: StoreHarness, start: int) -> None:
        """After deleting every entry, a new log can start at any index."""
        store = harness.store
        store.store_logs(entries(1, 50))
        store.delete_range(0, MAX_INDEX)
        batch = entries(start, start + 2, term=2)
        store.store_logs(batch)
        assert (store.first_index(), store.last_index()) == (start, start + 2)
        model = StoreModel()
        model.store_logs(batch)
        harness.verify(model)

    def test_append_below_after_deleting_everything(self, harness: StoreHarness) -> None:
        """After a new log started high, an entry below it moves first_index down."""
        harness.forbid("monotonic", "monotonic stores append only after the last index")
        store = harness.store
        store.store_logs(entries(1, 50))
        store.delete_range(0, MAX_INDEX)
        model = stored(store, entries(100, 102), entries(5, 6))
        assert (store.first_index(), store.last_index()) == (5, 102)
        harness.verify(model)

    def test_new_term_after_suffix_delete(self, harness: StoreHarness) -> None:
        """Raft's conflict path: delete_range(i, last) then store a new term from i, twice."""
        store = harness.store
        model = stored(store, entries(1, 10, term=1))
        for conflict, new_last, term in ((6, 8, 2), (8, 12, 3), (3, 3, 4)):
            store.delete_range(conflict, store.last_index())
            model.delete_range(conflict, MAX_INDEX)
            assert store.last_index() == conflict - 1
            with pytest.raises(LogNotFoundError):
                store.get_log(conflict)
            batch = entries(conflict, new_last, term=term)
            store.store_logs(batch)
            model.store_logs(batch)
            assert store.last_index() == new_last
            assert store.get_log(conflict).term == term
            assert store.get_log(conflict - 1).term < term
        harness.verify(model)

    def test_first_index_after_deleting_a_large_prefix(self, harness: StoreHarness) -> None:
        """first_index is right after compacting a large prefix, step by step and then at once."""
        store = harness.store
        count = self.large_prefix_count
        keep = 10
        for start in range(1, count + 1, 1000):
            store.store_logs(entries(start, min(start + 999, count)))
        assert (store.first_index(), store.last_index()) == (1, count)
        cut = count - keep
        step = max(1, cut // 20)
        for high in range(step, cut // 2, step):
            store.delete_range(store.first_index(), high)
            assert store.first_index() == high + 1
        store.delete_range(0, cut)
        for _ in range(1000):
            assert store.first_index() == cut + 1
        assert store.last_index() == count
        with pytest.raises(LogNotFoundError):
            store.get_log(cut)
        model = StoreModel()
        model.store_logs(entries(cut + 1, count))
        store = harness.verify(model)
        assert store.first_index() == cut + 1
        more = entries(count + 1, count + 5)
        store.store_logs(more)
        model.store_logs(more)
        assert store.first_index() == cut + 1
        harness.verify(model)
