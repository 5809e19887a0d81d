"""What the suite's topic mixins share: entry builders, data tables and the scenario sizes.

The tables are ``pytest.param`` lists whose ids are part of every test id
(``test_read_only_refuses_writes[set]``): renaming one renames a test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings

from raftstore.errors import InvalidArgumentError, InvalidLogError
from raftstore.log import MAX_INDEX, MAX_UINT64, Log, LogType
from raftstore.testing.harness import StoreUnderTest
from raftstore.testing.model import StoreModel

__all__ = [
    "BAD_CALLS",
    "BAD_ITEMS",
    "BOUNDARY_IDS",
    "CALLS_AFTER_CLOSE",
    "ROUND_TRIP_LOGS",
    "UINT64_VALUES",
    "WRITES",
    "Call",
    "CallerInt",
    "LyingInt",
    "PlannedError",
    "SuiteSettings",
    "entries",
    "payload",
    "populated",
    "stamp",
    "stored",
    "unchecked_log",
    "use_and_fail",
]


class SuiteSettings:
    """How big the heavy scenarios are; every topic mixin inherits these class attributes.

    A subclass of `RaftStoreConformance` overrides any of them to make the
    suite lighter (or heavier) for its store.
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


# -- building entries ------------------------------------------------------------------------------


def payload(index: int, term: int, size: int = 16) -> bytes:
    """Data of *size* bytes (at least 16) naming *index* and *term*: a mixed-up entry shows."""
    head = index.to_bytes(8, "big") + term.to_bytes(8, "big")
    return head + bytes([(index * 7 + term) % 251]) * max(0, size - len(head))


def entries(first: int, last: int, term: int = 1, size: int = 16) -> list[Log]:
    """Logs ``first..last`` (inclusive) of *term*, each carrying its own `payload`."""
    return [Log(index, term, data=payload(index, term, size)) for index in range(first, last + 1)]


def unchecked_log(*fields: Any, **named: Any) -> Log:
    """A `Log` built from fields of any type, to feed the store invalid entries."""
    return Log(*fields, **named)


class CallerInt(int):
    """A caller's own int type."""


class LyingInt(int):
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


def stamp(version: int) -> bytes:
    """A 256-byte stable value made of *version* repeated: a torn write mixes versions."""
    return version.to_bytes(8, "big") * 32


# -- filling a store -------------------------------------------------------------------------------


class PlannedError(Exception):
    """Raised inside a ``with`` block to check that the block still closes the store."""


def use_and_fail(store: StoreUnderTest) -> None:
    """Write inside ``with store`` and raise `PlannedError` before the block ends."""
    with store:
        store.set(b"inside", b"with")
        raise PlannedError


def stored(store: StoreUnderTest, *batches: list[Log]) -> StoreModel:
    """Store each of *batches* in *store*, in order; return a model holding the same entries."""
    model = StoreModel()
    for batch in batches:
        store.store_logs(batch)
        model.store_logs(batch)
    return model


def populated(store: StoreUnderTest, batch: list[Log]) -> StoreModel:
    """Store *batch*, ``key`` = ``value`` and the uint64 ``number`` = 7; return their model."""
    model = stored(store, batch)
    store.set(b"key", b"value")
    model.set(b"key", b"value")
    store.set_uint64(b"number", 7)
    model.set_uint64(b"number", 7)
    return model


# -- data tables -----------------------------------------------------------------------------------

#: A call made on a store: a table row's action.
Call = Callable[[Any], object]

#: Test ids of `raftstore.testing.model.BOUNDARY_PAIRS`, in its order.
BOUNDARY_IDS = ["9/10", "255/256", "65535/65536", "2**32", "2**63", "2**64-1"]

#: Every method, each of which must raise StoreClosedError on a closed store.
CALLS_AFTER_CLOSE: list[Any] = [
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

#: Every kind of write, each of which a read-only handle must refuse.
WRITES: list[Any] = [
    pytest.param(lambda s: s.store_log(Log(3, 1)), id="store_log"),
    pytest.param(lambda s: s.store_logs([Log(3, 1), Log(4, 1)]), id="store_logs"),
    pytest.param(lambda s: s.delete_range(1, 1), id="delete_range"),
    pytest.param(lambda s: s.delete_range(0, MAX_INDEX), id="delete_range-all"),
    pytest.param(lambda s: s.set(b"key", b"other"), id="set"),
    pytest.param(lambda s: s.set_uint64(b"number", 8), id="set_uint64"),
]

#: Items store_logs must refuse with InvalidLogError, by name.
BAD_ITEMS: list[tuple[str, object]] = [
    ("tuple", (2, 1)),
    ("none", None),
    ("index-0", Log(0, 1)),
    ("index-negative", Log(-1, 1)),
    ("index-2**64", Log(2**64, 1)),
    ("index-str", unchecked_log("2", 1)),
    ("term-negative", Log(2, -1)),
    ("term-2**64", Log(2, 2**64)),
    ("type-6", unchecked_log(2, 1, type=6)),
    ("data-str", unchecked_log(2, 1, data="x")),
    ("data-bytearray", unchecked_log(2, 1, data=bytearray(b"x"))),
    ("data-none", unchecked_log(2, 1, data=None)),
    ("extensions-str", unchecked_log(2, 1, extensions="x")),
    ("extensions-bytearray", unchecked_log(2, 1, extensions=bytearray(b"x"))),
    ("appended_at-2**63", Log(2, 1, appended_at=2**63)),
    ("appended_at-below-int64", Log(2, 1, appended_at=-(2**63) - 1)),
    ("appended_at-float", unchecked_log(2, 1, appended_at=1.5)),
]


def _storing(item: object) -> Call:
    """A call that stores *item* alone with store_log."""
    return lambda store: store.store_log(item)


#: Calls with a wrong-typed or out-of-range argument, and the error each must raise.
BAD_CALLS: list[Any] = [
    pytest.param(lambda s: s.get_log(-1), InvalidArgumentError, id="get_log-negative"),
    pytest.param(lambda s: s.get_log(2**64), InvalidArgumentError, id="get_log-2**64"),
    pytest.param(lambda s: s.get_log("1"), InvalidArgumentError, id="get_log-str"),
    pytest.param(lambda s: s.get_log(1.0), InvalidArgumentError, id="get_log-float"),
    *(
        pytest.param(_storing(item), InvalidLogError, id=f"store_log-{name}")
        for name, item in BAD_ITEMS
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

#: Logs whose six fields must come back exactly, at their extremes.
ROUND_TRIP_LOGS: list[Any] = [
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

#: uint64 values around every byte boundary, both ends included.
UINT64_VALUES = [0, 1, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
