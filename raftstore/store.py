"""The generic store: Raft semantics implemented once over a key-value `Engine`.

Key layout (one place for it):

- namespace ``logs``: ``index`` as 8-byte big-endian -> record
- namespace ``stable``: the caller's key -> record
- namespace ``meta``: ``b"raftstore"`` -> record holding JSON
  ``{"format": 1, "engine": ..., "codec": ...}``

A record is the payload (the codec's bytes for a log, the caller's bytes for
a stable value) followed by its CRC-32 as 4 little-endian bytes. Every read
checks the checksum and, for logs, that the decoded index is the key's.
With the CRC appended little-endian, the CRC-32 of a whole intact record is
a constant (the CRC "residue"), so checking costs one pass over the record.

On disk a store is a directory holding ``raftstore.json`` (which engine wrote
it, so a plain path reopens with the right engine), ``raftstore.lock`` (the
one-writer lock) and ``data/`` (the engine's own files).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import struct
import threading
import weakref
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

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
    StoreLockedError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from raftstore.log import MAX_UINT64, Log, is_storable, validate_log
from raftstore.protocols import Capabilities

__all__ = [
    "DATA_DIR",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "MARKER_FILE",
    "MAX_STABLE_KEY_SIZE",
    "RaftStore",
    "engine_capabilities",
    "index_key",
    "open_store",
    "read_marker",
]

#: Version of the on-disk layout described in this module's docstring.
FORMAT_VERSION = 1
MARKER_FILE = "raftstore.json"
LOCK_FILE = "raftstore.lock"
DATA_DIR = "data"
#: Longest stable key every engine accepts (LMDB's limit).
MAX_STABLE_KEY_SIZE = 511
META_KEY = b"raftstore"
_SCAN_CHUNK = 1024
_FIRST_SCAN_CHUNK = 32

_INDEX = struct.Struct(">Q")
#: CRC-32 of any intact record (payload + its CRC-32 in little-endian).
_CRC_RESIDUE = 0x2144DF1C
_pack_index = _INDEX.pack
_unpack_index = _INDEX.unpack
_crc32 = zlib.crc32

_OPEN, _CLOSED, _FORKED = "open", "closed", "forked"

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
        # Key-value engines allow gaps and overwrites.
        monotonic=False,
        # Every on-disk store can be opened read-only: the store refuses writes.
        read_only=persistent,
        concurrent_readers=persistent and engine_class.supports_read_only,
        # The store's lock file guards every on-disk engine.
        locking=persistent,
    )


def index_key(index: int) -> bytes:
    """The key of log *index* in the ``logs`` namespace (8-byte big-endian)."""
    return _pack_index(index)


def _frame(payload: bytes) -> bytes:
    """A record: *payload* followed by its CRC-32, little-endian."""
    return payload + _crc32(payload).to_bytes(4, "little")


def _unframe(raw: bytes, what: str) -> bytes | memoryview:
    """The payload of a record after checking its checksum; raises `CorruptionError`."""
    if len(raw) < 4:
        raise CorruptionError(f"{what}: record is {len(raw)} bytes, too short to hold a checksum")
    if _crc32(raw) != _CRC_RESIDUE:
        raise CorruptionError(f"{what}: checksum mismatch (the stored bytes are damaged)")
    # Slicing copies, but below a few KiB a copy is cheaper than a memoryview.
    return raw[:-4] if len(raw) < 4096 else memoryview(raw)[:-4]


def _check_uint64(value: object, what: str) -> int:
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidArgumentError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_UINT64:
        raise InvalidArgumentError(f"{what} must be in 0..2**64-1, got {value}")
    return int(value)


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
        "_engine",
        "_engine_get",
        "_engine_name",
        "_first",
        "_last",
        "_lock",
        "_lock_acquire",
        "_lock_file",
        "_lock_release",
        "_path",
        "_read_only",
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
        lock_file: _LockFile | None = None,
    ) -> None:
        """Wrap an opened *engine*; use `raftstore.open` rather than calling this."""
        self._engine = engine
        self._codec = codec
        # Bound once: attribute lookups are a measurable part of a get.
        self._engine_get = engine.get
        self._codec_decode = codec.decode
        self._engine_name = engine_name
        self._codec_name = codec_name
        self._path = path
        self._read_only = read_only
        self._lock_file = lock_file
        self._lock = threading.Lock()
        self._lock_acquire = self._lock.acquire
        self._lock_release = self._lock.release
        self._state = _OPEN
        self._first = self._last = 0
        self._load_bounds()
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
        """False: key-value engines allow gaps and overwrites (hashicorp ``MonotonicLogStore``)."""
        return False

    @property
    def capabilities(self) -> Capabilities:
        """What this store's engine can do."""
        return engine_capabilities(type(self._engine))

    @property
    def kv(self) -> Engine:
        """The underlying engine, for tools and tests: bypasses every check and lock."""
        return self._engine

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
        self._first = self._key_index(first)
        self._last = self._key_index(last)

    @staticmethod
    def _key_index(key: bytes) -> int:
        if len(key) != 8:
            raise CorruptionError(f"log key {key!r} is not 8 bytes")
        index: int = _unpack_index(key)[0]
        return index

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
        if _crc32(raw) == _CRC_RESIDUE and len(raw) < 4096:
            payload: bytes | memoryview = raw[:-4]
        else:
            payload = _unframe(raw, f"log {index}")
        try:
            log = self._codec_decode(payload)
        except CorruptionError as exc:
            raise CorruptionError(f"log {index}: {exc}") from exc
        if log.index != index:
            raise CorruptionError(f"log {index}: record holds index {log.index}")
        return log

    def _decode(self, index: int, raw: bytes) -> Log:
        payload = _unframe(raw, f"log {index}")
        try:
            log = self._codec.decode(payload)
        except CorruptionError as exc:
            raise CorruptionError(f"log {index}: {exc}") from exc
        if log.index != index:
            raise CorruptionError(f"log {index}: record holds index {log.index}")
        return log

    def store_log(self, log: Log) -> None:
        """Store one entry; same as ``store_logs([log])``, with one engine put."""
        if not is_storable(log):
            validate_log(log)
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                self._raise_read_only("store_log")
            index = log.index
            self._engine.put(LOGS, _pack_index(index), self._encode_record(log))
            self._note_stored(index, index)

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
            puts: list[tuple[str, bytes, bytes]] = []
            append = puts.append
            low = high = -1
            for position, log in enumerate(batch):
                if not is_storable(log):
                    validate_log(log, position)
                index = log.index
                try:
                    payload = encode(log)
                except RaftStoreError:
                    raise
                except Exception as exc:
                    raise self._encode_error(log, position, exc) from exc
                # _frame, inlined: a call per entry is measurable here.
                append((LOGS, _pack_index(index), payload + _crc32(payload).to_bytes(4, "little")))
                if index > high:
                    high = index
                    if low < 0:
                        low = index
                elif index < low:
                    low = index
            self._engine.write(WriteBatch(puts=puts))
            self._note_stored(low, high)

    def _encode_record(self, log: Log) -> bytes:
        """The framed record of a validated *log*; `InvalidLogError` if the codec fails."""
        try:
            payload = self._codec.encode(log)
        except RaftStoreError:
            raise
        except Exception as exc:
            raise self._encode_error(log, None, exc) from exc
        return _frame(payload)

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
                return
            # The new bounds are found before deleting (the keys beside the
            # range are the same before and after), so a failed seek leaves
            # the store untouched. Seeking from the range's edge, never from
            # the namespace's start, keeps it fast on engines with tombstones.
            if low == first:
                key = self._engine.first_key(LOGS, _pack_index(high + 1))
                assert key is not None
                first = self._key_index(key)
            if high == last:
                key = self._engine.last_key(LOGS, _pack_index(low - 1))
                assert key is not None
                last = self._key_index(key)
            self._engine.write(WriteBatch(deletes=[(LOGS, _pack_index(low), _pack_index(high))]))
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
                yield self._decode(self._key_index(key), raw)
            if len(chunk) < limit:
                return
            limit = min(limit * 2, _SCAN_CHUNK)
            next_index = self._key_index(chunk[-1][0]) + 1
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
            self._engine.put(STABLE, key, _frame(value))

    def get(self, key: bytes) -> bytes | None:
        """The value under *key*, or None when absent (a stored ``b""`` is ``b""``)."""
        key = _check_key(key)
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            raw = self._engine.get(STABLE, key)
        if raw is None:
            return None
        return bytes(_unframe(raw, f"stable key {key!r}"))

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
                f"stable key {key!r} holds {len(value)} bytes, not an 8-byte uint64"
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
                yield key, bytes(_unframe(raw, f"stable key {key!r}"))
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

    def compact(self) -> None:
        """Ask the engine to give disk space back after deletions."""
        with self._lock:
            if self._state is not _OPEN:
                self._raise_unusable()
            if self._read_only:
                self._raise_read_only("compact")
            self._engine.compact()

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


class _LockFile:
    """The store's one-writer lock: ``flock`` on ``raftstore.lock``.

    ``flock`` locks belong to the open file, so a second open in the same
    process conflicts just like one from another process; the kernel
    releases the lock when the holder dies, so a killed writer never leaves
    a stale lock behind.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreLockedError(
                    f"store {directory} is locked by {holder or 'another handle'};"
                    " close that handle (or stop that process), or open with"
                    " read_only=True where the engine allows it"
                ) from exc
            raise StorageError(f"cannot lock {self.path}: {exc}") from exc
        self._fd: int | None = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\n".encode())
        except OSError:
            pass  # the holder note is informational only

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def forget(self) -> None:
        """Close this process's descriptor (after fork: the parent still holds the lock)."""
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f"process {text.split()[-1]}" if text.startswith("pid ") else ""


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The contents of *directory*'s ``raftstore.json``, or None when there is none."""
    marker = directory / MARKER_FILE
    try:
        text = marker.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {marker}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CorruptionError(f"{marker} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("engine"), str):
        raise CorruptionError(f"{marker} does not name an engine: {text!r:.80}")
    return data


def _write_marker(directory: Path, engine: str) -> None:
    marker = directory / MARKER_FILE
    tmp = directory / (MARKER_FILE + ".tmp")
    data = json.dumps({"engine": engine, "format": FORMAT_VERSION}).encode() + b"\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, marker)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StorageError(f"cannot write {marker}: {exc}") from exc


def resolve_engine_name(path: Path | None, engine: str | None, default: str) -> str:
    """The engine to open *path* with: the recorded one, else *engine*, else *default*.

    Raises `ConfigurationError` when *engine* contradicts the recorded engine
    or when *path* is a non-empty directory that holds no store.
    """
    if path is None:
        return engine or default
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"{path} is a file; a store is a directory")
    marker = read_marker(path) if path.is_dir() else None
    if marker is not None:
        recorded = str(marker["engine"])
        if engine is not None and engine != recorded:
            raise ConfigurationError(
                f"store {path} was created with engine {recorded!r}, not {engine!r};"
                f" open it with engine={recorded!r} (or migrate it)"
            )
        return recorded
    # The lock file and a marker left half-written by a creation that was
    # killed are ours: a directory holding only those is still "empty".
    leftovers = {LOCK_FILE, MARKER_FILE + ".tmp"}
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
) -> RaftStore:
    """Open or create the store at *path* (see `raftstore.open` for the contract).

    *make_codec* maps a codec name to a new codec instance.
    """
    if path is None:
        if engine_class.persistent:
            raise ConfigurationError(f"engine {engine_name!r} needs a path: {engine_name}:///path")
        if read_only:
            raise ConfigurationError(
                f"an in-memory {engine_name!r} store starts empty; read_only=True makes no sense"
            )
        engine = engine_class(None, sync=sync, read_only=False, options=options)
        return _finish_open(
            engine, None, None, engine_name, codec_name, default_codec, make_codec, read_only
        )
    if not engine_class.persistent:
        raise ConfigurationError(
            f"engine {engine_name!r} keeps nothing on disk and takes no path; use {engine_name}://"
        )
    is_new = read_marker(path) is None if path.is_dir() else True
    if is_new and (read_only or not create):
        raise StoreNotFoundError(
            f"no raftstore store at {path}"
            + (" (read_only=True never creates one)" if read_only else " (create=False)")
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create store directory {path}: {exc}") from exc
    lock: _LockFile | None = None
    if not (read_only and engine_class.supports_read_only):
        lock = _LockFile(path)
    try:
        if read_marker(path) is None:
            if read_only or not create:
                raise StoreNotFoundError(f"no raftstore store at {path}")
            _write_marker(path, engine_name)
        engine = engine_class(path / DATA_DIR, sync=sync, read_only=read_only, options=options)
        try:
            return _finish_open(
                engine, path, lock, engine_name, codec_name, default_codec, make_codec, read_only
            )
        except BaseException:
            engine.close()
            raise
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _finish_open(
    engine: Engine,
    path: Path | None,
    lock: _LockFile | None,
    engine_name: str,
    codec_name: str | None,
    default_codec: str,
    make_codec: Any,
    read_only: bool,
) -> RaftStore:
    raw = engine.get(META, META_KEY)
    if raw is None:
        if engine.first_key(LOGS) is not None or engine.first_key(STABLE) is not None:
            raise CorruptionError(
                f"store {path} holds data but no meta record; it was not written by raftstore"
            )
        if read_only:
            raise StoreNotFoundError(f"store {path} was never initialised")
        chosen = codec_name or default_codec
        codec = make_codec(chosen)
        record = {"format": FORMAT_VERSION, "engine": engine_name, "codec": chosen}
        engine.write(WriteBatch(puts=[(META, META_KEY, _frame(json.dumps(record).encode()))]))
        engine.sync()
    else:
        meta = _parse_meta(raw, path)
        if meta["engine"] != engine_name:
            raise CorruptionError(
                f"store {path}: meta record names engine {meta['engine']!r}"
                f" but it was opened as {engine_name!r}"
            )
        chosen = meta["codec"]
        if codec_name is not None and codec_name != chosen:
            raise CodecMismatchError(
                f"store {path} was written with codec {chosen!r}, not {codec_name!r};"
                f" open it with codec={chosen!r} or codec=None (or migrate it)"
            )
        codec = make_codec(chosen)
    return RaftStore(
        engine,
        codec,
        engine_name=engine_name,
        codec_name=chosen,
        path=path,
        read_only=read_only,
        lock_file=lock,
    )


def _parse_meta(raw: bytes, path: Path | None) -> dict[str, Any]:
    payload = _unframe(raw, f"store {path}: meta record")
    try:
        meta = json.loads(bytes(payload))
    except ValueError as exc:
        raise CorruptionError(f"store {path}: meta record is not JSON: {exc}") from exc
    if (
        not isinstance(meta, dict)
        or type(meta.get("format")) is not int
        or not isinstance(meta.get("engine"), str)
        or not isinstance(meta.get("codec"), str)
    ):
        raise CorruptionError(f"store {path}: meta record has the wrong shape: {meta!r:.120}")
    if meta["format"] > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"store {path} has format version {meta['format']}; this raftstore reads up to"
            f" {FORMAT_VERSION}: upgrade raftstore"
        )
    return meta
