"""`LogCache`: a ring of the most recent log entries in front of any store (hashicorp ``LogCache``).

Raft reads back what it has just written: the leader replicates its newest
entries to every follower and applies them to its state machine. The cache
keeps the last ``capacity`` entries written, each in slot ``index %
capacity``, so those reads skip the engine and the codec.

- ``store_log`` / ``store_logs`` write through to the store first and fill
  the ring only once the store call has returned; a failed write leaves the
  ring exactly as it was.
- ``get_log`` answers from the ring when the entry's slot holds that very
  index, and from the store otherwise.
- ``delete_range`` invalidates the cached entries it covers (hashicorp clears
  the whole ring; only the covered ones need to go).
- Everything else passes through to the store.

Readers never take a lock. Writers hold the cache's write lock across the
store call, and entries a write is about to replace are dropped from the
ring *before* the store call: a reader that has seen one entry of a new
batch (from the store) can never then be shown an older copy of another
(from the ring).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

from raftstore._wrapping import WrappedStoreAttributes
from raftstore.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidLogError,
    RaftStoreError,
    StoreClosedError,
)
from raftstore.log import MAX_UINT64, Log, is_storable, validate_log
from raftstore.protocols import RaftStoreProtocol

__all__ = ["LogCache", "read_batch"]

#: The slots a write dropped from the ring before its store call: restored if it fails.
_Saved = list[tuple[int, Log]]


class _Unreadable:
    """An iterable that raises *error* when read: hands a batch we could not read to the store.

    The store then refuses it with its own error and message, exactly as if
    it had read the caller's iterable itself.
    """

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __iter__(self) -> Iterator[Log]:
        raise self.error


def read_batch(logs: Iterable[Log]) -> list[Log] | Iterable[Log]:
    """The entries of *logs* as a list, read once; or what to hand the store so it refuses them.

    For wrappers that must see a batch before the store does (`LogCache`,
    `raftstore.aio`): an iterable that cannot be read, or a lone `Log`,
    comes back as something the store's ``store_logs`` refuses with its own
    error (`InvalidArgumentError`); a raftstore error raised while reading
    propagates, as it does from the store.
    """
    if isinstance(logs, Log):
        return logs
    try:
        return list(logs)
    except RaftStoreError:
        raise
    except Exception as exc:
        return _Unreadable(exc)


class LogCache(WrappedStoreAttributes):
    """A store that keeps the last *capacity* log entries written in memory.

    Wraps *store* (any store with the whole `RaftStoreProtocol`, such as the
    one `raftstore.open` returns) and is itself such a store: the same
    methods, attributes and errors, and a context manager.

    Ownership: by default the cache owns *store*, so `close` (and leaving a
    ``with`` block) closes it too. Pass ``owns_store=False`` to keep *store*
    open after the cache is closed (for example when the same handle is also
    used without the cache); the cache itself refuses every call once closed.

    Safe to share between threads, like the store. Write to the store only
    through the cache while it is in use: writes made behind its back are not
    seen by its ring.

    Raises `ConfigurationError` when *capacity* is not a positive int.
    """

    __slots__ = ("_capacity", "_closed", "_owns_store", "_ring", "_store", "_write_lock")

    def __init__(self, store: RaftStoreProtocol, capacity: int, *, owns_store: bool = True) -> None:
        """Put a ring of *capacity* entries in front of *store*."""
        if type(capacity) is not int or capacity < 1:
            raise ConfigurationError(f"LogCache capacity must be a positive int, got {capacity!r}")
        self._store = store
        self._capacity = capacity
        self._owns_store = owns_store
        self._ring: list[Log | None] = [None] * capacity
        self._write_lock = threading.Lock()
        self._closed = False

    # -- attributes ---------------------------------------------------------------

    @property
    def store(self) -> RaftStoreProtocol:
        """The wrapped store (write through the cache, not through this)."""
        return self._store

    @property
    def _beyond_protocol(self) -> Any:
        """The wrapped store, for methods `RaftStore` has beyond `RaftStoreProtocol`."""
        return self._store

    @property
    def capacity(self) -> int:
        """How many entries the ring holds."""
        return self._capacity

    @property
    def owns_store(self) -> bool:
        """True when `close` also closes the wrapped store."""
        return self._owns_store

    @property
    def sync_writes(self) -> bool:
        """True when the wrapped store makes every write durable before it returns."""
        return bool(self._beyond_protocol.sync_writes)

    def cached_indexes(self) -> list[int]:
        """The indexes the ring holds now, ascending (for tests and tools)."""
        return sorted(log.index for log in self._ring if log is not None)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<LogCache capacity={self._capacity} of {self._store!r}{state}>"

    def __enter__(self) -> LogCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- LogStore -------------------------------------------------------------------

    def first_index(self) -> int:
        """Lowest stored index, 0 when empty (from the store)."""
        self._check_open()
        return self._store.first_index()

    def last_index(self) -> int:
        """Highest stored index, 0 when empty (from the store)."""
        self._check_open()
        return self._store.last_index()

    def get_log(self, index: int) -> Log:
        """The entry at *index*: from the ring when its slot holds *index*, else from the store.

        Raises what the store raises: `LogNotFoundError` when absent,
        `InvalidArgumentError` for a bad index, `StoreClosedError` after close.
        """
        if type(index) is int:
            cached = self._ring[index % self._capacity]
            if (
                cached is not None
                and cached.index == index
                and not self._closed
                and not self._store.closed
            ):
                return cached
        self._check_open()
        return self._store.get_log(index)

    def store_log(self, log: Log) -> None:
        """Store one entry through to the store, then cache it; same as ``store_logs([log])``."""
        self._check_open()
        planned = self._normalised([log])
        with self._write_lock:
            saved = self._drop_replaced(planned)
            try:
                self._store.store_log(log)
            except BaseException:
                self._restore(saved)
                raise
            self._fill(planned)

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Store *logs* atomically through to the store, then cache them.

        The ring changes only after the store call returned: when it raises
        (`InvalidLogError`, `StorageError`...), nothing is stored and nothing
        in the ring has changed.
        """
        self._check_open()
        batch = read_batch(logs)
        if not isinstance(batch, list):
            self._store.store_logs(batch)  # the store refuses it with its own message
            raise InvalidArgumentError(f"store_logs could not read its logs: {logs!r:.80}")
        planned = self._normalised(batch)
        with self._write_lock:
            saved = self._drop_replaced(planned)
            try:
                self._store.store_logs(batch)
            except BaseException:
                self._restore(saved)
                raise
            self._fill(planned)

    def delete_range(self, min_index: int, max_index: int) -> None:
        """Delete ``min_index..max_index`` (inclusive) from the store and drop them from the ring.

        The covered entries leave the ring before the store call (a reader
        must never get an entry the store no longer holds) and come back if
        the call fails.
        """
        self._check_open()
        with self._write_lock:
            saved = self._drop_covered(min_index, max_index)
            try:
                self._store.delete_range(min_index, max_index)
            except BaseException:
                self._restore(saved)
                raise

    def iter_logs(self, low: int = 1, high: int = MAX_UINT64) -> Iterator[Log]:
        """Yield the stored entries with ``low <= index <= high`` in order (from the store)."""
        self._check_open()
        return self._store.iter_logs(low, high)

    def stage_commit_index(self, index: int) -> None:
        """Stage *index* in the wrapped store, persisted with the next ``store_logs``.

        Raises `AttributeError` when the wrapped store does not track commit indexes.
        """
        self._check_open()
        self._beyond_protocol.stage_commit_index(index)

    def get_commit_index(self) -> int:
        """The wrapped store's persisted commit index; 0 when none."""
        self._check_open()
        return int(self._beyond_protocol.get_commit_index())

    # -- StableStore (passes through) ---------------------------------------------------

    def set(self, key: bytes, value: bytes | bytearray | memoryview) -> None:
        """Store *value* under *key* in the wrapped store."""
        self._check_open()
        self._store.set(key, value)

    def get(self, key: bytes) -> bytes | None:
        """The value under *key* in the wrapped store, None when absent."""
        self._check_open()
        return self._store.get(key)

    def set_uint64(self, key: bytes, value: int) -> None:
        """Store the uint64 *value* under *key* in the wrapped store."""
        self._check_open()
        self._store.set_uint64(key, value)

    def get_uint64(self, key: bytes) -> int:
        """The uint64 under *key* in the wrapped store, 0 when absent."""
        self._check_open()
        return self._store.get_uint64(key)

    def iter_stable(self) -> Iterator[tuple[bytes, bytes]]:
        """Yield the wrapped store's stable ``(key, value)`` pairs in key order."""
        self._check_open()
        result: Iterator[tuple[bytes, bytes]] = self._beyond_protocol.iter_stable()
        return result

    # -- lifecycle -------------------------------------------------------------------------

    def sync(self) -> None:
        """Force everything written so far onto stable storage."""
        self._check_open()
        self._store.sync()

    def compact(self) -> None:
        """Ask the wrapped store to give disk space back after deletions."""
        self._check_open()
        self._beyond_protocol.compact()

    def disk_usage(self) -> int:
        """Bytes the wrapped store takes on disk."""
        self._check_open()
        return int(self._beyond_protocol.disk_usage())

    def stats(self) -> dict[str, Any]:
        """The wrapped store's `RaftStore.stats`, with the cache's capacity and occupancy."""
        self._check_open()
        snapshot: dict[str, Any] = dict(self._beyond_protocol.stats())
        snapshot["log_cache"] = {
            "capacity": self.capacity,
            "cached": len(self.cached_indexes()),
        }
        return snapshot

    def close(self) -> None:
        """Close the cache, and the wrapped store when the cache owns it; idempotent."""
        with self._write_lock:
            self._closed = True
            self._ring = [None] * self._capacity
        if self._owns_store:
            self._store.close()

    # -- the ring ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            self._raise_closed()

    def _raise_closed(self) -> NoReturn:
        raise StoreClosedError(f"{self!r} is closed; open the store again and wrap it in a new one")

    @staticmethod
    def _normalised(batch: list[Any]) -> list[Log] | None:
        """*batch* as the store will hold it, or None when an item is not storable.

        (The store then refuses the batch; should a store accept what
        `validate_log` refuses, the ring is cleared rather than guessed at.)
        """
        planned: list[Log] = []
        for position, item in enumerate(batch):
            if is_storable(item):
                planned.append(item)
                continue
            try:
                planned.append(validate_log(item, position))
            except InvalidLogError:
                return None
        return planned

    def _drop_replaced(self, planned: list[Log] | None) -> _Saved:
        """Drop the cached copies of entries *planned* overwrites; return them."""
        ring, capacity = self._ring, self._capacity
        if planned is None:
            return self._drop_where(lambda index: True)
        saved: _Saved = []
        for log in planned:
            slot = log.index % capacity
            cached = ring[slot]
            if cached is not None and cached.index == log.index:
                saved.append((slot, cached))
                ring[slot] = None
        return saved

    def _drop_covered(self, min_index: object, max_index: object) -> _Saved:
        """Drop the cached entries ``min_index..max_index`` covers; return them."""
        if type(min_index) is not int or type(max_index) is not int:
            # The store decides what an odd argument means; forget everything.
            return self._drop_where(lambda index: True)
        low, high = min_index, max_index
        if low > high:
            return []
        if high - low + 1 >= self._capacity:
            return self._drop_where(lambda index: low <= index <= high)
        ring, capacity = self._ring, self._capacity
        saved: _Saved = []
        for index in range(max(low, 1), high + 1):
            slot = index % capacity
            cached = ring[slot]
            if cached is not None and cached.index == index:
                saved.append((slot, cached))
                ring[slot] = None
        return saved

    def _drop_where(self, covers: Callable[[int], bool]) -> _Saved:
        ring = self._ring
        saved: _Saved = []
        for slot, cached in enumerate(ring):
            if cached is not None and covers(cached.index):
                saved.append((slot, cached))
                ring[slot] = None
        return saved

    def _restore(self, saved: _Saved) -> None:
        """Put back what a failed write dropped (the store still holds exactly those entries)."""
        ring = self._ring
        for slot, cached in saved:
            ring[slot] = cached

    def _fill(self, planned: list[Log] | None) -> None:
        """Cache what a successful write stored; later entries of a batch win their slot."""
        ring, capacity = self._ring, self._capacity
        if planned is None:
            for slot in range(capacity):
                ring[slot] = None
            return
        if len(planned) > capacity:
            # Only the last *capacity* can survive in the ring; within them a
            # later duplicate still overwrites an earlier one.
            planned = planned[-capacity:]
        for log in planned:
            ring[log.index % capacity] = log
