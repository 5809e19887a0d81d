"""Opening a store: `raftstore.open`, one table of store options, and `which_engine`.

Everything between a target (``ENGINE://PATH?opt=value`` or a path) and a
ready `RaftStore` lives here: merging URL options with keywords, finding the
engine (the one recorded in an existing store, else the one asked for, else
the default), creating a new store durably, and opening an existing one
without ever creating it again.

A store's life on disk, as this module drives it:

1. new: the directory is made (and fsynced into its parent), the marker is
   written with ``"state": "creating"``, the engine creates its files, the
   meta record is written and synced, the engine directory is fsynced, and
   the marker is replaced with ``"state": "ready"``;
2. existing (marker ready): the engine is opened with ``create=False``; a
   missing ``data/``, engine file or meta record is `CorruptionError`, and
   nothing is created or deleted;
3. interrupted creation (marker creating): creation is finished, unless the
   store already holds data (an interrupted copy), which is refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from raftstore._directory import (
    CREATING,
    DATA_DIR,
    LEGACY_LOCK_FILE,
    MARKER_FILE,
    READY,
    DirectoryLock,
    check_store_directory,
    fsync_directory,
    make_directory,
    parse_json_object,
    read_marker,
    refuse_links,
    write_marker,
)
from raftstore._records import (
    FORMAT_VERSION,
    META_KEY,
    MIN_FORMAT_VERSION,
    RecordFormat,
    record_format,
)
from raftstore.engines.base import LOGS, META, STABLE, Engine, WriteBatch
from raftstore.errors import (
    CodecMismatchError,
    ConfigurationError,
    CorruptionError,
    StorageError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from raftstore.metrics import MetricsCollector
from raftstore.registry import (
    DEFAULT_CODEC,
    DEFAULT_ENGINE,
    coerce_options,
    coerce_value,
    create_codec,
    get_engine_class,
)
from raftstore.store import RaftStore, short_key
from raftstore.url import parse_target

__all__ = [
    "STORE_OPTIONS",
    "creating_unfinished",
    "mark_ready",
    "open",
    "open_store",
    "reporting_damage",
    "resolve_engine_name",
    "which_engine",
]

#: The options of a store itself (not of its engine): name -> (type, default).
#: They may be given as keywords of `open` or in a URL's query.
STORE_OPTIONS: Mapping[str, tuple[type, Any]] = {
    "codec": (str, None),
    "sync": (bool, True),
    "read_only": (bool, False),
    "create": (bool, True),
}
_log = logging.getLogger("raftstore")
#: Most stable records checked at open (raft keeps three).
_STABLE_CHECKED_AT_OPEN = 4096


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
    given = _store_options(
        {"codec": codec, "sync": sync, "read_only": read_only, "create": create}, parsed.options
    )
    query = {name: value for name, value in parsed.options.items() if name not in STORE_OPTIONS}
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


def _store_options(given: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
    """The store options from keywords *given* and a URL *query*, checked against `STORE_OPTIONS`.

    A query value wins over a keyword left at its default; a query value
    contradicting a keyword that was set raises `ConfigurationError`.
    """
    for name, (kind, default) in STORE_OPTIONS.items():
        if name in query:
            value = coerce_value(name, query[name], kind, "store")
            if given[name] != default and given[name] != value:
                raise ConfigurationError(
                    f"option {name!r} is {value!r} in the URL but {given[name]!r} as an argument"
                )
            given[name] = value
        value = given[name]
        if kind is bool and type(value) is not bool:
            raise ConfigurationError(f"{name} must be a bool, got {value!r}")
        if kind is str and value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a {name} name, got {value!r}")
    return given


def which_engine(path: str | os.PathLike[str]) -> str | None:
    """The engine that wrote the store at *path*, or None when *path* holds no store.

    Like `dbm.whichdb`: reads the store's marker only, never opens the
    engine. Raises `CorruptionError` when the marker is damaged.
    """
    directory = Path(path)
    if not directory.is_dir():
        return None
    marker = read_marker(directory)
    return None if marker is None else str(marker["engine"])


# -- tools' contexts --------------------------------------------------------------

# False while `reporting_damage` is active: opens then leave damaged stable
# records for the caller to find and report one by one.
_check_stable_at_open = contextvars.ContextVar("raftstore_check_stable_at_open", default=True)


# False while `creating_unfinished` is active: a store created then stays
# marked "creating" until its creator says it is complete.
_mark_ready_on_create = contextvars.ContextVar("raftstore_mark_ready_on_create", default=True)


@contextlib.contextmanager
def creating_unfinished() -> Iterator[None]:
    """Within this block, a store `raftstore.open` creates stays marked "creating".

    For tools that fill a new store before it may be used (``raftstore
    migrate``): until `mark_ready` is called, opening it raises, so a copy
    killed half-way can never pass for a complete store.
    """
    token = _mark_ready_on_create.set(False)
    try:
        yield
    finally:
        _mark_ready_on_create.reset(token)


def mark_ready(path: Path, engine_name: str) -> None:
    """Mark the store at *path*, created under `creating_unfinished`, complete."""
    write_marker(path, engine_name, FORMAT_VERSION, READY)


@contextlib.contextmanager
def reporting_damage() -> Iterator[None]:
    """Within this block, `raftstore.open` does not refuse a store for damaged stable records.

    For tools that read every record and report each problem (``raftstore
    verify``); a normal open refuses such a store outright.
    """
    token = _check_stable_at_open.set(False)
    try:
        yield
    finally:
        _check_stable_at_open.reset(token)


# -- opening ------------------------------------------------------------------


def resolve_engine_name(path: Path | None, engine: str | None, default: str) -> str:
    """The engine to open *path* with: the recorded one, else *engine*, else *default*.

    Raises `ConfigurationError` when *engine* contradicts the recorded engine
    or when *path* is a non-empty directory that holds no store.
    """
    if path is None:
        return engine or default
    check_store_directory(path)
    marker = read_marker(path) if path.is_dir() else None
    if marker is not None:
        recorded = str(marker["engine"])
        if engine is not None and engine != recorded:
            raise ConfigurationError(
                f"store {path} was created with engine {recorded!r}, not {engine!r};"
                f" open it with engine={recorded!r} (or migrate it)"
            )
        return recorded
    # An old version's lock file and a marker left half-written by a creation
    # that was killed are ours: a directory holding only those is still "empty".
    leftovers = {LEGACY_LOCK_FILE, MARKER_FILE + ".tmp"}
    if path.is_dir() and any(p.name not in leftovers for p in path.iterdir()):
        raise ConfigurationError(
            f"{path} is not empty and holds no raftstore store (no {MARKER_FILE});"
            " choose a new or empty directory"
        )
    return engine or default


def open_store(
    path: Path | None,
    *,
    engine_name: str,
    engine_class: type[Engine],
    codec_name: str | None,
    default_codec: str,
    make_codec: Any,
    sync: bool,
    read_only: bool,
    create: bool,
    options: Mapping[str, Any],
    metrics: Any = None,
) -> RaftStore:
    """Open or create the store at *path* (see `raftstore.open` for the contract).

    *make_codec* maps a codec name to a new codec instance. A store whose
    marker says it exists is never created again: missing or damaged engine
    files raise `CorruptionError`, and a failed open deletes nothing.
    """
    opening = _Opening(engine_name, engine_class, codec_name, default_codec, make_codec, metrics)
    if path is None:
        if engine_class.persistent:
            raise ConfigurationError(f"engine {engine_name!r} needs a path: {engine_name}:///path")
        if read_only:
            raise ConfigurationError(
                f"an in-memory {engine_name!r} store starts empty; read_only=True makes no sense"
            )
        engine = engine_class(None, sync=sync, read_only=False, options=options, create=True)
        try:
            return opening.finish(engine, None, None, read_only=False, creating=True, legacy=False)
        except BaseException:
            engine.close()
            raise
    if not engine_class.persistent:
        raise ConfigurationError(
            f"engine {engine_name!r} keeps nothing on disk and takes no path; use {engine_name}://"
        )
    check_store_directory(path)
    marker = read_marker(path) if path.is_dir() else None
    if marker is None or marker.get("state") == CREATING:
        if read_only or not create:
            never = "" if marker is None else " (its creation never finished)"
            raise StoreNotFoundError(
                f"no raftstore store at {path}{never}"
                + (" (read_only=True never creates one)" if read_only else " (create=False)")
            )
        make_directory(path)
    lock: DirectoryLock | None = None
    if not (read_only and engine_class.supports_read_only):
        lock = DirectoryLock(path)
    try:
        # Read again under the lock: another process may have created it meanwhile.
        marker = read_marker(path)
        if marker is None or marker.get("state") == CREATING:
            if read_only or not create:
                raise StoreNotFoundError(f"no raftstore store at {path}")
            if marker is not None:
                _log.info("finishing the creation of %s, which was interrupted", path)
            store = _create(path, opening, lock, marker, sync=sync, options=options)
            _log.info("created %s (engine %s, codec %s)", path, store.engine, store.codec)
            return store
        store = _open_existing(path, opening, lock, marker, sync, read_only, options)
        _log.debug(
            "opened %s (engine %s, codec %s, format %d%s): logs %d..%d",
            path,
            store.engine,
            store.codec,
            store.format_version,
            ", read-only" if read_only else "",
            store.first_index(),
            store.last_index(),
        )
        return store
    except CorruptionError as exc:
        _log.error("refused to open %s: %s", path, exc)
        if lock is not None:
            lock.release()
        raise
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _create(
    path: Path,
    opening: _Opening,
    lock: DirectoryLock | None,
    marker: Mapping[str, Any] | None,
    *,
    sync: bool,
    options: Mapping[str, Any],
) -> RaftStore:
    """Create the store at *path* (or finish a creation that was interrupted).

    The marker says "creating" until the meta record is durable, so a
    creation killed part-way is finished by the next open, while a finished
    store whose files later vanish is an error, never a new empty store.
    """
    if marker is None:
        write_marker(path, opening.engine_name, FORMAT_VERSION, CREATING)
    elif marker["engine"] != opening.engine_name:
        raise ConfigurationError(
            f"store {path} was being created with engine {marker['engine']!r}, not"
            f" {opening.engine_name!r}; open it with engine={marker['engine']!r}"
        )
    refuse_links(path, (DATA_DIR,))
    data = path / DATA_DIR
    make_directory(data)
    engine = opening.engine_class(data, sync=sync, read_only=False, options=options, create=True)
    try:
        store = opening.finish(engine, path, lock, read_only=False, creating=True, legacy=False)
    except BaseException:
        engine.close()
        raise
    try:
        # The engine's own file names must survive power loss before the
        # marker says the store exists.
        try:
            fsync_directory(data)
        except OSError as exc:
            raise StorageError(f"cannot make store {path} durable: {exc}") from exc
        if _mark_ready_on_create.get():
            write_marker(path, opening.engine_name, FORMAT_VERSION, READY)
    except BaseException:
        store.close()
        raise
    return store


def _open_existing(
    path: Path,
    opening: _Opening,
    lock: DirectoryLock | None,
    marker: Mapping[str, Any],
    sync: bool,
    read_only: bool,
    options: Mapping[str, Any],
) -> RaftStore:
    """Open the existing store at *path*; its engine must not create anything."""
    if marker["format"] > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"store {path} has format version {marker['format']}; this raftstore reads up to"
            f" {FORMAT_VERSION}: upgrade raftstore"
        )
    refuse_links(path, (MARKER_FILE, DATA_DIR))
    data = path / DATA_DIR
    if not data.is_dir():
        raise CorruptionError(
            f"store {path} has lost its engine files: {data} is missing. Restore the store's"
            " files from a backup, or remove the store and rejoin the cluster as a new node;"
            " raftstore never starts an existing store empty"
        )
    try:
        links = [entry.path for entry in os.scandir(data) if entry.is_symlink()]
    except OSError as exc:
        raise StorageError(f"cannot list {data}: {exc}") from exc
    if links:
        refuse_links(data, tuple(os.path.basename(link) for link in links))
    engine = opening.engine_class(
        data, sync=sync, read_only=read_only, options=options, create=False
    )
    try:
        # Format 1 markers carry no creation state: a store holding nothing at
        # all may be one whose creation by an earlier version was killed.
        legacy = "state" not in marker
        return opening.finish(
            engine, path, lock, read_only=read_only, creating=False, legacy=legacy
        )
    except BaseException:
        engine.close()
        raise


class _Opening:
    """What `open_store` was asked to open: the engine and codec choices."""

    __slots__ = (
        "codec_name",
        "default_codec",
        "engine_class",
        "engine_name",
        "make_codec",
        "metrics",
    )

    def __init__(
        self,
        engine_name: str,
        engine_class: type[Engine],
        codec_name: str | None,
        default_codec: str,
        make_codec: Any,
        metrics: Any,
    ) -> None:
        self.metrics = metrics
        self.engine_name = engine_name
        self.engine_class = engine_class
        self.codec_name = codec_name
        self.default_codec = default_codec
        self.make_codec = make_codec

    def finish(
        self,
        engine: Engine,
        path: Path | None,
        lock: DirectoryLock | None,
        *,
        read_only: bool,
        creating: bool,
        legacy: bool,
    ) -> RaftStore:
        """Read (or, when *creating*, write) the meta record and wrap *engine* in a store."""
        raw = engine.get(META, META_KEY)
        if raw is None:
            holds_data = engine.first_key(LOGS) is not None or engine.first_key(STABLE) is not None
            if holds_data:
                raise CorruptionError(
                    f"store {path} holds data but no meta record: the record that names its"
                    " engine and codec is lost. Restore the store from a backup, or remove it"
                    " and rejoin the cluster as a new node"
                )
            if not (creating or legacy):
                raise CorruptionError(
                    f"store {path} has lost its meta record and holds no data: its engine"
                    " files were lost or replaced. Restore them from a backup, or remove the"
                    " store and rejoin the cluster as a new node; raftstore never starts an"
                    " existing store empty"
                )
            if read_only:
                raise StoreNotFoundError(f"store {path} was never initialised")
            chosen = self.codec_name or self.default_codec
            codec = self.make_codec(chosen)
            layout = record_format(FORMAT_VERSION)
            record = {"format": FORMAT_VERSION, "engine": self.engine_name, "codec": chosen}
            meta_record = layout.frame(META, META_KEY, json.dumps(record).encode())
            engine.write(WriteBatch(puts=[(META, META_KEY, meta_record)]))
            engine.sync()
        else:
            if creating and (
                engine.first_key(LOGS) is not None or engine.first_key(STABLE) is not None
            ):
                # Creation writes the meta record and then marks the store
                # ready before anything else is written: data in a store whose
                # creation never finished is a copy that was cut short.
                raise CorruptionError(
                    f"store {path} holds data but its creation never finished (a migrate or"
                    " copy into it was interrupted?): it may be incomplete. Remove it and copy"
                    " again"
                )
            meta = _parse_meta(raw, path)
            if meta["engine"] != self.engine_name:
                raise CorruptionError(
                    f"store {path}: meta record names engine {meta['engine']!r}"
                    f" but it was opened as {self.engine_name!r}"
                )
            chosen = meta["codec"]
            if self.codec_name is not None and self.codec_name != chosen:
                raise CodecMismatchError(
                    f"store {path} was written with codec {chosen!r}, not {self.codec_name!r};"
                    f" open it with codec={chosen!r} or codec=None (or migrate it)"
                )
            codec = self.make_codec(chosen)
            layout = record_format(meta["format"])
            if _check_stable_at_open.get():
                _check_stable_records(engine, layout, path)
        settings: dict[str, Any] = {
            "engine_name": self.engine_name,
            "codec_name": chosen,
            "path": path,
            "read_only": read_only,
            "lock_file": lock,
            "layout": layout,
        }
        if self.metrics is None:
            return RaftStore(engine, codec, **settings)
        from raftstore.metrics._store import MeteredStore  # imported only when asked for

        return MeteredStore(engine, codec, metrics=self.metrics, **settings)


def _check_stable_records(engine: Engine, layout: RecordFormat, path: Path | None) -> None:
    """Check the stable store's records at open: a damaged term or vote must not read as absent.

    With format 2 a damaged key fails its checksum here, where otherwise
    ``get_uint64(b"CurrentTerm")`` would quietly find nothing and return 0.
    """
    for key, raw in engine.scan(STABLE, b"\x00", None, _STABLE_CHECKED_AT_OPEN):
        layout.unframe(
            STABLE,
            key,
            raw,
            f"store {path}: stable key {short_key(key)} (restore the store from a backup,"
            " or remove it and rejoin the cluster as a new node)",
        )


def _parse_meta(raw: bytes, path: Path | None) -> dict[str, Any]:
    what = f"store {path}: meta record"
    try:
        layout = record_format(FORMAT_VERSION)
        payload = layout.unframe(META, META_KEY, raw, what)
    except CorruptionError:
        # Stores of format 1 framed the meta record without its key.
        layout = record_format(1)
        payload = layout.unframe(META, META_KEY, raw, what)
    meta = parse_json_object(bytes(payload), what)
    if (
        type(meta.get("format")) is not int
        or not isinstance(meta.get("engine"), str)
        or not isinstance(meta.get("codec"), str)
    ):
        raise CorruptionError(f"{what} has the wrong shape: {str(meta)[:120]}")
    version = meta["format"]
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"store {path} has format version {version}; this raftstore reads up to"
            f" {FORMAT_VERSION}: upgrade raftstore"
        )
    if version < MIN_FORMAT_VERSION or (version >= 2) != (layout.version >= 2):
        raise CorruptionError(
            f"{what} says format {version} but is framed as format {layout.version}"
        )
    return meta
