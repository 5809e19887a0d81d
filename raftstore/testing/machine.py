"""A Hypothesis state machine that drives a store and a `StoreModel` side by side.

Every rule does the same thing to the store and the model, and after every
step the invariant compares them with `assert_store_matches`. Key-value
stores get random, gapped and overwriting batches and arbitrary delete
ranges; monotonic stores get appends after the last index and truncation at
either end only. Persistent stores are also closed and reopened at random.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from raftstore.errors import InvalidLogError
from raftstore.log import MAX_INDEX, MAX_UINT64, Log, LogType
from raftstore.testing.harness import StoreHarness, StoreUnderTest
from raftstore.testing.model import BOUNDARY_PAIRS, StoreModel, assert_store_matches

__all__ = ["BOUNDARY_INDEXES", "STABLE_KEYS", "run_store_state_machine"]

#: Indexes on either side of a byte-length boundary of their encoding.
BOUNDARY_INDEXES: tuple[int, ...] = tuple(index for pair in BOUNDARY_PAIRS for index in pair)

#: The machine's stable keys: raft's own, plus keys that look like log indexes.
STABLE_KEYS: tuple[bytes, ...] = (
    b"CurrentTerm",
    b"LastVoteTerm",
    b"LastVoteCand",
    (1).to_bytes(8, "big"),
    b"\xff" * 8,
)

_indexes = st.one_of(st.integers(1, 24), st.sampled_from(BOUNDARY_INDEXES))
_range_ends = st.one_of(st.integers(0, 26), st.sampled_from((0, *BOUNDARY_INDEXES)))
_terms = st.one_of(st.integers(0, 5), st.just(MAX_UINT64))
_stable_keys = st.sampled_from(STABLE_KEYS)
_stable_values = st.one_of(st.binary(max_size=24), st.just(b""))
_bad_items = st.sampled_from(
    [
        ("not a log", 1),
        Log(index=0, term=1),
        Log(index=2**64, term=1),
        Log(index=5, term=-1),
        Log(index=5, term=1, data=bytearray(b"x")),  # type: ignore[arg-type]
        Log(index=5, term=1, type=99),  # type: ignore[arg-type]
        Log(index=5, term=1, appended_at=2**63),
    ]
)


@st.composite
def _logs_at(draw: st.DrawFn, index: int) -> Log:
    return Log(
        index=index,
        term=draw(_terms),
        type=draw(st.sampled_from(LogType)),
        data=draw(st.binary(max_size=48)),
        extensions=draw(st.binary(max_size=8)),
        appended_at=draw(st.integers(-(2**63), 2**63 - 1)),
    )


def run_store_state_machine(harness: StoreHarness, machine_settings: settings) -> None:
    """Run the model-comparing state machine against the store *harness* opens.

    The same store is reused between examples, so each example starts by
    deleting every log and reading the machine's stable keys into the model.
    """
    persistent = harness.capabilities.persistent
    monotonic = harness.capabilities.monotonic

    class StoreStateMachine(RuleBasedStateMachine):
        """Random operations on the store and on a dict model, compared after every step."""

        def __init__(self) -> None:
            super().__init__()
            self.model = StoreModel()
            self.store: StoreUnderTest = harness.open()

        @initialize()
        def start_from_an_empty_log(self) -> None:
            self.store.delete_range(0, MAX_INDEX)
            for key in STABLE_KEYS:
                self.model.stable[key] = self.store.get(key)

        @rule(data=st.data())
        def store_logs(self, data: st.DataObject) -> None:
            batch = self._draw_batch(data)
            self.store.store_logs(batch)
            self.model.store_logs(batch)

        @rule(data=st.data())
        def store_one_log(self, data: st.DataObject) -> None:
            batch = self._draw_batch(data, size=1)
            if batch:
                self.store.store_log(batch[0])
                self.model.store_logs(batch)

        @rule(data=st.data(), bad=_bad_items)
        def store_batch_with_a_bad_item(self, data: st.DataObject, bad: object) -> None:
            batch: list[object] = list(self._draw_batch(data))
            batch.insert(data.draw(st.integers(0, len(batch)), label="bad position"), bad)
            with pytest.raises(InvalidLogError):
                self.store.store_logs(batch)  # type: ignore[arg-type]

        @rule(data=st.data())
        def delete_range(self, data: st.DataObject) -> None:
            if monotonic:
                low, high = self._draw_truncation(data)
            else:
                # Ends on and next to stored indexes find off-by-one bugs.
                ends = st.one_of(_range_ends, st.sampled_from(self._near_stored()))
                low = data.draw(ends, label="min_index")
                high = data.draw(ends, label="max_index")
            self.store.delete_range(low, high)
            self.model.delete_range(low, high)

        @rule(key=_stable_keys, value=_stable_values)
        def set(self, key: bytes, value: bytes) -> None:
            self.store.set(key, value)
            self.model.set(key, value)

        @rule(key=_stable_keys, value=st.one_of(st.integers(0, 300), st.just(MAX_UINT64)))
        def set_uint64(self, key: bytes, value: int) -> None:
            self.store.set_uint64(key, value)
            self.model.set_uint64(key, value)

        @precondition(lambda _: persistent)
        @rule()
        def reopen(self) -> None:
            self.store.close()
            self.store = harness.open()

        @invariant()
        def store_matches_model(self) -> None:
            assert_store_matches(self.store, self.model, "state machine")

        def teardown(self) -> None:
            self.store.close()

        def _draw_batch(self, data: st.DataObject, size: int | None = None) -> list[Log]:
            count = size if size is not None else data.draw(st.integers(0, 6), label="batch size")
            if monotonic:
                last = self.model.last_index()
                start = last + 1 if last else data.draw(st.integers(1, 30), label="first index")
                count = min(count, MAX_INDEX - start + 1)
                indexes = list(range(start, start + count))
            else:
                indexes = data.draw(
                    st.lists(_indexes, min_size=count, max_size=count, unique=True),
                    label="indexes",
                )
            return [data.draw(_logs_at(index), label="log") for index in indexes]

        def _near_stored(self) -> list[int]:
            near = {0, MAX_INDEX}
            for index in self.model.logs:
                near.update((index - 1, index, min(index + 1, MAX_INDEX)))
            return sorted(near)

        def _draw_truncation(self, data: st.DataObject) -> tuple[int, int]:
            first, last = self.model.first_index(), self.model.last_index()
            if last == 0:
                return data.draw(_range_ends), data.draw(_range_ends)
            cut = data.draw(st.integers(first, last), label="cut")
            if data.draw(st.booleans(), label="head"):
                return data.draw(st.sampled_from([0, first])), cut
            return cut, data.draw(st.sampled_from([last, MAX_INDEX]))

    run_state_machine_as_test(StoreStateMachine, settings=machine_settings)
