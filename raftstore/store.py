"""The generic store: Raft semantics implemented once over a key-value `Engine`.

The key layout and record format are described (and implemented) once, in
`raftstore._records`; the store directory (marker, lock, durable renames)
in `raftstore._directory`. Every read checks the record's checksum and, for
logs, that the decoded index is the key's.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import warnings
import weakref
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from raftstore._directory import (
    DATA_DIR,
    MARKER_FILE,
    DirectoryLock,
    read_marker,
)
from raftstore._records import (
    COMMIT_KEY,
    CRC_RESIDUE,
    FORMAT_VERSION,
    RecordFormat,
    index_key,
    key_index,
    record_format,
)
from raftstore.codecs.base import Codec
from raftstore.engines.base import LOGS, META, STABLE, Engine, WriteBatch
from raftstore.errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidLogError,
    LogNotFoundError,
    RaftStoreError,
    ReadOnlyError,
    StoreClosedError,
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
    "read_marker",
    "short_key",
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
_log = logging.getLogger("raftstore")


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


def short_key(key: bytes) -> str:
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
        self._check_bound_records()
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

    def _check_bound_records(self) -> None:
        """Check at open that the first and last keys are real entries: the bounds come from them.

        A record under a damaged key (a flipped bit in the key) would
        otherwise become ``last_index`` without an error. Its checksum, which
        covers the key, fails; if it then decodes to an entry of another
        index, the key is what is damaged and the store is refused. A record
        whose value is damaged under its right key is left for the read of
        that entry to report (and for raft to rewrite).
        """
        if not self._first:
            return
        for index in {self._first, self._last}:
            key = _pack_index(index)
            raw = self._engine.get(LOGS, key)
            if raw is None:
                if self._read_only:
                    continue  # a writer beside this handle deleted it since the seek
                raise CorruptionError(f"log {index}: the engine lists its key but holds no record")
            try:
                self._format.unframe(LOGS, key, raw, f"log {index}")
                continue
            except CorruptionError:
                pass
            try:
                held = self._codec_decode(raw[:-4]).index
            except Exception:
                continue  # a damaged value: reported when the entry is read
            if held != index:
                edge = "first" if index == self._first else "last"
                raise CorruptionError(
                    f"log key {index} (the log's {edge} entry) holds the record of entry"
                    f" {_short_int(held)}: the key is damaged. Restore the store from a backup,"
                    " or remove it and rejoin the cluster as a new node"
                )

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
        return bytes(self._format.unframe(STABLE, key, raw, f"stable key {short_key(key)}"))

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
                f"stable key {short_key(key)} holds {len(value)} bytes, not an 8-byte uint64"
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
                    bytes(self._format.unframe(STABLE, key, raw, f"stable key {short_key(key)}")),
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
            _log.info("compacting %r", self)
            self._engine.compact()
            _log.info("compacted %r", self)

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
