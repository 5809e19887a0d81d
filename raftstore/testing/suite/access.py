"""Who may open the store: read-only handles, the writer's lock, and the codec it was made with."""

from __future__ import annotations

from typing import Any

import pytest

from raftstore.errors import CodecMismatchError, ReadOnlyError, StoreLockedError
from raftstore.testing.harness import StoreHarness
from raftstore.testing.model import StoreModel, assert_store_matches
from raftstore.testing.suite.cases import WRITES, Call, SuiteSettings, entries, populated, stored

__all__ = ["AccessTests"]


class AccessTests(SuiteSettings):
    """Read-only handles refuse writes, a second writer is locked out, another codec is refused."""

    @pytest.mark.parametrize("write", WRITES)
    def test_read_only_refuses_writes(self, harness: StoreHarness, write: Call) -> None:
        """Through a read_only=True handle reads work and every write raises ReadOnlyError."""
        harness.require("read_only")
        harness.require("persistent")
        store = harness.store
        model = populated(store, entries(1, 2))
        store.close()
        reader: Any = harness.reopen(read_only=True)
        assert reader.read_only is True
        assert_store_matches(reader, model, "read-only handle")
        with pytest.raises(ReadOnlyError):
            write(reader)
        assert_store_matches(reader, model, "read-only handle after the refused write")
        harness.verify(model, "writable again")

    def test_read_only_handle_beside_a_writer(self, harness: StoreHarness) -> None:
        """A read_only=True handle opens while a writer has the store, and reads its commits."""
        harness.require("concurrent_readers")
        writer = harness.store
        writer.store_logs(entries(1, 3))
        reader = harness.open(read_only=True)
        assert reader.last_index() == 3
        writer.store_logs(entries(4, 5))
        assert reader.last_index() == 5
        assert reader.get_log(5) == entries(5, 5)[0]

    def test_second_writer_is_refused(self, harness: StoreHarness) -> None:
        """While one writer has the store, another open raises StoreLockedError; close frees it."""
        harness.require("locking")
        store = harness.store
        store.store_logs(entries(1, 3))
        with pytest.raises(StoreLockedError):
            harness.open()
        store.store_logs(entries(4, 5))
        assert store.last_index() == 5
        store.close()
        second = harness.open()
        assert second.last_index() == 5
        model = StoreModel()
        model.store_logs(entries(1, 5))
        assert_store_matches(second, model, "second writer after the first closed")

    def test_codec_mismatch_on_reopen(self, harness: StoreHarness) -> None:
        """Reopening with another codec raises CodecMismatchError; the store stays intact."""
        harness.require("persistent")
        store = harness.store
        codec = store.codec
        other = "pickle" if codec != "pickle" else "msgpack"
        model = stored(store, entries(1, 3))
        store.close()
        with pytest.raises(CodecMismatchError):
            harness.open(codec=other)
        same = harness.reopen(codec=codec)
        assert same.codec == codec
        harness.verify(model)
