"""The generic store: Raft semantics implemented once over a key-value `Engine`.

The key layout and record format are described (and implemented) once, in
`raftstore._records`; the store directory (marker, lock, durable renames)
in `raftstore._directory`. Every read checks the record's checksum and, for
logs, that the decoded index is the key's.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import struct
import threading
import warnings
import weakref
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

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
    COMMIT_KEY,
    CRC_RESIDUE,
    FORMAT_VERSION,
    META_KEY,
    MIN_FORMAT_VERSION,
    RecordFormat,
    index_key,
    key_index,
    record_format,
)
from raftstore.codecs.base import Codec
from raftstore.engines.base import LOGS, META, STABLE, Engine, WriteBatch
from raftstore.errors import (
    CodecMismatchError,
    ConfigurationError,
    CorruptionError,
    InvalidArgumentError,
    InvalidLogError,
    LogNotFoundError,
    RaftStoreError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from raftstore.log import MAX_UINT64, Log, is_storable, validate_log
from raftstore.protocols import Capabilities

__all__ = [
    "DATA_DIR",
    "FORMAT_VERSION",
    "MARKER_FILE",
    "MAX_STABLE_KEY_SIZE",
    "RaftStore",
    "engine_capabilities",
    "index_key",
    "open_store",
    "read_marker",
]

#: Longest stable key every engine accepts (LMDB's limit).
MAX_STABLE_KEY_SIZE = 511
_SCAN_CHUNK = 1024
_FIRST_SCAN_CHUNK = 32
#: The counters every store keeps (see `RaftStore.stats`).
_WRITE_COUNTERS = (
    "appends",
    "entries_written",
    "head_truncations",
    "tail_truncations",
    "middle_deletes",
    "stable_sets",
    "syncs",
)
#: Entries with at least this much data are framed from the codec's parts.
_LARGE_ENTRY = 1 << 20
#: Most stable records checked at open (raft keeps three).
_STABLE_CHECKED_AT_OPEN = 4096

_INDEX = struct.Struct(">Q")
_pack_index = _INDEX.pack
_unpack_index = _INDEX.unpack
_crc32 = zlib.crc32

_OPEN, _CLOSED, _FORKED = "open", "closed", "forked"

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


# Stores open in this process, so a forked child can mark its inherited
# handles unusable (no engine binding is fork-safe).
_open_stores: weakref.WeakSet[RaftStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_open_stores):
        store._state = _FORKED
        # The child's copy of the lock descriptor would keep the store
        # locked after the parent closes it; dropping the copy releases
        # nothing in the parent.
        if store._lock_file is not None:
            store._lock_file.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def engine_capabilities(engine_class: type[Engine]) -> Capabilities:
    """What a store on *engine_class* can do (the one place these rules live)."""
    persistent = engine_class.persistent
    return Capabilities(
        persistent=persistent,
        # Key-value engines allow gaps and overwrites; segment logs do not.
        monotonic=engine_class.monotonic,
        # Every on-disk store can be opened read-only: the store refuses writes.
        read_only=persistent,
        concurrent_readers=persistent and engine_class.supports_read_only,
        # The store's lock file guards every on-disk engine.
        locking=persistent,
    )


def _check_uint64(value: object, what: str) -> int:
    if type(value) is not int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgumentError(f"{what} must be an int, got {type(value).__name__}")
        # The int's own value: a subclass may override int(), comparisons and repr.
        value = int.__int__(value)
    if not 0 <= value <= MAX_UINT64:
        raise InvalidArgumentError(f"{what} must be in 0..2**64-1, got {_short_int(value)}")
    return value


def _short_key(key: bytes) -> str:
    """*key* for a message: its repr, cut to a few dozen bytes."""
    return repr(key) if len(key) <= 48 else f"{key[:48]!r}... ({len(key)} bytes)"


def _short_int(value: int) -> str:
    text = str(value) if value.bit_length() < 200 else f"an int of {value.bit_length()} bits"
    return text


def _check_key(key: object) -> bytes:
    if type(key) is not bytes:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(
                f"stable key must be bytes, got {type(key).__name__}"
                + ("; encode it, e.g. key.encode()" if isinstance(key, str) else "")
            )
        key = bytes(key)
    if not key:
        raise InvalidArgumentError("stable key must not be empty")
    if len(key) > MAX_STABLE_KEY_SIZE:
        raise InvalidArgumentError(
            f"stable key is {len(key)} bytes; the limit is {MAX_STABLE_KEY_SIZE}"
        )
    return key


class RaftStore:
    """A Raft log store and stable store over one engine and one codec.

    Returned by `raftstore.open`; implements `LogStore` and `StableStore`.
    Safe to share between threads: calls are serialised by one lock.
    ``first_index`` and ``last_index`` are cached (O(1)). After any failed
    call the store holds exactly what it held before it.
    """

    __slots__ = (
        "__weakref__",
        "_codec",
        "_codec_decode",
        "_codec_name",
        "_commit",
        "_counts",
        "_encode_parts",
        "_engine",
        "_engine_get",
        "_engine_name",
        "_first",
        "_format",
        "_last",
        "_lock",
        "_lock_acquire",
        "_lock_file",
        "_lock_release",
        "_log_seed",
        "_log_start",
        "_path",
        "_read_only",
        "_stable_seed",
        "_staged_commit",
        "_state",
    )

    def __init__(
        self,
        engine: Engine,
        codec: Codec,
        *,
        engine_name: str,
        codec_name: str,
        path: Path | None,
        read_only: bool,
        lock_file: DirectoryLock | None = None,
        layout: RecordFormat | None = None,
    ) -> None:
        """Wrap an opened *engine*; use `raftstore.open` rather than calling this."""
        if layout is None:
            layout = record_format(FORMAT_VERSION)
        self._engine = engine
        self._format = layout
        self._log_seed = layout.seed(LOGS)
        self._log_start = layout.start(LOGS)
        self._stable_seed = layout.seed(STABLE)
        self._codec = codec
        # Bound once: attribute lookups are a measurable part of a get.
        self._engine_get = engine.get
        self._codec_decode = codec.decode
        self._engine_name = engine_name
        self._codec_name = codec_name
        self._encode_parts = getattr(codec, "encode_parts", None)
        self._path = path
        self._read_only = read_only
        self._lock_file = lock_file
        self._lock = threading.Lock()
        self._lock_acquire = self._lock.acquire
        self._lock_release = self._lock.release
        # Open only once the bounds are read: a store whose construction
        # failed is its caller's to clean up, never its finaliser's.
        self._state = _CLOSED
        self._first = self._last = 0
        self._staged_commit: int | None = None
        # Counted on every store: one addition per write call, never per read.
        self._counts = dict.fromkeys(_WRITE_COUNTERS, 0)
        self._load_bounds()
        self._commit = self._read_commit_index()
        self._state = _OPEN
        _open_stores.add(self)

    # -- attributes --------------------------------------------------------

    @property
    def engine(self) -> str:
        """Name of the engine this store was opened with."""
        return self._engine_name

    @property
    def codec(self) -> str:
        """Name of the codec the store's records are written with."""
        return self._codec_name

    @property
    def path(self) -> Path | None:
        """The store's directory (None for in-memory stores)."""
        return self._path

    @property
    def closed(self) -> bool:
        """True once `close` was called (or the handle was inherited across fork)."""
        return self._state is not _OPEN

    @property
    def sync_writes(self) -> bool:
        """True when every write is on stable storage before it returns (``sync=True``)."""
        return self._engine.sync_writes

    @property
    def read_only(self) -> bool:
        """True when the store was opened with ``read_only=True``."""
        return self._read_only

    @property
    def is_monotonic(self) -> bool:
        """True when logs only grow at the tail and shrink at the ends (``MonotonicLogStore``).

        False for key-value engines, which allow gaps and overwrites.
        """
        return self._engine.monotonic

    @property
    def capabilities(self) -> Capabilities:
        """What this store's engine can do."""
        return engine_capabilities(type(self._engine))

    @property
    def kv(self) -> Engine:
        """The underlying engine, for tools and tests: bypasses every check and lock."""
        return self._engine

    @property
    def format_version(self) -> int:
        """The on-disk format version of this store's records."""
        return self._format.version

    def __del__(self) -> None:
        # A store dropped without close() would keep its lock and descriptors
        # for the rest of the process: release them, and say so, as files do.
        if getattr(self, "_state", None) is _OPEN:
            try:
                warnings.warn(
                    f"unclosed store {self!r}; close it (or use it as a context manager)",
                    ResourceWarning,
                    stacklevel=2,
                )
                self.close()
            except Exception:
                pass  # nothing may escape __del__

    def __repr__(self) -> str:
        state = "" if self._state is _OPEN else f" {self._state}"
        where = f" {str(self._path)!r}" if self._path is not None else ""
        return f"<RaftStore {self._engine_name}/{self._codec_name}{where}{state}>"

    def __enter__(self) -> RaftStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- guards ------------------------------------------------------------

    def _raise_unusable(self) -> NoReturn:
        if self._state is _FORKED:
            raise StoreClosedError(
                f"{self!r} was inherited across fork: no engine is fork-safe;"
                " open the store again in the child process"
            )
        raise StoreClosedError(f"{self!r} is closed; open it again with raftstore.open()")

    def _raise_read_only(self, operation: str) -> NoReturn:
        raise ReadOnlyError(
            f"{operation} on {self!r} opened with read_only=True; open it without read_only"
        )

    # -- bounds cache --------------------------------------------------------

    def _load_bounds(self) -> None:
        first = self._engine.first_key(LOGS)
        if first is None:
            self._first, self._last = 0, 0
            return
        last = self._engine.last_key(LOGS)
        assert last is not None
        self._first = key_index(first)
        self._last = key_index(last)

    def _bounds(self) -> tuple[int, int]:
        # Read-only handles may share the store with a writer in another
        # process, so their bounds are read afresh each time.
        if self._read_only:
            self._load_bounds()
        return self._first, self._last

    # -- LogStore ------------------------------------------------------------

    def first_index(self) -> int:
        """Lowest stored index, 0 when the log is empty."""
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            return self._bounds()[0]

    def last_index(self) -> int:
        """Highest stored index, 0 when the log is empty."""
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            return self._bounds()[1]

    def get_log(self, index: int) -> Log:
        """The entry at *index*.

        Raises `LogNotFoundError` when none is stored there (index 0
        included), `InvalidArgumentError` for a non-int or an index outside
        0..2**64-1, `CorruptionError` when the record is damaged.
        """
        if type(index) is not int:
            index = _check_uint64(index, "log index")
        try:
            key = _pack_index(index)
        except struct.error:
            _check_uint64(index, "log index")
            raise
        # Bound acquire/release cost half of a `with` block: this is the
        # hottest read.
        self._lock_acquire()
        try:
            if self._state is not _OPEN:
                self._raise_unusable()
            raw = self._engine_get(LOGS, key)
        finally:
            self._lock_release()
        if raw is None:
            raise LogNotFoundError(f"log {index} not found")
        # RecordFormat.unframe and _checked, inlined: this is the hottest read.
        start = self._log_start
        crc = _crc32(raw, _crc32(key, start)) if start is not None else _crc32(raw)
        if crc == CRC_RESIDUE and len(raw) < 4096:
            payload: bytes | memoryview = raw[:-4]
        else:
            payload = self._format.unframe(LOGS, key, raw, f"log {index}")
        try:
            log = self._codec_decode(payload)
        except CorruptionError as exc:
            raise CorruptionError(f"log {index}: {exc}") from exc
        if log.index != index:
            raise CorruptionError(f"log {index}: record holds index {_short_int(log.index)}")
        return log

    def _decode(self, key: bytes, raw: bytes) -> Log:
        """The entry in record *raw* stored under log key *key*, checked."""
        index = key_index(key)
        return self._checked(index, self._format.unframe(LOGS, key, raw, f"log {index}"))

    def _checked(self, index: int, payload: bytes | memoryview) -> Log:
        try:
            log = self._codec_decode(payload)
        except CorruptionError as exc:
            raise CorruptionError(f"log {index}: {exc}") from exc
        if log.index != index:
            raise CorruptionError(f"log {index}: record holds index {_short_int(log.index)}")
        return log

    def store_log(self, log: Log) -> None:
        """Store one entry; same as ``store_logs([log])``, with one engine put."""
        if not is_storable(log):
            log = validate_log(log)
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                self._raise_read_only("store_log")
            index = log.index
            if self._engine.monotonic:
                self._check_continues(index, 1)
            key = _pack_index(index)
            record = self._encode_record(log, key)
            if self._staged_commit is None:
                self._engine.put(LOGS, key, record)
            else:
                self._write_with_commit([(LOGS, key, record)])
            self._note_stored(index, index)
            counts = self._counts
            counts["appends"] += 1
            counts["entries_written"] += 1

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Store every entry of *logs* in one atomic write, or none of them.

        An empty batch is a no-op. Gaps and overwrites are allowed. Raises
        `InvalidLogError` (naming the batch position) before anything is
        written when an item is not a storable `Log`.
        """
        if isinstance(logs, Log):
            raise InvalidArgumentError("store_logs takes an iterable of Log; use store_log(log)")
        try:
            batch = list(logs)
        except RaftStoreError:
            raise
        except Exception as exc:
            raise InvalidArgumentError(
                f"store_logs could not read its logs ({type(exc).__name__}: {exc});"
                " nothing was stored"
            ) from exc
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                self._raise_read_only("store_logs")
            if not batch:
                return
            encode = self._codec.encode
            start = self._log_start
            puts: list[tuple[str, bytes, bytes]] = []
            append = puts.append
            low = high = -1
            for position, log in enumerate(batch):
                if not is_storable(log):
                    log = validate_log(log, position)
                index = log.index
                key = _pack_index(index)
                if len(log.data) >= _LARGE_ENTRY:
                    append((LOGS, key, self._encode_record(log, key, position)))
                else:
                    try:
                        payload = encode(log)
                    except RaftStoreError:
                        raise
                    except Exception as exc:
                        raise self._encode_error(log, position, exc) from exc
                    # RecordFormat.frame, inlined: a call per entry is measurable here.
                    crc = _crc32(payload, _crc32(key, start) if start is not None else 0)
                    append((LOGS, key, payload + crc.to_bytes(4, "little")))
                if index > high:
                    high = index
                    if low < 0:
                        low = index
                elif index < low:
                    low = index
            if self._engine.monotonic:
                self._check_continues(batch[0].index, len(puts), puts)
            if self._staged_commit is None:
                self._engine.write(WriteBatch(puts=puts))
            else:
                self._write_with_commit(puts)
            self._note_stored(low, high)
            counts = self._counts
            counts["appends"] += 1
            counts["entries_written"] += len(puts)

    def _encode_record(self, log: Log, key: bytes, position: int | None = None) -> bytes:
        """The record of a validated *log* under *key*; `InvalidLogError` if the codec fails.

        A large entry is encoded in parts (where the codec can) and framed
        with one copy of its data rather than two.
        """
        encode_parts = self._encode_parts
        try:
            if encode_parts is not None and len(log.data) >= _LARGE_ENTRY:
                return self._format.frame_parts(LOGS, key, encode_parts(log))
            payload = self._codec.encode(log)
        except RaftStoreError:
            raise
        except Exception as exc:
            raise self._encode_error(log, position, exc) from exc
        return self._format.frame(LOGS, key, payload)

    # -- commit tracking (hashicorp CommitTrackingLogStore) --------------------------------

    def stage_commit_index(self, index: int) -> None:
        """Stage the commit index *index*, persisted atomically with the next ``store_logs``.

        Nothing is written now: the value reaches the disk in the same atomic
        write as the next batch of entries (``store_log`` included), so a
        crash never leaves a commit index that runs ahead of what that write
        stored. Staging again replaces the staged value.
        """
        value = _check_uint64(index, "commit index")
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                self._raise_read_only("stage_commit_index")
            self._staged_commit = value

    def get_commit_index(self) -> int:
        """The commit index last persisted with a ``store_logs``; 0 when none ever was."""
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                return self._read_commit_index()
            return self._commit

    def _read_commit_index(self) -> int:
        raw = self._engine.get(META, COMMIT_KEY)
        if raw is None:
            return 0
        value = self._format.unframe(META, COMMIT_KEY, raw, "the persisted commit index")
        if len(value) != 8:
            raise CorruptionError(
                f"the persisted commit index is {len(value)} bytes, not an 8-byte uint64"
            )
        commit: int = _unpack_index(value)[0]
        return commit

    def _write_with_commit(self, puts: list[tuple[str, bytes, bytes]]) -> None:
        """Write *puts* and the staged commit index in one atomic batch."""
        staged = self._staged_commit
        assert staged is not None
        record = self._format.frame(META, COMMIT_KEY, _pack_index(staged))
        self._engine.write(WriteBatch(puts=[*puts, (META, COMMIT_KEY, record)]))
        # Only once the write succeeded: a failed one keeps the value staged.
        self._commit, self._staged_commit = staged, None

    def _check_continues(
        self, start: int, count: int, puts: list[tuple[str, bytes, bytes]] | None = None
    ) -> None:
        """Raise `InvalidLogError` unless *count* entries from *start* continue a monotonic log.

        The first batch of an empty log may start anywhere; after that every
        entry must be the last index plus one. *puts*, when given, are the
        batch's records in order, checked to be consecutive.
        """
        last = self._bounds()[1]
        expected = last + 1 if last else start
        if start != expected:
            raise InvalidLogError(
                f"monotonic store: the next entry must be index {expected},"
                f" got {_short_int(start)}; nothing was stored (delete the tail first to"
                " rewrite it)"
            )
        if puts is not None:
            pack = _pack_index
            for offset, (_, key, _) in enumerate(puts):
                if key != pack(start + offset):
                    raise InvalidLogError(
                        f"monotonic store: batch position {offset} must be index"
                        f" {start + offset}, got {key_index(key)}; nothing was stored"
                    )
        if start + count - 1 > MAX_UINT64:  # pragma: no cover - validated indexes
            raise InvalidLogError("monotonic store: the batch runs past index 2**64-1")

    def _encode_error(self, log: Log, position: int | None, exc: Exception) -> InvalidLogError:
        where = "" if position is None else f" (batch position {position})"
        return InvalidLogError(
            f"codec {self._codec_name!r} could not encode log {log.index}{where}:"
            f" {type(exc).__name__}: {exc}; nothing was stored"
        )

    def _note_stored(self, low: int, high: int) -> None:
        """Widen the cached bounds after entries ``low..high`` were written."""
        first, last = self._bounds()
        if first == 0 or low < first:
            self._first = low
        if high > last:
            self._last = high

    def delete_range(self, min_index: int, max_index: int) -> None:
        """Delete the entries ``min_index..max_index``, both ends inclusive.

        Clamped to what is stored; ``min_index > max_index`` is a no-op;
        ``(0, 2**64-1)`` deletes everything in one cheap operation.
        """
        low = _check_uint64(min_index, "min_index")
        high = _check_uint64(max_index, "max_index")
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                self._raise_read_only("delete_range")
            first, last = self._bounds()
            low, high = max(low, first), min(high, last)
            if first == 0 or low > high:
                return
            if low == first and high == last:
                self._engine.write(WriteBatch(clears=[LOGS]))
                self._first, self._last = 0, 0
                self._counts["head_truncations"] += 1
                return
            if self._engine.monotonic and low > first and high < last:
                raise InvalidArgumentError(
                    f"monotonic store: delete_range({low}, {high}) would cut the log"
                    f" {first}..{last} in the middle; truncate only the head (from {first})"
                    f" or the tail (to {last})"
                )
            # The new bounds are found before deleting (the keys beside the
            # range are the same before and after), so a failed seek leaves
            # the store untouched. Seeking from the range's edge, never from
            # the namespace's start, keeps it fast on engines with tombstones.
            if low == first:
                key = self._engine.first_key(LOGS, _pack_index(high + 1))
                assert key is not None
                first = key_index(key)
            if high == last:
                key = self._engine.last_key(LOGS, _pack_index(low - 1))
                assert key is not None
                last = key_index(key)
            self._engine.write(WriteBatch(deletes=[(LOGS, _pack_index(low), _pack_index(high))]))
            if low == self._first:
                self._counts["head_truncations"] += 1
            elif high == self._last:
                self._counts["tail_truncations"] += 1
            else:
                self._counts["middle_deletes"] += 1
            self._first, self._last = first, last

    def iter_logs(self, low: int = 1, high: int = MAX_UINT64) -> Iterator[Log]:
        """Yield the stored entries with ``low <= index <= high`` in index order.

        Reads in chunks, each under the lock; entries written or deleted
        while iterating may or may not be seen.
        """
        low = _check_uint64(low, "low")
        high = _check_uint64(high, "high")
        if high < low:
            return
        start = _pack_index(low)
        end = _pack_index(high)
        # Start small and double: a caller that stops after a few entries
        # (a lazy slice, `inspect --tail`) should not pay for reading 1024.
        limit = _FIRST_SCAN_CHUNK
        while True:
            with self._lock:
                if self._state is not _OPEN:
                    self._raise_unusable()
                chunk = self._engine.scan(LOGS, start, end, limit)
            for key, raw in chunk:
                yield self._decode(key, raw)
            if len(chunk) < limit:
                return
            limit = min(limit * 2, _SCAN_CHUNK)
            next_index = key_index(chunk[-1][0]) + 1
            if next_index > high:
                return
            start = _pack_index(next_index)

    # -- StableStore -----------------------------------------------------------

    def set(self, key: bytes, value: bytes | bytearray | memoryview) -> None:
        """Store *value* (bytes-like, copied) under *key* (1..511 bytes)."""
        key = _check_key(key)
        if type(value) is not bytes:
            if not isinstance(value, (bytearray, memoryview, bytes)):
                raise InvalidArgumentError(
                    f"stable value must be bytes, got {type(value).__name__}"
                )
            value = bytes(value)
        self._put_stable(key, value, "set")

    def _put_stable(self, key: bytes, value: bytes, operation: str) -> None:
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                self._raise_read_only(operation)
            self._engine.put(STABLE, key, self._format.frame(STABLE, key, value))
            self._counts["stable_sets"] += 1

    def get(self, key: bytes) -> bytes | None:
        """The value under *key*, or None when absent (a stored ``b""`` is ``b""``)."""
        key = _check_key(key)
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            raw = self._engine.get(STABLE, key)
        if raw is None:
            return None
        return bytes(self._format.unframe(STABLE, key, raw, f"stable key {_short_key(key)}"))

    def set_uint64(self, key: bytes, value: int) -> None:
        """Store *value* (0..2**64-1) under *key* as 8 big-endian bytes."""
        key = _check_key(key)
        value = _check_uint64(value, "uint64 value")
        self._put_stable(key, _pack_index(value), "set_uint64")

    def get_uint64(self, key: bytes) -> int:
        """The integer under *key*, 0 when absent.

        Raises `CorruptionError` when the stored value is not 8 bytes.
        """
        value = self.get(key)
        if value is None:
            return 0
        if len(value) != 8:
            raise CorruptionError(
                f"stable key {_short_key(key)} holds {len(value)} bytes, not an 8-byte uint64"
            )
        result: int = _unpack_index(value)[0]
        return result

    def iter_stable(self) -> Iterator[tuple[bytes, bytes]]:
        """Yield every ``(key, value)`` of the stable store in key order."""
        start = b"\x00"
        while True:
            with self._lock:
                if self._state is not _OPEN:
                    self._raise_unusable()
                chunk = self._engine.scan(STABLE, start, None, _SCAN_CHUNK)
            for key, raw in chunk:
                yield (
                    key,
                    bytes(self._format.unframe(STABLE, key, raw, f"stable key {_short_key(key)}")),
                )
            if len(chunk) < _SCAN_CHUNK:
                return
            start = chunk[-1][0] + b"\x00"

    # -- lifecycle -------------------------------------------------------------

    def sync(self) -> None:
        """Force everything written so far onto stable storage."""
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if not self._read_only:
                self._engine.sync()
                self._counts["syncs"] += 1

    def compact(self) -> None:
        """Ask the engine to give disk space back after deletions."""
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                self._raise_read_only("compact")
            self._engine.compact()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the store: what it is, its bounds, its disk usage and its counters.

        ``counters`` holds the write counters every store keeps (appends,
        entries written, head and tail truncations, stable sets, syncs); a
        store opened with ``metrics=`` adds its read counters. Reads the
        engine's disk usage, so it is not for a hot path.
        """
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            first, last = self._bounds()
            disk = self._engine.disk_usage()
            return {
                "engine": self._engine_name,
                "codec": self._codec_name,
                "path": None if self._path is None else str(self._path),
                "format": self._format.version,
                "sync_writes": self._engine.sync_writes,
                "read_only": self._read_only,
                "monotonic": self._engine.monotonic,
                "first_index": first,
                "last_index": last,
                "commit_index": self._read_commit_index() if self._read_only else self._commit,
                "disk_usage_bytes": disk,
                "counters": dict(self._counts),
            }

    def disk_usage(self) -> int:
        """Bytes the engine's files take on disk (0 in memory)."""
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            return self._engine.disk_usage()

    def close(self) -> None:
        """Close the store and release its lock; idempotent."""
        with self._lock:
            state, self._state = self._state, _CLOSED
            _open_stores.discard(self)
            if state is _CLOSED:
                return
            try:
                if state is _OPEN:
                    self._engine.close()
            finally:
                if self._lock_file is not None:
                    if state is _OPEN:
                        self._lock_file.release()
                    self._lock_file = None


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
            return _create(path, opening, lock, marker, sync=sync, options=options)
        return _open_existing(path, opening, lock, marker, sync, read_only, options)
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
            f"store {path}: stable key {_short_key(key)} (restore the store from a backup,"
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
