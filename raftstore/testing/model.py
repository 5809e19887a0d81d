"""A plain-dict model of a store and the check that compares a store with it.

The model is what every conformance scenario (and the Hypothesis state
machine) predicts; `assert_store_matches` reads the store through its public
API only, so it works for key-value and non-key-value stores alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from raftstore.errors import CorruptionError, LogNotFoundError
from raftstore.log import MAX_INDEX, Log
from raftstore.protocols import RaftStoreProtocol

__all__ = ["BOUNDARY_PAIRS", "StoreModel", "assert_store_matches"]

#: Pairs of neighbouring indexes whose big-endian encodings differ in length
#: of significant bytes: a store that orders keys as decimal strings or as
#: little-endian bytes gets at least one of them wrong.
BOUNDARY_PAIRS: tuple[tuple[int, int], ...] = (
    (9, 10),
    (255, 256),
    (65535, 65536),
    (2**32 - 1, 2**32),
    (2**63 - 1, 2**63),
    (2**64 - 2, 2**64 - 1),
)


@dataclass
class StoreModel:
    """What a store must hold: logs by index and stable values by key.

    ``stable`` maps a key to its raw value, or to None when the key is known
    to be absent; ``uint64`` holds the keys last written with ``set_uint64``
    (their raw encoding is the store's business, only its length is pinned).
    """

    logs: dict[int, Log] = field(default_factory=dict)
    stable: dict[bytes, bytes | None] = field(default_factory=dict)
    uint64: dict[bytes, int] = field(default_factory=dict)

    def first_index(self) -> int:
        """Lowest index held, 0 when empty."""
        return min(self.logs, default=0)

    def last_index(self) -> int:
        """Highest index held, 0 when empty."""
        return max(self.logs, default=0)

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Record a successful ``store_logs``: later entries replace earlier ones."""
        for log in logs:
            self.logs[log.index] = log

    def delete_range(self, min_index: int, max_index: int) -> None:
        """Record a successful ``delete_range``: both ends inclusive, ``min > max`` no-op."""
        if min_index > max_index:
            return
        if min_index <= self.first_index() and max_index >= self.last_index():
            self.logs.clear()
            return
        for index in [i for i in self.logs if min_index <= i <= max_index]:
            del self.logs[index]

    def set(self, key: bytes, value: bytes | bytearray | memoryview) -> None:
        """Record a successful ``set`` (the store keeps a copy of *value*)."""
        self.stable[key] = bytes(value)
        self.uint64.pop(key, None)

    def set_uint64(self, key: bytes, value: int) -> None:
        """Record a successful ``set_uint64``."""
        self.uint64[key] = value
        self.stable.pop(key, None)

    def forget(self, key: bytes) -> None:
        """Record that *key* is known to be absent."""
        self.stable[key] = None
        self.uint64.pop(key, None)

    def absent_indexes(self) -> Iterator[int]:
        """Indexes the store must not hold: the neighbours of every held index, 1 and 2**64-1."""
        logs = self.logs
        candidates = {1, MAX_INDEX}
        for index in logs:
            candidates.add(index - 1)
            candidates.add(index + 1)
        for index in sorted(candidates):
            if 1 <= index <= MAX_INDEX and index not in logs:
                yield index


def assert_store_matches(store: RaftStoreProtocol, model: StoreModel, where: str = "") -> None:
    """Fail unless *store* holds exactly what *model* predicts, read through the public API.

    Checks first/last index, every modelled entry, the neighbours of every
    entry (absent, `LogNotFoundError`), ``iter_logs`` when the store has it,
    and every modelled stable key (raw value, None when absent, uint64).
    """
    label = f" ({where})" if where else ""
    first, last = store.first_index(), store.last_index()
    assert (first, last) == (model.first_index(), model.last_index()), (
        f"first/last index{label}: store has {(first, last)},"
        f" expected {(model.first_index(), model.last_index())}"
    )
    for index, expected in model.logs.items():
        try:
            got = store.get_log(index)
        except LogNotFoundError:
            pytest.fail(f"get_log({index}){label}: LogNotFoundError, expected {expected!r:.200}")
        assert got == expected, (
            f"get_log({index}){label}: got {got!r:.200}, expected {expected!r:.200}"
        )
    for index in model.absent_indexes():
        with pytest.raises(LogNotFoundError):
            store.get_log(index)
    iter_logs: Any = getattr(store, "iter_logs", None)
    if iter_logs is not None:
        held = [log.index for log in iter_logs()]
        assert held == sorted(model.logs), (
            f"iter_logs(){label}: yields {len(held)} indexes, expected {len(model.logs)}"
            f" (first differences: {sorted(set(held) ^ set(model.logs))[:10]})"
        )
    for key, value in model.stable.items():
        got_value = store.get(key)
        assert got_value == value, (
            f"get({key!r}){label}: got {got_value!r:.80}, expected {value!r:.80}"
        )
        if value is None:
            assert store.get_uint64(key) == 0, f"get_uint64({key!r}){label} of an absent key"
        elif len(value) != 8:
            with pytest.raises(CorruptionError):
                store.get_uint64(key)
    for key, number in model.uint64.items():
        got_number = store.get_uint64(key)
        assert got_number == number, (
            f"get_uint64({key!r}){label}: got {got_number}, expected {number}"
        )
        raw = store.get(key)
        assert raw is not None, f"get({key!r}){label} of a key set with set_uint64 is None"
        assert len(raw) == 8, f"get({key!r}){label} of a uint64 is {len(raw)} bytes, not 8"
