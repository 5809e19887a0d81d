"""The attributes a store shares with the store it wraps (`LogCache`, `raftstore.aio`)."""

from __future__ import annotations

from pathlib import Path

from raftstore.protocols import Capabilities, RaftStoreProtocol

__all__ = ["WrappedStoreAttributes"]


class WrappedStoreAttributes:
    """Read-only attributes answered by the wrapped store ``self._store``, without engine calls.

    A subclass sets ``_store`` and ``_closed``; ``closed`` is true once the
    wrapper or the store under it was closed.
    """

    __slots__ = ()
    _store: RaftStoreProtocol
    _closed: bool

    @property
    def engine(self) -> str:
        """Name of the wrapped store's engine."""
        return self._store.engine

    @property
    def codec(self) -> str:
        """Name of the codec the wrapped store's records are written with."""
        return self._store.codec

    @property
    def path(self) -> Path | None:
        """The wrapped store's directory (None in memory)."""
        return self._store.path

    @property
    def closed(self) -> bool:
        """True once the wrapper, or the store under it, was closed."""
        return self._closed or self._store.closed

    @property
    def read_only(self) -> bool:
        """True when the wrapped store refuses writes (``read_only=True``)."""
        return self._store.read_only

    @property
    def is_monotonic(self) -> bool:
        """The wrapped store's ``is_monotonic`` (hashicorp ``MonotonicLogStore``)."""
        return self._store.is_monotonic

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped store's `Capabilities`: the wrapper adds and removes none."""
        return self._store.capabilities
