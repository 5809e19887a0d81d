"""raftstore: durable storage for Raft logs and Raft's stable state.

Open a store by URL or path and use it as a hashicorp/raft-style
``LogStore`` and ``StableStore``::

    import raftstore
    from raftstore import Log

    with raftstore.open("lmdb:///var/lib/node1/raft") as store:
        store.store_logs([Log(index=1, term=1, data=b"x")])
        store.set_uint64(b"CurrentTerm", 1)
"""

from __future__ import annotations

import logging as _logging

from raftstore._open import open, which_engine
from raftstore.cache import LogCache
from raftstore.errors import (
    CodecMismatchError,
    ConfigurationError,
    CorruptionError,
    EngineUnavailableError,
    InvalidArgumentError,
    InvalidLogError,
    LogNotFoundError,
    RaftStoreError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownCodecError,
    UnknownEngineError,
    UnsupportedFormatError,
)
from raftstore.log import MAX_INDEX, MAX_UINT64, Log, LogType
from raftstore.protocols import Capabilities, LogStore, RaftStoreProtocol, StableStore
from raftstore.registry import (
    DEFAULT_CODEC,
    DEFAULT_ENGINE,
    BackendInfo,
    available_codecs,
    available_engines,
    register_codec,
    register_engine,
)
from raftstore.store import RaftStore

__version__ = "0.1.0"

# The library logs to "raftstore" and never configures handlers; without one
# of the application's, nothing is printed (not even through logging's
# last-resort handler).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "DEFAULT_CODEC",
    "DEFAULT_ENGINE",
    "MAX_INDEX",
    "MAX_UINT64",
    "BackendInfo",
    "Capabilities",
    "CodecMismatchError",
    "ConfigurationError",
    "CorruptionError",
    "EngineUnavailableError",
    "InvalidArgumentError",
    "InvalidLogError",
    "Log",
    "LogCache",
    "LogNotFoundError",
    "LogStore",
    "LogType",
    "RaftStore",
    "RaftStoreError",
    "RaftStoreProtocol",
    "ReadOnlyError",
    "StableStore",
    "StorageError",
    "StoreClosedError",
    "StoreLockedError",
    "StoreNotFoundError",
    "UnknownCodecError",
    "UnknownEngineError",
    "UnsupportedFormatError",
    "available_codecs",
    "available_engines",
    "open",
    "register_codec",
    "register_engine",
    "which_engine",
]
