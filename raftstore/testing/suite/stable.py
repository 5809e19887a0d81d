"""The stable store: set/get, uint64 values, copies, and its separation from the logs."""

from __future__ import annotations

from typing import Any

import pytest

from raftstore.errors import CorruptionError, LogNotFoundError
from raftstore.log import MAX_INDEX, MAX_UINT64, Log
from raftstore.testing.harness import StoreHarness
from raftstore.testing.model import StoreModel, assert_store_matches
from raftstore.testing.suite.cases import UINT64_VALUES, SuiteSettings, entries

__all__ = ["StableTests"]


class StableTests(SuiteSettings):
    """set/get and set_uint64/get_uint64 round-trip, copy their values and never touch the logs."""

    def test_get_of_a_missing_key_is_none_not_empty(self, harness: StoreHarness) -> None:
        """get of an absent key is None; a stored b"" reads back as b"", not None."""
        store = harness.store
        assert store.get(b"missing") is None
        store.set(b"empty", b"")
        assert store.get(b"empty") == b""
        harness.verify(StoreModel(stable={b"missing": None, b"empty": b""}))

    def test_set_round_trips_and_overwrites(self, harness: StoreHarness) -> None:
        """set stores any bytes under any bytes key; a later set replaces the value."""
        store = harness.store
        model = StoreModel()
        values = {
            b"CurrentTerm": b"\x00\x00\x00\x00\x00\x00\x00\x05",
            b"LastVoteCand": b"node-1",
            b"\x00\xff binary \x00 key": bytes(range(256)),
            b"big": bytes(range(256)) * 4096,
            b"short": b"x",
        }
        for key, value in values.items():
            store.set(key, value)
            model.set(key, value)
        for key, value in ((b"LastVoteCand", b"node-2"), (b"big", b"now small"), (b"short", b"")):
            store.set(key, value)
            model.set(key, value)
        assert store.get(b"LastVoteCand") == b"node-2"
        harness.verify(model)

    # -- uint64 values -----------------------------------------------------------------------------

    @pytest.mark.parametrize("value", UINT64_VALUES)
    def test_uint64_round_trips(self, harness: StoreHarness, value: int) -> None:
        """set_uint64 then get_uint64 gives the value back; its raw form is 8 bytes."""
        store = harness.store
        model = StoreModel()
        store.set_uint64(b"CurrentTerm", MAX_UINT64)
        store.set_uint64(b"CurrentTerm", value)
        model.set_uint64(b"CurrentTerm", value)
        assert store.get_uint64(b"CurrentTerm") == value
        raw = store.get(b"CurrentTerm")
        assert raw is not None
        assert len(raw) == 8
        store.set(b"copy", raw)
        assert store.get_uint64(b"copy") == value, "a uint64's raw bytes copied with set"
        model.set_uint64(b"copy", value)
        harness.verify(model)

    def test_get_uint64_of_a_missing_key_is_zero(self, harness: StoreHarness) -> None:
        """get_uint64 of an absent key is 0."""
        store = harness.store
        assert store.get_uint64(b"LastVoteTerm") == 0
        harness.verify(StoreModel(stable={b"LastVoteTerm": None}))

    @pytest.mark.parametrize("size", [0, 1, 4, 7, 9, 16])
    def test_get_uint64_of_a_wrong_size_value_raises(
        self, harness: StoreHarness, size: int
    ) -> None:
        """get_uint64 of a value that is not 8 bytes raises CorruptionError and changes nothing."""
        store = harness.store
        value = bytes(range(1, size + 1))
        store.set(b"LastVoteTerm", value)
        with pytest.raises(CorruptionError):
            store.get_uint64(b"LastVoteTerm")
        assert store.get(b"LastVoteTerm") == value
        harness.verify(StoreModel(stable={b"LastVoteTerm": value}))

    # -- isolation ---------------------------------------------------------------------------------

    def test_values_are_copies(self, harness: StoreHarness) -> None:
        """Mutating a value after set changes nothing stored; values read earlier stay as read."""
        store = harness.store
        loose: Any = store  # set() takes any bytes-like value
        value = bytearray(b"original")
        loose.set(b"array", value)
        value[:] = b"mutated!"
        buffer = bytearray(b"viewed")
        loose.set(b"view", memoryview(buffer))
        buffer[0:1] = b"V"
        got = store.get(b"array")
        assert got == b"original"
        assert type(got) is bytes
        assert store.get(b"view") == b"viewed"
        log = Log(1, 1, data=b"first")
        store.store_log(log)
        read = store.get_log(1)
        store.set(b"array", b"replaced")
        store.delete_range(0, MAX_INDEX)
        store.store_log(Log(1, 2, data=b"second"))
        assert got == b"original", "a value returned by get changed after a later write"
        assert read == log, "a log returned by get_log changed after later writes"
        assert type(read.data) is bytes
        model = StoreModel(logs={1: Log(1, 2, data=b"second")})
        model.set(b"array", b"replaced")
        model.set(b"view", b"viewed")
        harness.verify(model)

    def test_namespaces_are_separate(self, harness: StoreHarness) -> None:
        """Stable keys never count as log indexes, and delete_range never touches them."""
        store = harness.store
        model = StoreModel()
        looks_like_five = (5).to_bytes(8, "big")
        looks_like_max = MAX_INDEX.to_bytes(8, "big")
        store.set(looks_like_five, b"stable five")
        model.set(looks_like_five, b"stable five")
        store.set_uint64(looks_like_max, 9)
        model.set_uint64(looks_like_max, 9)
        store.set_uint64(b"CurrentTerm", 5)
        model.set_uint64(b"CurrentTerm", 5)
        assert (store.first_index(), store.last_index()) == (0, 0)
        with pytest.raises(LogNotFoundError):
            store.get_log(5)
        batch = entries(1, 10)
        store.store_logs(batch)
        model.store_logs(batch)
        model.forget((1).to_bytes(8, "big"))
        assert_store_matches(store, model, "logs and stable keys side by side")
        store.delete_range(0, MAX_INDEX)
        model.delete_range(0, MAX_INDEX)
        store.delete_range(5, 5)
        assert store.get(looks_like_five) == b"stable five"
        assert (store.first_index(), store.last_index()) == (0, 0)
        harness.verify(model)
