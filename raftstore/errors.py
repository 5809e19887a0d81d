"""The raftstore error hierarchy.

Every error a caller can see from raftstore derives from `RaftStoreError`.
Errors raised by an engine's binding or by a codec are wrapped in one of these,
with the original exception kept as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "CodecMismatchError",
    "ConfigurationError",
    "CorruptionError",
    "EngineUnavailableError",
    "InvalidArgumentError",
    "InvalidLogError",
    "LogNotFoundError",
    "RaftStoreError",
    "ReadOnlyError",
    "StorageError",
    "StoreClosedError",
    "StoreLockedError",
    "StoreNotFoundError",
    "UnknownCodecError",
    "UnknownEngineError",
    "UnsupportedFormatError",
]


class RaftStoreError(Exception):
    """Base class of every error raised by raftstore."""


class ConfigurationError(RaftStoreError, ValueError):
    """A bad target URL, engine option or open() argument."""


class InvalidArgumentError(RaftStoreError, ValueError, TypeError):
    """A method was called with an argument of the wrong type or out of range.

    It is both a `ValueError` and a `TypeError`, so callers that follow either
    Python convention catch it.
    """


class InvalidLogError(InvalidArgumentError):
    """A `Log` that cannot be stored: index 0 or out of range, wrong field types."""


class UnknownEngineError(RaftStoreError, LookupError):
    """No engine is registered under the requested name."""


class UnknownCodecError(RaftStoreError, LookupError):
    """No codec is registered under the requested name."""


class EngineUnavailableError(RaftStoreError, ImportError):
    """The engine or codec is known but its package is not installed."""


class LogNotFoundError(RaftStoreError, KeyError):
    """No log is stored at the requested index."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and add quotes.
        return str(self.args[0]) if self.args else "log not found"


class StoreClosedError(RaftStoreError):
    """The store was closed (or inherited across fork) and cannot be used."""


class StoreLockedError(RaftStoreError):
    """Another process or handle owns this store."""


class StoreNotFoundError(RaftStoreError, FileNotFoundError):
    """No store exists at the path and creating one was not allowed."""


class ReadOnlyError(RaftStoreError):
    """A write was attempted through a store opened with ``read_only=True``."""


class CodecMismatchError(RaftStoreError):
    """The store was written with a different codec than the one requested."""


class CorruptionError(RaftStoreError):
    """A stored record cannot be decoded, fails its checksum or has the wrong shape."""


class UnsupportedFormatError(RaftStoreError):
    """The store was written by a newer raftstore whose format this one cannot read."""


class StorageError(RaftStoreError, OSError):
    """The storage engine failed to read or write (I/O error, disk full, ...)."""
