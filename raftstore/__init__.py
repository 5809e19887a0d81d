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

import os
from typing import Any

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
from raftstore.metrics import MetricsCollector
from raftstore.protocols import Capabilities, LogStore, RaftStoreProtocol, StableStore
from raftstore.registry import (
    DEFAULT_CODEC,
    DEFAULT_ENGINE,
    BackendInfo,
    available_codecs,
    available_engines,
    coerce_options,
    coerce_value,
    create_codec,
    get_engine_class,
    register_codec,
    register_engine,
)
from raftstore.store import RaftStore, open_store, resolve_engine_name
from raftstore.url import parse_target

__version__ = "0.1.0"

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
]

# Options any URL query may carry besides the engine's own.
_STORE_OPTIONS = {"codec": str, "sync": bool, "read_only": bool, "create": bool}


def open(
    target: str | os.PathLike[str],
    *,
    engine: str | None = None,
    codec: str | None = None,
    sync: bool = True,
    read_only: bool = False,
    create: bool = True,
    metrics: MetricsCollector | None = None,
    **options: Any,
) -> RaftStore:
    """Open (or create) a Raft store.

    *target* is ``"ENGINE://PATH?opt=value&..."`` (``"memory://"`` for an
    in-memory store) or a plain path. A plain path with no *engine* opens
    an existing store with the engine recorded in it, and creates a new one
    with the default engine, ``lmdb``. ``codec=None`` uses the recorded
    codec, or ``msgpack`` for a new store; a different explicit codec raises
    `CodecMismatchError`.

    ``sync=True`` makes every acknowledged write durable (fsync) before the
    call returns; ``sync=False`` leaves that to `RaftStore.sync`.
    ``read_only=True`` refuses writes (and never creates a store);
    ``create=False`` raises `StoreNotFoundError` instead of creating one.
    *metrics*, a `raftstore.metrics.MetricsCollector`, receives the store's
    counters, gauges and latencies (none are collected by default).
    *options* (and the URL's query, which may also set ``codec``, ``sync``,
    ``read_only`` and ``create``) are the engine's own, coerced to their
    declared types; an unknown one raises `ConfigurationError` listing the
    valid ones.
    """
    parsed = parse_target(target)
    if engine is not None and (not isinstance(engine, str) or not engine.strip()):
        raise ConfigurationError(f"engine must be an engine name such as 'lmdb', got {engine!r}")
    if engine is not None and parsed.engine is not None and engine != parsed.engine:
        raise ConfigurationError(
            f"target names engine {parsed.engine!r} but engine={engine!r} was passed"
        )
    query = dict(parsed.options)
    given: dict[str, Any] = {"codec": codec, "sync": sync, "read_only": read_only, "create": create}
    defaults: dict[str, Any] = {"codec": None, "sync": True, "read_only": False, "create": True}
    for name, kind in _STORE_OPTIONS.items():
        if name not in query:
            continue
        value = coerce_value(name, query.pop(name), kind, "store")
        if given[name] != defaults[name] and given[name] != value:
            raise ConfigurationError(
                f"option {name!r} is {value!r} in the URL but {given[name]!r} as an argument"
            )
        given[name] = value
    for name, kind in (("sync", bool), ("read_only", bool), ("create", bool)):
        if type(given[name]) is not kind:
            raise ConfigurationError(f"{name} must be a bool, got {given[name]!r}")
    if given["codec"] is not None and not isinstance(given["codec"], str):
        raise ConfigurationError(f"codec must be a codec name, got {given['codec']!r}")
    overlap = sorted(set(query) & set(options))
    if overlap:
        raise ConfigurationError(
            f"option {', '.join(overlap)} given both in the URL and as an argument"
        )
    if metrics is not None and not isinstance(metrics, MetricsCollector):
        raise ConfigurationError(
            "metrics must be a raftstore.metrics.MetricsCollector (with incr, gauge and"
            f" observe methods), got {type(metrics).__name__}"
        )
    engine_name = resolve_engine_name(parsed.path, engine or parsed.engine, DEFAULT_ENGINE)
    engine_class = get_engine_class(engine_name)
    if given["codec"] is not None:
        create_codec(given["codec"])  # unknown or unavailable codecs fail before any file is made
    return open_store(
        parsed.path,
        engine_name=engine_name,
        engine_class=engine_class,
        codec_name=given["codec"],
        default_codec=DEFAULT_CODEC,
        make_codec=create_codec,
        sync=given["sync"],
        read_only=given["read_only"],
        create=given["create"],
        options=coerce_options(engine_name, engine_class.options, {**query, **options}),
        metrics=metrics,
    )
