"""The ``rocksdb`` engine: RocksDB through the ``rocksdict`` binding.

Install with ``pip install 'raftstore[rocksdb]'``. This module imports
``rocksdict`` at the top; the registry imports the module only when the
engine is first used, so ``import raftstore`` never loads RocksDB.

Layout: every namespace lives in the default column family under a one-byte
key prefix (`raftstore.engines._prefixed`), not in a column family of its
own. One write batch then spans every namespace without column-family
handles, and those handles matter: in rocksdict every column-family object
and handle keeps the database, and so its ``LOCK`` file, alive after
``close()``. A prefix also bounds a namespace (``[prefix, next byte)``), so
clearing one is a single native range delete whatever its keys' lengths.

Inclusive range deletes become native ``delete_range`` tombstones with the
exclusive end ``successor(high)`` (``high + b"\\x00"``: no overflow at
``b"\\xff" * 8``). Seeks skip a range tombstone in one step, so
`first_key` stays fast after a large prefix delete without compaction;
`compact` gives the disk space back.

Never forget: RocksDB's recovery defaults drop acknowledged writes without
an error (point-in-time WAL recovery stops at a damaged record and then
deletes the WAL; a truncated MANIFEST is read as a shorter valid one and the
table files it no longer lists are deleted). This engine opens with
tolerate-corrupted-tail-records recovery and paranoid checks, so only a torn
final WAL record (a write that never returned) is dropped, and it opens an
existing database read-write only after a read-only open (which changes no
file) has shown that the MANIFEST still lists every table file whose writes
no WAL holds. RocksDB's log reader loops forever on a record of the
"recyclable" types in a WAL that was not recycled (as damage can make one):
those are looked for first, in Python, and refused.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import rocksdict

from raftstore.engines._prefixed import (
    GIB,
    KIB,
    MIB,
    NAMESPACE_PREFIXES,
    TIB,
    PrefixedEngine,
    byte_size_option,
    compression_option,
    delete_ranges,
    key_bounds,
    namespace_bounds,
    namespace_prefix,
)
from raftstore.engines.base import EngineOption, WriteBatch, between
from raftstore.errors import RaftStoreError

__all__ = ["RocksDBEngine"]

#: Compression names accepted by the ``compression`` option -> rocksdict factory.
_COMPRESSIONS: Mapping[str, Callable[[], rocksdict.DBCompressionType]] = {
    "none": rocksdict.DBCompressionType.none,
    "snappy": rocksdict.DBCompressionType.snappy,
    "lz4": rocksdict.DBCompressionType.lz4,
    "lz4hc": rocksdict.DBCompressionType.lz4hc,
    "zstd": rocksdict.DBCompressionType.zstd,
    "zlib": rocksdict.DBCompressionType.zlib,
    "bz2": rocksdict.DBCompressionType.bz2,
}

#: RocksDB rotates its info log on every open; keep a few, not its default 1000.
_KEEP_INFO_LOG_FILES = 5

# -- RocksDB's log format (WAL and MANIFEST), as far as the checks below need it ---------

#: Log files are written in blocks of this many bytes; a record never spans a block edge.
_LOG_BLOCK = 32 * 1024
#: A physical record's header: checksum (4), length (2, little-endian), type (1).
_LOG_HEADER = 7
#: Record types of recycled log files. raftstore never recycles WALs, so one of these is
#: damage, and RocksDB's reader loops forever on it instead of reporting it.
_RECYCLABLE_TYPES = frozenset((5, 6, 7, 8, 11))
#: Full and first fragments: a write batch starts here, with its sequence number.
_BATCH_START_TYPES = frozenset((1, 2))
#: Attempts at a read-only (re)open beside a writer that is replacing files meanwhile.
_READ_ONLY_ATTEMPTS = 5


def _log_records(data: Any, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """Yield ``(offset, type, length)`` of each physical record from *start*, as RocksDB walks.

    A record whose length runs past its block makes the reader skip to the
    next block, as does a zero header (preallocated space); a partial header
    at the end is a torn tail and ends the walk.
    """
    size = len(data)
    pos = start
    while pos + _LOG_HEADER <= size:
        left = _LOG_BLOCK - pos % _LOG_BLOCK
        if left < _LOG_HEADER:
            pos += left  # the block's zero-filled trailer
            continue
        length = data[pos + 4] | (data[pos + 5] << 8)
        kind = data[pos + 6]
        yield pos, kind, length
        end = pos + (_LOG_HEADER + 4 if kind in _RECYCLABLE_TYPES else _LOG_HEADER) + length
        if (kind == 0 and length == 0) or end > pos + left:
            pos += left
        else:
            pos = end


def _read_whole(path: Path) -> Any:
    """Return the bytes of *path* (memory-mapped when it is large), or b"" when missing."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < 1024 * 1024:
                return file.read()
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        return b""


def _log_scan(path: Path, start: int = 0) -> tuple[str | None, int, int | None]:
    """Scan the log file *path* from *start* (a record boundary).

    Returns ``(problem, resume, first_sequence)``: a description of a record
    RocksDB cannot read without looping (or None), the offset to resume a
    later scan at, and the sequence number of the first write batch (WAL).
    """
    data = _read_whole(path)
    resume = start
    first: int | None = None
    try:
        for pos, kind, length in _log_records(data, start):
            if kind in _RECYCLABLE_TYPES:
                problem = f"{path.name} has a record of unknown type {kind} at offset {pos}"
                return problem, pos, first
            batch_start = kind in _BATCH_START_TYPES and length >= 12
            if first is None and batch_start and pos + _LOG_HEADER + 8 <= len(data):
                first = int.from_bytes(data[pos + 7 : pos + 15], "little")
            resume = pos
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    return None, resume, first


def _largest_sequence(path: Path) -> int | None:
    """Return the ``rocksdb.key.largest.seqno`` property of table file *path*, or None."""
    name = b"key.largest.seqno"
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            file.seek(max(0, size - 256 * KIB))
            tail = file.read()
    except OSError:
        return None
    at = tail.rfind(name)
    # A property block entry: varint shared, varint unshared, varint value length, key, value.
    if at >= 11 and tail[at - 8 : at] == b"rocksdb." and tail[at - 11 : at - 9] == b"\x00\x19":
        value_at, value_length = at + len(name), tail[at - 9]
    elif at >= 3 and tail[at - 3 : at - 1] == b"\x08\x11":
        value_at, value_length = at + len(name), tail[at - 1]
    else:
        return None
    number = shift = 0
    for byte in tail[value_at : value_at + min(value_length, 10)]:
        number |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return number
    return None


def _file_number(name: str) -> int:
    stem = name.split(".", 1)[0].split("-")[-1]
    return int(stem) if stem.isdigit() else -1


class RocksDBEngine(PrefixedEngine[rocksdict.Rdict]):
    """RocksDB (rocksdict) as a raftstore key-value engine.

    Writes go through the write-ahead log; with ``sync=True`` each write
    batch is fsynced before it returns (``WriteOptions.sync``), with
    ``sync=False`` it reaches the OS and `sync` fsyncs the WAL.

    Read-only handles use RocksDB's plain read-only open, which writes no
    file and takes no lock, so they run beside the writer (in this process or
    another). Before every read such a handle looks (with one directory
    listing) whether the writer's WAL or MANIFEST changed, and if so opens
    the database again, so it sees every batch the writer committed. (A
    *secondary* instance would catch up incrementally, but its WAL reader
    loops forever on some damage, and it needs a directory of its own.)
    """

    name: ClassVar[str] = "rocksdb"
    persistent: ClassVar[bool] = True
    supports_read_only: ClassVar[bool] = True
    options: ClassVar[Mapping[str, EngineOption]] = {
        "write_buffer_size": byte_size_option(
            64 * MIB,
            "bytes of writes kept in the memtable before it is flushed to a table file",
            minimum=64 * KIB,
            maximum=64 * GIB,
        ),
        "block_cache_size": byte_size_option(
            32 * MIB,
            "bytes of the LRU cache of uncompressed table blocks; 0 disables it",
            minimum=0,
            maximum=TIB,
        ),
        "compression": compression_option(_COMPRESSIONS, "table file"),
        "max_background_jobs": EngineOption(
            int,
            2,
            "threads for background flushes and compactions",
            check=between(1, 64, "threads"),
        ),
    }

    def __init__(
        self,
        path: Path | None,
        *,
        sync: bool,
        read_only: bool,
        options: Mapping[str, Any],
        create: bool = True,
    ) -> None:
        """Open the RocksDB database in *path*, creating it only when *create* is true.

        Raises `StoreLockedError` when another handle holds the database,
        `CorruptionError` when an existing database's files are missing or
        damaged (nothing is then changed on disk) and `StorageError` for
        other failures, besides the path checks of `PrefixedEngine`.
        """
        self._options = options
        #: Per WAL/MANIFEST name: (size, offset a later framing scan resumes at).
        self._scanned: dict[str, tuple[int, int]] = {}
        self._files_seen: tuple[tuple[str, int, int], ...] = ()
        super().__init__(path, sync=sync, read_only=read_only, options=options, create=create)
        if read_only:
            self._opened(self._open_read_only())
        else:
            if not self.create:
                # Read-only first: it changes no file, so a refusal leaves them all as they were.
                self._check_table_files(self._open_read_only())
            try:
                if self.create:
                    self._data_path.mkdir(parents=True, exist_ok=True)
                    self._check_logs()
                native = rocksdict.Rdict(
                    str(self._data_path),
                    self._native_options(options, create=self.create),
                    access_type=rocksdict.AccessType.read_write(),
                )
            except RaftStoreError:
                raise
            except Exception as exc:
                self._raise_native(exc, "open")
            self._opened(native)
        self._write_options = rocksdict.WriteOptions()
        self._write_options.sync = sync

    @staticmethod
    def _native_options(options: Mapping[str, Any], *, create: bool) -> rocksdict.Options:
        native = rocksdict.Options(raw_mode=True)
        native.create_if_missing(create)
        # Drop only a torn final WAL record (a write that never returned); any
        # other damage fails the open instead of silently rolling back.
        native.set_wal_recovery_mode(rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records())
        native.set_paranoid_checks(True)
        native.set_write_buffer_size(options["write_buffer_size"])
        native.set_compression_type(_COMPRESSIONS[options["compression"]]())
        native.set_max_background_jobs(options["max_background_jobs"])
        native.set_keep_log_file_num(_KEEP_INFO_LOG_FILES)
        table = rocksdict.BlockBasedOptions()
        if options["block_cache_size"]:
            table.set_block_cache(rocksdict.Cache(options["block_cache_size"]))
        else:
            table.disable_cache()
        native.set_block_based_table_factory(table)
        return native

    @staticmethod
    def _is_lock_error(exc: BaseException, text: str) -> bool:
        # rocksdict raises plain Exception whose text starts with RocksDB's status.
        return text.startswith("IO error") and "LOCK" in text

    @staticmethod
    def _is_corruption(exc: BaseException, text: str) -> bool:
        return text.startswith("Corruption")

    # -- checks of an existing database ----------------------------------------------------

    def _check_existing(self) -> None:
        super()._check_existing()
        self._check_logs()

    def _log_files(self) -> list[tuple[str, int, int]]:
        """Return ``(name, size, mtime_ns)`` of CURRENT, every MANIFEST and every WAL."""
        found = []
        try:
            with os.scandir(self._data_path) as entries:
                for entry in entries:
                    name = entry.name
                    if name == "CURRENT" or name.startswith("MANIFEST-") or name.endswith(".log"):
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        found.append((name, info.st_size, info.st_mtime_ns))
        except FileNotFoundError:
            return []
        except OSError as exc:
            self._raise_native(exc, "listing")
        found.sort()
        return found

    def _check_logs(self) -> tuple[tuple[str, int, int], ...]:
        """Refuse WALs and MANIFESTs holding a record RocksDB's reader would loop on.

        Scans only what was appended since the last scan; returns the files seen.
        """
        files = tuple(self._log_files())
        scanned: dict[str, tuple[int, int]] = {}
        for name, size, _ in files:
            if name == "CURRENT":
                continue
            known_size, resume = self._scanned.get(name, (0, 0))
            if size < known_size:
                resume = 0  # replaced or truncated: scan it all again
            if size != known_size or name not in self._scanned:
                problem, resume, _ = _log_scan(self._data_path / name, resume)
                if problem is not None:
                    raise self._damaged(problem)
            scanned[name] = (size, resume)
        self._scanned = scanned
        return files

    def _check_table_files(self, db: rocksdict.Rdict) -> None:
        """Check, in read-only *db*, that the MANIFEST lists every table file holding lost writes.

        A truncated MANIFEST reads as an older valid one; a read-write open
        would then delete the table files written since, and their writes
        with them. A table file the MANIFEST does not list is a leftover of a
        crash (harmless) only when its writes are older than those of the
        listed table files (an unfinished compaction, or inputs not yet
        deleted) or a WAL still holds them (an unfinished flush). *db* is closed.
        """
        try:
            live = {entry["name"].lstrip("/") for entry in db.live_files()}
            recovered = db.latest_sequence_number()
        except Exception as exc:
            db.close()
            self._raise_native(exc, "open")
        db.close()
        try:
            tables = sorted(name for name in os.listdir(self._data_path) if name.endswith(".sst"))
        except OSError as exc:
            self._raise_native(exc, "listing")
        unlisted = [name for name in tables if name not in live]
        if not unlisted:
            return
        listed_newest = max(
            (_largest_sequence(self._data_path / name) or 0 for name in live), default=0
        )
        wal_firsts = [
            first
            for name in os.listdir(self._data_path)
            if name.endswith(".log")
            for _, _, first in [_log_scan(self._data_path / name)]
            if first is not None
        ]
        oldest_in_wal = min(wal_firsts, default=None)
        for name in unlisted:
            newest = _largest_sequence(self._data_path / name)
            if newest is not None and newest <= listed_newest:
                continue
            in_a_wal = oldest_in_wal is not None and newest is not None
            if in_a_wal and oldest_in_wal <= newest <= recovered:  # type: ignore[operator]
                continue
            held = "writes of unknown sequence" if newest is None else f"writes up to {newest}"
            raise self._damaged(
                f"table file {name} holds {held}, which neither the MANIFEST nor a WAL holds "
                f"(the database recovers only to sequence {recovered}): the MANIFEST is "
                "truncated or damaged"
            )

    # -- read-only handles ------------------------------------------------------------------

    def _open_read_only(self) -> rocksdict.Rdict:
        """Open the database read-only (no file is written), after the framing checks."""
        native_options = self._native_options(self._options, create=False)
        # Keep every table file open, so the writer's compactions cannot delete
        # one from under this handle; open them on one thread (16 by default).
        native_options.set_max_open_files(-1)
        native_options.set_max_file_opening_threads(1)
        for attempt in range(_READ_ONLY_ATTEMPTS):
            self._files_seen = self._check_logs()
            try:
                return rocksdict.Rdict(
                    str(self._data_path),
                    native_options,
                    access_type=rocksdict.AccessType.read_only(),
                )
            except Exception as exc:
                # A writer beside us may have replaced a file while we opened: retry.
                changed = tuple(self._log_files()) != self._files_seen
                if attempt + 1 < _READ_ONLY_ATTEMPTS and changed:
                    time.sleep(0.001 * (attempt + 1))
                    continue
                self._raise_native(exc, "open")
        raise AssertionError("unreachable")  # pragma: no cover

    def _readable(self) -> rocksdict.Rdict:
        """Return the open database; a read-only handle first reopens if the writer wrote since."""
        db = self._live()
        if self.read_only and tuple(self._log_files()) != self._files_seen:
            fresh = self._open_read_only()
            self._db = fresh
            try:
                db.close()
            except Exception as exc:
                self._raise_native(exc, "close")
            return fresh
        return db

    def write(self, batch: WriteBatch) -> None:
        """Apply *batch* as one RocksDB write batch: all of it or, on any error, none."""
        if self.read_only:
            raise self._read_only_error()
        db = self._live()
        native = rocksdict.WriteBatch(raw_mode=True)
        prefixes = NAMESPACE_PREFIXES
        try:
            for start, end in delete_ranges(batch):
                native.delete_range(start, end)
            for namespace, key, value in batch.puts:
                native.put(prefixes[namespace] + key, value)
        except Exception as exc:
            self._raise_write_error(exc)
        if native.is_empty():
            return
        try:
            db.write(native, self._write_options)
        except Exception as exc:
            self._raise_native(exc, "write")

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        """Store one value with ``DB::Put`` (cheaper than a batch of one when synced)."""
        if self.read_only:
            raise self._read_only_error()
        db = self._live()
        prefixed = namespace_prefix(namespace) + key
        try:
            db.put(prefixed, value, self._write_options)
        except Exception as exc:
            self._raise_native(exc, "write")

    def _read_options(self, lowest: bytes, end: bytes) -> rocksdict.ReadOptions:
        # Bounds stop a seek from walking into deleted keys or other namespaces.
        read_options = rocksdict.ReadOptions()
        read_options.set_iterate_lower_bound(lowest)
        read_options.set_iterate_upper_bound(end)
        return read_options

    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Return up to *limit* ``(key, value)`` pairs with ``low <= key <= high``, in key order."""
        db = self._readable()
        prefix, end = key_bounds(namespace, high)
        start = prefix + low
        pairs: list[tuple[bytes, bytes]] = []
        if limit <= 0 or start >= end:
            return pairs
        skip = len(prefix)
        iterator = None
        try:
            iterator = db.iter(self._read_options(start, end))
            iterator.seek(start)
            while len(pairs) < limit and iterator.valid():
                pairs.append((iterator.key()[skip:], iterator.value()))
                iterator.next()
            iterator.status()
        except Exception as exc:
            self._raise_native(exc, "scan")
        finally:
            # A live iterator keeps the database, and its LOCK, open.
            del iterator
        return pairs

    def first_key(self, namespace: str, low: bytes = b"") -> bytes | None:
        """Return the smallest key ``>= low`` in *namespace*, or None."""
        db = self._readable()
        prefix, end = namespace_bounds(namespace)
        start = prefix + low
        if start >= end:
            return None
        return self._edge_key(db, start, end, len(prefix), last=False)

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        """Return the largest key ``<= high`` (any key when None) in *namespace*, or None."""
        db = self._readable()
        prefix, end = key_bounds(namespace, high)
        return self._edge_key(db, prefix, end, len(prefix), last=True)

    def _edge_key(
        self, db: rocksdict.Rdict, lowest: bytes, end: bytes, skip: int, *, last: bool
    ) -> bytes | None:
        """Return the first (*last*: last) key in ``[lowest, end)``, less *skip* bytes, or None."""
        key: bytes | None = None
        iterator = None
        try:
            iterator = db.iter(self._read_options(lowest, end))
            if last:
                # With an upper bound set, seek_to_last finds the last key below it.
                iterator.seek_to_last()
            else:
                iterator.seek(lowest)
            if iterator.valid():
                key = iterator.key()[skip:]
            else:
                iterator.status()
        except Exception as exc:
            self._raise_native(exc, "seek")
        finally:
            # A live iterator keeps the database, and its LOCK, open.
            del iterator
        return key

    def sync(self) -> None:
        """Fsync the write-ahead log: every write made so far survives a crash."""
        db = self._live()
        if self.read_only:
            return
        try:
            db.flush_wal(sync=True)
        except Exception as exc:
            self._raise_native(exc, "sync")

    def compact(self) -> None:
        """Compact every level, dropping deleted entries and giving their disk space back."""
        db = self._live()
        if self.read_only:
            return
        compact_options = rocksdict.CompactOptions()
        # Without this, RocksDB skips the bottommost level, where most deleted data sits.
        compact_options.set_bottommost_level_compaction(
            rocksdict.BottommostLevelCompaction.force_optimized()
        )
        try:
            db.compact_range(None, None, compact_options)
        except Exception as exc:
            self._raise_native(exc, "compact")
