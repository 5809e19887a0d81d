"""`RaftStoreConformance`: the contract of DESIGN §3, §4 and §6 as pytest tests.

Subclass it in a test module and override the ``open_store`` fixture; every
test then runs against your store. Tests that need a capability your store
does not declare (persistence, read-only opens, locking; or the absence of
monotonicity) are skipped with the reason. Every scenario ends by comparing
the store with a plain-dict model, and for persistent stores by closing,
reopening and comparing again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings

from raftstore.errors import (
    CodecMismatchError,
    CorruptionError,
    InvalidArgumentError,
    InvalidLogError,
    LogNotFoundError,
    ReadOnlyError,
    StoreClosedError,
    StoreLockedError,
)
from raftstore.log import MAX_INDEX, MAX_UINT64, Log, LogType
from raftstore.protocols import Capabilities
from raftstore.testing.harness import OpenStore, StoreHarness, StoreUnderTest
from raftstore.testing.machine import run_store_state_machine
from raftstore.testing.model import BOUNDARY_PAIRS, StoreModel, assert_store_matches

__all__ = ["BOUNDARY_PAIRS", "RaftStoreConformance", "entries", "payload"]

_BOUNDARY_IDS = ["9/10", "255/256", "65535/65536", "2**32", "2**63", "2**64-1"]

_Call = Callable[[Any], object]


def payload(index: int, term: int, size: int = 16) -> bytes:
    """Data of *size* bytes (at least 16) naming *index* and *term*: a mixed-up entry shows."""
    head = index.to_bytes(8, "big") + term.to_bytes(8, "big")
    return head + bytes([(index * 7 + term) % 251]) * max(0, size - len(head))


def entries(first: int, last: int, term: int = 1, size: int = 16) -> list[Log]:
    """Logs ``first..last`` (inclusive) of *term*, each carrying its own `payload`."""
    return [Log(index, term, data=payload(index, term, size)) for index in range(first, last + 1)]


def _unchecked_log(*fields: Any, **named: Any) -> Log:
    """A `Log` built from fields of any type, to feed the store invalid entries."""
    return Log(*fields, **named)


class _Term(int):
    """A caller's own int type."""


class _Lying(int):
    """An int whose comparisons and conversions lie: only its value may reach the disk."""

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return False

    def __int__(self) -> int:
        return 1

    def __index__(self) -> int:
        return 1

    __hash__ = int.__hash__


def _stamp(version: int) -> bytes:
    """A 256-byte stable value made of *version* repeated: a torn write mixes versions."""
    return version.to_bytes(8, "big") * 32


def _use_and_fail(store: StoreUnderTest) -> None:
    with store:
        store.set(b"inside", b"with")
        raise _PlannedError


class _PlannedError(Exception):
    """Raised inside a ``with`` block to check that the block still closes the store."""


def _stored(store: StoreUnderTest, *batches: list[Log]) -> StoreModel:
    """Store each of *batches* in *store*, in order; return a model holding the same entries."""
    model = StoreModel()
    for batch in batches:
        store.store_logs(batch)
        model.store_logs(batch)
    return model


def _populated(store: StoreUnderTest, batch: list[Log]) -> StoreModel:
    """Store *batch*, ``key`` = ``value`` and the uint64 ``number`` = 7; return their model."""
    model = _stored(store, batch)
    store.set(b"key", b"value")
    model.set(b"key", b"value")
    store.set_uint64(b"number", 7)
    model.set_uint64(b"number", 7)
    return model


_CALLS_AFTER_CLOSE: list[Any] = [
    pytest.param(lambda s: s.first_index(), id="first_index"),
    pytest.param(lambda s: s.last_index(), id="last_index"),
    pytest.param(lambda s: s.get_log(1), id="get_log"),
    pytest.param(lambda s: s.store_log(Log(3, 1)), id="store_log"),
    pytest.param(lambda s: s.store_logs([Log(3, 1)]), id="store_logs"),
    pytest.param(lambda s: s.store_logs([]), id="store_logs-empty"),
    pytest.param(lambda s: s.delete_range(1, 1), id="delete_range"),
    pytest.param(lambda s: s.set(b"key", b"value"), id="set"),
    pytest.param(lambda s: s.get(b"key"), id="get"),
    pytest.param(lambda s: s.set_uint64(b"key", 1), id="set_uint64"),
    pytest.param(lambda s: s.get_uint64(b"key"), id="get_uint64"),
    pytest.param(lambda s: s.sync(), id="sync"),
]

_WRITES: list[Any] = [
    pytest.param(lambda s: s.store_log(Log(3, 1)), id="store_log"),
    pytest.param(lambda s: s.store_logs([Log(3, 1), Log(4, 1)]), id="store_logs"),
    pytest.param(lambda s: s.delete_range(1, 1), id="delete_range"),
    pytest.param(lambda s: s.delete_range(0, MAX_INDEX), id="delete_range-all"),
    pytest.param(lambda s: s.set(b"key", b"other"), id="set"),
    pytest.param(lambda s: s.set_uint64(b"number", 8), id="set_uint64"),
]

#: Items store_logs must refuse with InvalidLogError, by name.
_BAD_ITEMS: list[tuple[str, object]] = [
    ("tuple", (2, 1)),
    ("none", None),
    ("index-0", Log(0, 1)),
    ("index-negative", Log(-1, 1)),
    ("index-2**64", Log(2**64, 1)),
    ("index-str", _unchecked_log("2", 1)),
    ("term-negative", Log(2, -1)),
    ("term-2**64", Log(2, 2**64)),
    ("type-6", _unchecked_log(2, 1, type=6)),
    ("data-str", _unchecked_log(2, 1, data="x")),
    ("data-bytearray", _unchecked_log(2, 1, data=bytearray(b"x"))),
    ("data-none", _unchecked_log(2, 1, data=None)),
    ("extensions-str", _unchecked_log(2, 1, extensions="x")),
    ("extensions-bytearray", _unchecked_log(2, 1, extensions=bytearray(b"x"))),
    ("appended_at-2**63", Log(2, 1, appended_at=2**63)),
    ("appended_at-below-int64", Log(2, 1, appended_at=-(2**63) - 1)),
    ("appended_at-float", _unchecked_log(2, 1, appended_at=1.5)),
]


def _storing(item: object) -> _Call:
    """A call that stores *item* alone with store_log."""
    return lambda store: store.store_log(item)


_BAD_CALLS: list[Any] = [
    pytest.param(lambda s: s.get_log(-1), InvalidArgumentError, id="get_log-negative"),
    pytest.param(lambda s: s.get_log(2**64), InvalidArgumentError, id="get_log-2**64"),
    pytest.param(lambda s: s.get_log("1"), InvalidArgumentError, id="get_log-str"),
    pytest.param(lambda s: s.get_log(1.0), InvalidArgumentError, id="get_log-float"),
    *(
        pytest.param(_storing(item), InvalidLogError, id=f"store_log-{name}")
        for name, item in _BAD_ITEMS
    ),
    pytest.param(
        lambda s: s.store_logs([Log(6, 1), (7, 1)]), InvalidLogError, id="store_logs-tuple-item"
    ),
    pytest.param(lambda s: s.store_logs(None), InvalidArgumentError, id="store_logs-none"),
    pytest.param(lambda s: s.store_logs(Log(6, 1)), InvalidArgumentError, id="store_logs-one-log"),
    pytest.param(lambda s: s.delete_range(-1, 3), InvalidArgumentError, id="delete_range-negative"),
    pytest.param(lambda s: s.delete_range(1, 2**64), InvalidArgumentError, id="delete_range-2**64"),
    pytest.param(lambda s: s.delete_range("1", 3), InvalidArgumentError, id="delete_range-str"),
    pytest.param(lambda s: s.delete_range(1, None), InvalidArgumentError, id="delete_range-none"),
    pytest.param(lambda s: s.set("key", b"v"), InvalidArgumentError, id="set-str-key"),
    pytest.param(lambda s: s.set(None, b"v"), InvalidArgumentError, id="set-none-key"),
    pytest.param(lambda s: s.set(b"key", "v"), InvalidArgumentError, id="set-str-value"),
    pytest.param(lambda s: s.set(b"key", None), InvalidArgumentError, id="set-none-value"),
    pytest.param(lambda s: s.set(b"key", 5), InvalidArgumentError, id="set-int-value"),
    pytest.param(lambda s: s.get("key"), InvalidArgumentError, id="get-str-key"),
    pytest.param(lambda s: s.set_uint64(b"number", -1), InvalidArgumentError, id="uint64-negative"),
    pytest.param(lambda s: s.set_uint64(b"number", 2**64), InvalidArgumentError, id="uint64-2**64"),
    pytest.param(lambda s: s.set_uint64(b"number", "1"), InvalidArgumentError, id="uint64-str"),
    pytest.param(lambda s: s.set_uint64(b"number", 1.0), InvalidArgumentError, id="uint64-float"),
    pytest.param(lambda s: s.set_uint64("number", 1), InvalidArgumentError, id="uint64-str-key"),
    pytest.param(lambda s: s.get_uint64("number"), InvalidArgumentError, id="get_uint64-str-key"),
]

_ROUND_TRIP_LOGS: list[Any] = [
    pytest.param(Log(1, 0), id="defaults"),
    pytest.param(Log(1, 1, data=b""), id="empty-data"),
    pytest.param(Log(1, 1, data=bytes(range(256)) * 4096), id="1MiB-data"),
    pytest.param(
        Log(1, 1, data=bytes(range(256)), extensions=bytes(range(255, -1, -1))),
        id="every-byte-value",
    ),
    pytest.param(Log(1, 1, extensions=b"e" * 65536), id="64KiB-extensions"),
    pytest.param(Log(MAX_INDEX, MAX_UINT64), id="max-index-max-term"),
    pytest.param(Log(1, 1, appended_at=-(2**63)), id="appended_at-min"),
    pytest.param(Log(1, 1, appended_at=2**63 - 1), id="appended_at-max"),
    pytest.param(Log(1, 1, appended_at=-1), id="appended_at-minus-one"),
    pytest.param(Log(1, 1, appended_at=time.time_ns()), id="appended_at-now"),
    pytest.param(
        Log(
            12,
            7,
            LogType.CONFIGURATION,
            data=b"\x00config\xff",
            extensions=b"\x01ext",
            appended_at=1_700_000_000_123_456_789,
        ),
        id="every-field",
    ),
]

_UINT64_VALUES = [0, 1, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


class RaftStoreConformance:
    """The conformance suite: subclass it and override the ``open_store`` fixture.

    ``open_store(**kw)`` must open the same store again on every call (after
    the previous handle was closed) and accept at least ``codec``, ``sync``
    and ``read_only``. Capabilities come from the opened store's
    ``capabilities`` attribute; override the ``capabilities`` fixture for a
    store that has none. The class attributes below size the heavy scenarios.
    """

    #: Entries stored and then deleted as a prefix before checking first_index.
    large_prefix_count: ClassVar[int] = 20_000
    #: Entries in the batch that must be atomic and complete (with the entry
    #: size, enough to overflow LMDB's classic 10 MiB map).
    large_batch_count: ClassVar[int] = 3_000
    #: Bytes of data in each entry of that batch.
    large_batch_entry_size: ClassVar[int] = 8 * 1024
    #: Batches the writer stores while readers read, in the concurrency scenario.
    concurrent_batches: ClassVar[int] = 150
    #: Reader threads in the concurrency scenario.
    concurrent_readers: ClassVar[int] = 3
    #: Most operations each reader thread performs (bounds the scenario).
    reader_max_ops: ClassVar[int] = 20_000
    #: Settings of the Hypothesis state machine.
    state_machine_settings: ClassVar[settings] = settings(
        max_examples=30,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

    # -- hooks ------------------------------------------------------------------

    @pytest.fixture
    def open_store(self) -> OpenStore:
        """Return ``open_store(**kw)`` opening the store under test; subclasses must override it."""
        pytest.fail(
            f"{type(self).__name__} subclasses RaftStoreConformance but does not override the"
            " `open_store` fixture. Define it as a method of the class (a fixture of the same"
            " name in a conftest.py is shadowed by this one), e.g.\n\n"
            "    @pytest.fixture\n"
            "    def open_store(self, tmp_path):\n"
            "        return lambda **kw: raftstore.open(\n"
            "            tmp_path / 'db', engine='myengine', **kw)\n",
            pytrace=False,
        )

    @pytest.fixture
    def capabilities(self, open_store: OpenStore) -> Capabilities:
        """The store's `Capabilities`, read from a freshly opened handle's ``capabilities``."""
        store = open_store()
        try:
            declared = getattr(store, "capabilities", None)
        finally:
            store.close()
        if not isinstance(declared, Capabilities):
            pytest.fail(
                f"{type(store).__name__} has no `capabilities` attribute holding a"
                " raftstore.Capabilities; add one, or override the `capabilities` fixture",
                pytrace=False,
            )
        return declared

    @pytest.fixture
    def harness(self, open_store: OpenStore, capabilities: Capabilities) -> Iterator[StoreHarness]:
        """A `StoreHarness` over the store; closes every handle the test opened."""
        harness = StoreHarness(open_store, capabilities)
        yield harness
        harness.close_all()

    # -- the empty store and attributes -------------------------------------------

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

    # -- storing and reading logs -------------------------------------------------

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
        model = _stored(store, entries(1, 3))
        store.store_logs([])
        harness.verify(model)

    @pytest.mark.parametrize(("low", "high"), BOUNDARY_PAIRS, ids=_BOUNDARY_IDS)
    def test_numeric_order_across_byte_boundary(
        self, harness: StoreHarness, low: int, high: int
    ) -> None:
        """Indexes order numerically across a byte boundary: low-1, low, high keep their order."""
        store = harness.store
        model = _stored(store, entries(low - 1, high))
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
        model = _stored(store, entries(1, 5), entries(3, 4, term=2), entries(5, 5, term=3))
        assert store.get_log(3).term == 2
        assert (store.first_index(), store.last_index()) == (1, 5)
        harness.verify(model)

    def test_gaps_are_allowed(self, harness: StoreHarness) -> None:
        """Batches with gaps between and inside them are stored as given."""
        harness.forbid("monotonic", "monotonic stores refuse gaps")
        store = harness.store
        model = _stored(store, entries(10, 12), entries(1, 2), [Log(20, 1), Log(30, 1), Log(25, 2)])
        assert (store.first_index(), store.last_index()) == (1, 30)
        with pytest.raises(LogNotFoundError):
            store.get_log(5)
        harness.verify(model)

    # -- delete_range ---------------------------------------------------------------

    def test_delete_range_is_inclusive_at_both_ends(self, harness: StoreHarness) -> None:
        """delete_range(a, b) deletes a and b themselves: from the head, then from the tail."""
        store = harness.store
        model = _stored(store, entries(1, 10))
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
        model = _stored(store, entries(1, 10))
        store.delete_range(4, 6)
        model.delete_range(4, 6)
        store.delete_range(8, 8)
        model.delete_range(8, 8)
        assert (store.first_index(), store.last_index()) == (1, 10)
        harness.verify(model)

    def test_delete_range_past_the_ends(self, harness: StoreHarness) -> None:
        """Ranges that reach beyond the stored entries are clamped to them."""
        store = harness.store
        model = _stored(store, entries(10, 20))
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
        model = _stored(store, entries(10, 20))
        for low, high in ((1, 9), (21, 30), (MAX_INDEX, MAX_INDEX), (0, 0)):
            store.delete_range(low, high)
            assert (store.first_index(), store.last_index()) == (10, 20), f"after ({low}, {high})"
        harness.verify(model)

    def test_delete_range_min_greater_than_max_is_a_no_op(self, harness: StoreHarness) -> None:
        """delete_range(min, max) with min > max deletes nothing."""
        store = harness.store
        model = _stored(store, entries(1, 10))
        for low, high in ((5, 4), (10, 1), (MAX_INDEX, 0), (11, 10)):
            store.delete_range(low, high)
            assert (store.first_index(), store.last_index()) == (1, 10), f"after ({low}, {high})"
        harness.verify(model)

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
        model = _stored(store, entries(100, 102), entries(5, 6))
        assert (store.first_index(), store.last_index()) == (5, 102)
        harness.verify(model)

    def test_new_term_after_suffix_delete(self, harness: StoreHarness) -> None:
        """Raft's conflict path: delete_range(i, last) then store a new term from i, twice."""
        store = harness.store
        model = _stored(store, entries(1, 10, term=1))
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

    # -- atomic batches -------------------------------------------------------------------

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
        model = _stored(store, entries(1, 2))
        count = self.large_batch_count
        batch: list[Any] = entries(3, count + 2, size=self.large_batch_entry_size)
        batch.append(_unchecked_log(count + 3, 1, data=bytearray(b"not bytes")))
        with pytest.raises(InvalidLogError):
            store.store_logs(batch)
        harness.verify(model)

    @pytest.mark.parametrize("bad", [pytest.param(item, id=name) for name, item in _BAD_ITEMS])
    def test_bad_item_mid_batch_stores_nothing(self, harness: StoreHarness, bad: object) -> None:
        """A batch with an invalid item in its middle raises InvalidLogError, stores none of it."""
        store = harness.store
        model = _stored(store, entries(1, 5))
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
        model = _stored(store, entries(1, 10))
        batch: list[Any] = entries(3, 12, term=2)
        batch.insert(4, Log(0, 2))
        with pytest.raises(InvalidLogError):
            store.store_logs(batch)
        assert store.get_log(3).term == 1
        harness.verify(model)

    # -- stable store ------------------------------------------------------------------------

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

    @pytest.mark.parametrize("value", _UINT64_VALUES)
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

    # -- lifecycle --------------------------------------------------------------------------

    def test_close_is_idempotent(self, harness: StoreHarness) -> None:
        """close() twice is fine; closed turns True."""
        store = harness.store
        store.store_log(Log(1, 1))
        assert store.closed is False
        store.close()
        assert store.closed is True
        store.close()
        assert store.closed is True

    @pytest.mark.parametrize("call", _CALLS_AFTER_CLOSE)
    def test_every_method_after_close_raises(self, harness: StoreHarness, call: _Call) -> None:
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
        with pytest.raises(_PlannedError):
            _use_and_fail(store)
        assert store.closed
        with pytest.raises(StoreClosedError):
            store.get(b"inside")
        if harness.capabilities.persistent:
            model = StoreModel()
            model.set(b"inside", b"with")
            harness.verify(model, "written inside the failed with block")

    def test_reopen_keeps_everything(self, harness: StoreHarness) -> None:
        """Logs, stable values and uint64s survive two close/reopen cycles unchanged."""
        harness.require("persistent")
        store = harness.store
        batch = [Log(i, 3, LogType(i % 6), payload(i, 3), b"x" * i, -i) for i in range(1, 40)]
        model = _stored(store, batch)
        store.set(b"LastVoteCand", b"node-3")
        model.set(b"LastVoteCand", b"node-3")
        store.set_uint64(b"CurrentTerm", 3)
        model.set_uint64(b"CurrentTerm", 3)
        harness.verify(model)
        harness.verify(model, "second reopen")

    # -- commit tracking (hashicorp CommitTrackingLogStore) -----------------------------------

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
            store.store_logs([Log(4, 1), _unchecked_log(0, 1)])
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

    # -- read-only, locking, codec -------------------------------------------------------

    @pytest.mark.parametrize("write", _WRITES)
    def test_read_only_refuses_writes(self, harness: StoreHarness, write: _Call) -> None:
        """Through a read_only=True handle reads work and every write raises ReadOnlyError."""
        harness.require("read_only")
        harness.require("persistent")
        store = harness.store
        model = _populated(store, entries(1, 2))
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
        model = _stored(store, entries(1, 3))
        store.close()
        with pytest.raises(CodecMismatchError):
            harness.open(codec=other)
        same = harness.reopen(codec=codec)
        assert same.codec == codec
        harness.verify(model)

    # -- round trips --------------------------------------------------------------------------

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

    @pytest.mark.parametrize("log", _ROUND_TRIP_LOGS)
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
            Log(_Term(1), _Term(2), LogType.NOOP, appended_at=_Term(5)),
            Log(LogType.ADD_PEER_DEPRECATED, _Lying(7), data=b"x"),  # index 2, term 7
            _unchecked_log(_Lying(3), 7, 1),  # type given as a plain int
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

    # -- sync -------------------------------------------------------------------------------

    def test_sync_false_then_sync(self, harness: StoreHarness) -> None:
        """A store opened with sync=False takes writes, sync() flushes them, reopen shows them."""
        store = harness.reopen(sync=False)
        model = _stored(store, entries(1, 20))
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

    # -- threads ------------------------------------------------------------------------------

    def test_readers_never_see_torn_values(self, harness: StoreHarness) -> None:
        """Reader threads during one writer see whole batches and whole values, in order."""
        store = harness.store
        batch_size, entry_size = 4, 256
        batches = self.concurrent_batches
        done = threading.Event()
        failures: list[BaseException] = []

        def write() -> None:
            try:
                for version in range(1, batches + 1):
                    first = (version - 1) * batch_size + 1
                    store.store_logs(entries(first, first + batch_size - 1, version, entry_size))
                    store.set(b"version", _stamp(version))
                    store.set_uint64(b"version64", version)
            except BaseException as exc:
                failures.append(exc)
            finally:
                done.set()

        def read() -> None:
            last_seen = version_seen = number_seen = 0
            try:
                for ops in range(self.reader_max_ops):
                    if done.is_set() and ops >= 100:
                        break
                    last = store.last_index()
                    assert last % batch_size == 0, f"last_index {last} is inside a batch"
                    assert last >= last_seen, f"last_index went back from {last_seen} to {last}"
                    last_seen = last
                    if last:
                        assert store.first_index() == 1
                        log = store.get_log(last)
                        assert log.term == last // batch_size
                        assert log.data == payload(last, log.term, entry_size), "torn log data"
                    value = store.get(b"version")
                    if value is not None:
                        version = int.from_bytes(value[:8], "big")
                        assert value == _stamp(version), "torn stable value"
                        assert version >= version_seen
                        version_seen = version
                    number = store.get_uint64(b"version64")
                    assert number >= number_seen
                    number_seen = number
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=write, name="raftstore-conformance-writer")]
        threads += [
            threading.Thread(target=read, name=f"raftstore-conformance-reader-{n}")
            for n in range(self.concurrent_readers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        model = StoreModel()
        for version in range(1, batches + 1):
            first = (version - 1) * batch_size + 1
            model.store_logs(entries(first, first + batch_size - 1, version, entry_size))
        model.set(b"version", _stamp(batches))
        model.set_uint64(b"version64", batches)
        harness.verify(model)

    # -- bad arguments --------------------------------------------------------------------------

    @pytest.mark.parametrize(("call", "error"), _BAD_CALLS)
    def test_bad_argument_raises_and_changes_nothing(
        self, harness: StoreHarness, call: _Call, error: type[Exception]
    ) -> None:
        """A wrong-typed or out-of-range argument raises the documented error; nothing changes."""
        store = harness.store
        model = _populated(store, entries(1, 5))
        with pytest.raises(error):
            call(store)
        assert_store_matches(store, model, "right after the refused call")
        more = entries(6, 6)
        store.store_logs(more)
        model.store_logs(more)
        harness.verify(model)

    # -- iteration ------------------------------------------------------------------------------

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

    # -- the model-based state machine ---------------------------------------------------------

    def test_state_machine(self, harness: StoreHarness) -> None:
        """Random operations keep the store equal to a dict model after every step."""
        run_store_state_machine(harness, self.state_machine_settings)
