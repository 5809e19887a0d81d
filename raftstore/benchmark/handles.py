"""What a workload drives: one interface over the store and PySyncObj's journals.

The raw bindings, the third kind of handle, live in `raftstore.benchmark.raw`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import raftstore
from raftstore.benchmark.entries import TAIL
from raftstore.log import Log
from raftstore.registry import get_engine_class

__all__ = ["Handle", "JournalHandle", "StoreHandle", "is_persistent", "on_disk", "open_store"]


class Handle:
    """What a workload drives: the store, a raw binding, or a PySyncObj journal.

    The loops live inside the handle so that a workload pays one Python call
    per chunk, never one per operation, on every subject alike.
    """

    kind: ClassVar[str] = ""

    def append(self, batches: list[list[Log]]) -> None:
        """Write each batch in one call (a batch of one as a single put)."""
        raise NotImplementedError

    def get_many(self, indexes: Sequence[int]) -> None:
        """Read and decode the entry at each index."""
        raise NotImplementedError

    def tail(self, last: int, times: int) -> None:
        """Read the `TAIL` entries ending at *last*, *times* over."""
        for _ in range(times):
            self.get_many(range(last - TAIL + 1, last + 1))

    def truncate_prefix(self, keep: int) -> None:
        """Delete the oldest entries, keeping the newest *keep*."""
        raise NotImplementedError

    def startup(self) -> int:
        """What Raft reads at start: first, last and the last entry; returns last."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the handle."""


def is_persistent(engine: str) -> bool:
    """True when *engine* keeps its data on disk (so it can be reopened)."""
    return bool(get_engine_class(engine).persistent)


def on_disk(engine: str | None) -> bool:
    """True when *engine* keeps its data on disk; False for None, memory and unknown names."""
    if engine is None:
        return False
    try:
        return is_persistent(engine)
    except raftstore.RaftStoreError:
        return engine != "memory"


def open_store(engine: str, codec: str, path: Path | None, *, sync: bool) -> raftstore.RaftStore:
    """A store of *engine* / *codec* at *path*; ``engine://`` (in memory) when *path* is None."""
    if path is None:
        return raftstore.open(f"{engine}://", codec=codec, sync=sync)
    return raftstore.open(path, engine=engine, codec=codec, sync=sync)


class StoreHandle(Handle):
    """A `raftstore.RaftStore`."""

    kind: ClassVar[str] = "raftstore"

    def __init__(self, store: raftstore.RaftStore) -> None:
        self.store = store

    def append(self, batches: list[list[Log]]) -> None:
        store = self.store
        if len(batches[0]) == 1:
            store_log = store.store_log
            for batch in batches:
                store_log(batch[0])
        else:
            store_logs = store.store_logs
            for batch in batches:
                store_logs(batch)

    def get_many(self, indexes: Sequence[int]) -> None:
        get_log = self.store.get_log
        for index in indexes:
            get_log(index)

    def truncate_prefix(self, keep: int) -> None:
        store = self.store
        store.delete_range(store.first_index(), store.last_index() - keep)

    def startup(self) -> int:
        store = self.store
        store.first_index()
        last = store.last_index()
        if last:
            store.get_log(last)
        return last

    def close(self) -> None:
        self.store.close()


class JournalHandle(Handle):
    """A PySyncObj journal: entries are ``(command, idx, term)``, positions are offsets."""

    kind: ClassVar[str] = "pysyncobj"

    def __init__(self, journal: Any) -> None:
        self.journal = journal

    def append(self, batches: list[list[Log]]) -> None:
        add = self.journal.add
        for batch in batches:
            for log in batch:
                add(log.data, log.index, log.term)

    def get_many(self, indexes: Sequence[int]) -> None:
        journal = self.journal
        first = journal[0][1]
        for index in indexes:
            journal[index - first]

    def tail(self, last: int, times: int) -> None:
        journal = self.journal
        for _ in range(times):
            journal[-TAIL:]

    def truncate_prefix(self, keep: int) -> None:
        journal = self.journal
        if len(journal) > keep:
            journal.deleteEntriesTo(len(journal) - keep)

    def startup(self) -> int:
        journal = self.journal
        if not len(journal):
            return 0
        journal[0]
        last: int = journal[-1][1]
        return last

    def close(self) -> None:
        self.journal._destroy()
