"""Storing and reading logs: the empty store, bounds, numeric order, gaps, round trips."""

from __future__ import annotations

from typing import Any

import pytest

from raftstore.errors import LogNotFoundError
from raftstore.log import MAX_INDEX, Log, LogType
from raftstore.testing.harness import StoreHarness
from raftstore.testing.model import BOUNDARY_PAIRS, StoreModel, assert_store_matches
from raftstore.testing.suite.cases import (
    BOUNDARY_IDS,
    ROUND_TRIP_LOGS,
    CallerInt,
    LyingInt,
    SuiteSettings,
    entries,
    payload,
    stored,
    unchecked_log,
)

__all__ = ["LogTests"]


class LogTests(SuiteSettings):
    """Logs go in with store_log/store_logs and come back equal from get_log, in numeric order."""

    # -- the empty store ---------------------------------------------------------------------------

    def test_empty_store(self, harness: StoreHarness) -> None:
        """A new store: first/last index 0, no log (index 0 included), no stable key."""
        store = harness.store
        assert store.first_index() == 0
        assert store.last_index() == 0
        for index in (0, 1, 2, MAX_INDEX):
            with pytest.raises(LogNotFoundError):
                store.get_log(index)
        assert store.get(b"CurrentTerm") is None
        assert store.get_uint64(b"CurrentTerm") == 0
        harness.verify(StoreModel(stable={b"CurrentTerm": None, b"LastVoteCand": None}))

    # -- storing and reading logs ------------------------------------------------------------------

    def test_store_log_and_get_log(self, harness: StoreHarness) -> None:
        """store_log stores one entry that get_log returns equal, with its neighbours absent."""
        store = harness.store
        log = Log(1, 1, LogType.COMMAND, data=b"hello", extensions=b"ext", appended_at=123)
        store.store_log(log)
        assert store.get_log(1) == log
        assert (store.first_index(), store.last_index()) == (1, 1)
        with pytest.raises(LogNotFoundError):
            store.get_log(2)
        harness.verify(StoreModel(logs={1: log}))

    def test_last_index_counts_past_single_digits(self, harness: StoreHarness) -> None:
        """After storing 1..10 one by one, last_index is 10 (not 9); then 11..300 in one batch."""
        store = harness.store
        model = StoreModel()
        for log in entries(1, 10):
            store.store_log(log)
            model.store_logs([log])
            assert store.last_index() == log.index
        assert (store.first_index(), store.last_index()) == (1, 10)
        batch = entries(11, 300)
        store.store_logs(batch)
        model.store_logs(batch)
        assert store.last_index() == 300
        harness.verify(model)

    def test_empty_batch_is_a_no_op(self, harness: StoreHarness) -> None:
        """store_logs([]) changes nothing, on an empty store and on a populated one."""
        store = harness.store
        store.store_logs([])
        assert (store.first_index(), store.last_index()) == (0, 0)
        model = stored(store, entries(1, 3))
        store.store_logs([])
        harness.verify(model)

    @pytest.mark.parametrize(("low", "high"), BOUNDARY_PAIRS, ids=BOUNDARY_IDS)
    def test_numeric_order_across_byte_boundary(
        self, harness: StoreHarness, low: int, high: int
    ) -> None:
        """Indexes order numerically across a byte boundary: low-1, low, high keep their order."""
        store = harness.store
        model = stored(store, entries(low - 1, high))
        assert (store.first_index(), store.last_index()) == (low - 1, high)
        assert_store_matches(store, model, "stored across the boundary")
        store.delete_range(high, MAX_INDEX)
        model.delete_range(high, MAX_INDEX)
        assert store.last_index() == low
        store.delete_range(0, low - 1)
        model.delete_range(0, low - 1)
        assert (store.first_index(), store.last_index()) == (low, low)
        harness.verify(model)

    def test_numeric_order_of_every_boundary_in_one_store(self, harness: StoreHarness) -> None:
        """All boundary indexes stored out of order in one batch come back in numeric order."""
        harness.forbid("monotonic", "the batch has gaps")
        store = harness.store
        indexes = [1, 2, 3] + [index for pair in BOUNDARY_PAIRS for index in pair]
        batch = [Log(index, 1, data=payload(index, 1)) for index in reversed(indexes)]
        store.store_logs(batch)
        model = StoreModel()
        model.store_logs(batch)
        assert (store.first_index(), store.last_index()) == (1, MAX_INDEX)
        assert_store_matches(store, model, "every boundary")
        store.delete_range(4, 2**63)
        model.delete_range(4, 2**63)
        assert (store.first_index(), store.last_index()) == (1, MAX_INDEX)
        harness.verify(model)

    def test_overwrite_replaces_entries(self, harness: StoreHarness) -> None:
        """Storing an index again replaces its entry; the bounds stay right."""
        harness.forbid("monotonic", "monotonic stores refuse overwrites")
        store = harness.store
        model = stored(store, entries(1, 5), entries(3, 4, term=2), entries(5, 5, term=3))
        assert store.get_log(3).term == 2
        assert (store.first_index(), store.last_index()) == (1, 5)
        harness.verify(model)

    def test_gaps_are_allowed(self, harness: StoreHarness) -> None:
        """Batches with gaps between and inside them are stored as given."""
        harness.forbid("monotonic", "monotonic stores refuse gaps")
        store = harness.store
        model = stored(store, entries(10, 12), entries(1, 2), [Log(20, 1), Log(30, 1), Log(25, 2)])
        assert (store.first_index(), store.last_index()) == (1, 30)
        with pytest.raises(LogNotFoundError):
            store.get_log(5)
        harness.verify(model)

    # -- round trips -------------------------------------------------------------------------------

    @pytest.mark.parametrize("log_type", list(LogType), ids=[t.name for t in LogType])
    def test_every_log_type_round_trips(self, harness: StoreHarness, log_type: LogType) -> None:
        """Every LogType, with all six fields set, comes back equal and typed as LogType."""
        store = harness.store
        log = Log(7, 3, log_type, data=b"data", extensions=b"ext", appended_at=-5)
        store.store_log(log)
        got = store.get_log(7)
        assert got == log
        assert got.type is log_type
        harness.verify(StoreModel(logs={7: log}))

    @pytest.mark.parametrize("log", ROUND_TRIP_LOGS)
    def test_log_fields_round_trip(self, harness: StoreHarness, log: Log) -> None:
        """All six fields round-trip exactly, at their extremes, with their exact types."""
        store = harness.store
        store.store_log(log)
        got = store.get_log(log.index)
        assert got == log
        assert (type(got.index), type(got.term), type(got.appended_at)) == (int, int, int)
        assert isinstance(got.type, LogType)
        assert (type(got.data), type(got.extensions)) == (bytes, bytes)
        harness.verify(StoreModel(logs={log.index: log}))

    def test_int_subclasses_are_stored_by_value(self, harness: StoreHarness) -> None:
        """Whatever store_logs accepts, get_log returns equal, with plain ints (DESIGN §9).

        An ``IntEnum`` index, a user's ``Term(int)`` and an int whose
        comparisons and ``int()`` lie are all stored by their value.
        """
        store = harness.store
        logs = [
            Log(CallerInt(1), CallerInt(2), LogType.NOOP, appended_at=CallerInt(5)),
            Log(LogType.ADD_PEER_DEPRECATED, LyingInt(7), data=b"x"),  # index 2, term 7
            unchecked_log(LyingInt(3), 7, 1),  # type given as a plain int
        ]
        store.store_logs(logs[:2])
        store.store_log(logs[2])
        expected = {
            1: Log(1, 2, LogType.NOOP, appended_at=5),
            2: Log(2, 7, data=b"x"),
            3: Log(3, 7, LogType.NOOP),
        }
        for index, log in expected.items():
            got = store.get_log(index)
            assert got == log
            assert (type(got.index), type(got.term), type(got.appended_at)) == (int, int, int)
            assert type(got.type) is LogType
        assert (store.first_index(), store.last_index()) == (1, 3)
        harness.verify(StoreModel(logs=expected))

    # -- iteration ---------------------------------------------------------------------------------

    def test_iter_logs_bounds_are_inclusive(self, harness: StoreHarness) -> None:
        """iter_logs (where the store has it) yields low..high inclusive, in index order."""
        store: Any = harness.store
        if not hasattr(store, "iter_logs"):
            pytest.skip("the store has no iter_logs (optional)")
        batch = entries(3, 12)
        store.store_logs(batch)
        assert list(store.iter_logs()) == batch
        assert [log.index for log in store.iter_logs(5, 7)] == [5, 6, 7]
        assert [log.index for log in store.iter_logs(0, 3)] == [3]
        assert [log.index for log in store.iter_logs(12, MAX_INDEX)] == [12]
        assert list(store.iter_logs(8, 7)) == []
