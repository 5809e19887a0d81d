"""The protocols raftstore's stores satisfy (hashicorp/raft's LogStore and StableStore)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

from raftstore.log import Log

__all__ = ["Capabilities", "LogStore", "RaftStoreProtocol", "StableStore"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store's engine can do; read by callers and by the conformance suite."""

    #: Data survives close and reopen.
    persistent: bool
    #: Only appends after the last index and truncation at either end are
    #: allowed (hashicorp's ``MonotonicLogStore``).
    monotonic: bool
    #: ``read_only=True`` opens are supported.
    read_only: bool
    #: A read-only handle may be open while a writer has the store (same
    #: process or another).
    concurrent_readers: bool
    #: A second writer handle on the same store raises `StoreLockedError`.
    locking: bool


@runtime_checkable
class LogStore(Protocol):
    """Stores and retrieves Raft log entries by index (hashicorp ``LogStore``)."""

    def first_index(self) -> int:
        """Lowest stored index, 0 when empty."""
        ...

    def last_index(self) -> int:
        """Highest stored index, 0 when empty."""
        ...

    def get_log(self, index: int) -> Log:
        """The entry at *index*; raises `LogNotFoundError` when absent."""
        ...

    def store_log(self, log: Log) -> None:
        """Same as ``store_logs([log])``."""
        ...

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Store every entry or none of them."""
        ...

    def delete_range(self, min_index: int, max_index: int) -> None:
        """Delete entries ``min_index..max_index``, inclusive, clamped to what is stored."""
        ...


@runtime_checkable
class StableStore(Protocol):
    """Durable key-value storage for Raft's term and vote (hashicorp ``StableStore``)."""

    def set(self, key: bytes, value: bytes | bytearray | memoryview) -> None:
        """Store a copy of *value* under *key*."""
        ...

    def get(self, key: bytes) -> bytes | None:
        """The value under *key*, None when absent."""
        ...

    def set_uint64(self, key: bytes, value: int) -> None:
        """Store an unsigned 64-bit integer under *key*."""
        ...

    def get_uint64(self, key: bytes) -> int:
        """The integer under *key*, 0 when absent."""
        ...


@runtime_checkable
class RaftStoreProtocol(LogStore, StableStore, Protocol):
    """Both protocols plus the lifecycle every store returned by `raftstore.open` has."""

    @property
    def engine(self) -> str: ...

    @property
    def codec(self) -> str: ...

    @property
    def path(self) -> Path | None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def is_monotonic(self) -> bool: ...

    @property
    def read_only(self) -> bool: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def iter_logs(self, low: int = 1, high: int = 2**64 - 1) -> Iterator[Log]:
        """Yield the stored entries with ``low <= index <= high`` in index order."""
        ...

    def sync(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...
