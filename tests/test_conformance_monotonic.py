"""The conformance suite against a monotonic engine: the store layer's monotonic rules.

An engine that declares ``monotonic = True`` (hashicorp ``MonotonicLogStore``)
gets its gaps, overwrites and middle deletes refused by the store before it
sees them. Here that is the in-memory engine with the flag set; the suite
skips the scenarios that need gaps or overwrites, with the reason, and the
tests below check the refusals themselves.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from conformance_support import store_opener

import raftstore
from raftstore import InvalidArgumentError, InvalidLogError, Log
from raftstore.engines.memory import MemoryEngine
from raftstore.testing import OpenStore, RaftStoreConformance


class MonotonicMemoryEngine(MemoryEngine):
    """The in-memory engine, declared monotonic."""

    name: ClassVar[str] = "memory-monotonic"
    monotonic: ClassVar[bool] = True


raftstore.register_engine(
    MonotonicMemoryEngine.name,
    MonotonicMemoryEngine,
    description="in-memory, monotonic (tests)",
    replace=True,
)


class TestMonotonicEngine(RaftStoreConformance):
    """The suite with the monotonic capability: gap and overwrite cases skip with their reason."""

    @pytest.fixture
    def open_store(self) -> OpenStore:
        """A fresh monotonic in-memory store."""
        return store_opener("memory-monotonic://", "msgpack")


@pytest.fixture
def store() -> raftstore.RaftStore:
    opened = raftstore.open("memory-monotonic://")
    assert opened.is_monotonic
    assert opened.capabilities.monotonic
    opened.store_logs([Log(i, 1) for i in range(5, 11)])
    return opened


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param([12], id="gap"),
        pytest.param([10], id="overwrite-last"),
        pytest.param([7, 8], id="overwrite-middle"),
        pytest.param([11, 13], id="gap-inside-batch"),
        pytest.param([12, 11], id="out-of-order"),
        pytest.param([11, 11], id="duplicate"),
    ],
)
def test_a_batch_that_does_not_continue_the_log_is_refused(
    store: raftstore.RaftStore, batch: list[int]
) -> None:
    with pytest.raises(InvalidLogError, match=r"must be index 1[12]"):
        store.store_logs([Log(i, 2) for i in batch])
    if len(batch) == 1:
        with pytest.raises(InvalidLogError, match="must be index 11"):
            store.store_log(Log(batch[0], 2))
    assert (store.first_index(), store.last_index()) == (5, 10)
    assert store.get_log(10) == Log(10, 1)


def test_a_delete_in_the_middle_is_refused(store: raftstore.RaftStore) -> None:
    with pytest.raises(InvalidArgumentError, match="in the middle"):
        store.delete_range(6, 9)
    assert [log.index for log in store.iter_logs()] == list(range(5, 11))


def test_head_and_tail_truncation_then_appends_continue(store: raftstore.RaftStore) -> None:
    store.delete_range(0, 6)  # the head
    store.delete_range(9, 2**64 - 1)  # the tail: raft's conflict path
    store.store_logs([Log(9, 3), Log(10, 3)])
    assert [(log.index, log.term) for log in store.iter_logs()] == [
        (7, 1),
        (8, 1),
        (9, 3),
        (10, 3),
    ]
    store.delete_range(0, 2**64 - 1)
    store.store_log(Log(100, 4))  # an empty log starts anywhere
    assert (store.first_index(), store.last_index()) == (100, 100)
