"""The in-memory engine: the reference model, and a fast store for tests.

Nothing survives `close`; ``memory://`` opens a new, empty store every time.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from raftstore.engines.base import NAMESPACES, Engine, EngineOption, WriteBatch

__all__ = ["MemoryEngine"]


class _Table:
    """A dict plus its keys kept sorted (appends at the end stay O(1))."""

    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.values:
            keys = self.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                bisect.insort(keys, key)
        self.values[key] = value

    def delete_range(self, low: bytes, high: bytes) -> None:
        start = bisect.bisect_left(self.keys, low)
        end = bisect.bisect_right(self.keys, high)
        for key in self.keys[start:end]:
            del self.values[key]
        del self.keys[start:end]

    def clear(self) -> None:
        self.values.clear()
        self.keys.clear()


class MemoryEngine(Engine):
    """Sorted dictionaries in this process's memory; `sync` is a no-op."""

    name: ClassVar[str] = "memory"
    persistent: ClassVar[bool] = False
    supports_read_only: ClassVar[bool] = False
    options: ClassVar[Mapping[str, EngineOption]] = {}

    def __init__(
        self,
        path: Path | None,
        *,
        sync: bool,
        read_only: bool,
        options: Mapping[str, Any],
        create: bool = True,
    ) -> None:
        super().__init__(path, sync=sync, read_only=read_only, options=options, create=create)
        self._tables = {namespace: _Table() for namespace in NAMESPACES}

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self._tables[namespace].values.get(key)

    def write(self, batch: WriteBatch) -> None:
        # Nothing below can fail part-way for valid bytes, so applying in
        # place is atomic.
        for namespace in batch.clears:
            self._tables[namespace].clear()
        for namespace, low, high in batch.deletes:
            self._tables[namespace].delete_range(low, high)
        for namespace, key, value in batch.puts:
            self._tables[namespace].put(key, value)

    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        table = self._tables[namespace]
        start = bisect.bisect_left(table.keys, low)
        end = len(table.keys) if high is None else bisect.bisect_right(table.keys, high)
        end = min(end, start + limit)
        return [(key, table.values[key]) for key in table.keys[start:end]]

    def first_key(self, namespace: str, low: bytes = b"") -> bytes | None:
        keys = self._tables[namespace].keys
        position = bisect.bisect_left(keys, low)
        return keys[position] if position < len(keys) else None

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        keys = self._tables[namespace].keys
        position = len(keys) if high is None else bisect.bisect_right(keys, high)
        return keys[position - 1] if position > 0 else None

    def sync(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        self._tables = {namespace: _Table() for namespace in NAMESPACES}
