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
final WAL record (a write that never returned) is dropped, and a read-write
handle of an existing database reads from a read-only open (which changes no
file), after the MANIFEST check below, until its first write, sync or
compaction opens the database read-write: an open the store refuses after
reading (a damaged meta record), or a session that only reads, changes no
file. Meanwhile the handle holds the database's ``LOCK`` (a POSIX lock, as
RocksDB takes it) against writers of other processes, and a claim against
this process's (`_Writer`). RocksDB's log reader loops
forever on a record of the "recyclable" types in a WAL that was not recycled
(as damage can make one): those are looked for first, in Python, and refused.

The live WAL (`RocksDBEngine._check_live_wal`, before any native open, read-only
ones included): RocksDB creates a WAL on every open and memtable switch before
it records a log number L naming it or an older one, and never deletes the WAL
it writes to, not even on close; so a MANIFEST with L set and no WAL numbered
L or more is a deleted live WAL, refused.

The MANIFEST check (`RocksDBEngine._check_table_files`). RocksDB reads a
truncated MANIFEST as an older valid one and then deletes the table files it
no longer lists; the writes those held are gone if the WALs they were flushed
from were deleted too. The check reads, in Python, the MANIFEST's VersionEdit
records (the default column family's log number L, the last sequence number S,
the highest sequence number F any added table held, every table number ever
added) and every write batch header (sequence, count) of the WALs numbered L
or more, the ones RocksDB replays. It rests on RocksDB's order of work: a
table file is synced before the MANIFEST record adding it; a WAL is deleted
only after a synced MANIFEST record says its writes are flushed (L moved past
it); a compaction's inputs only after the record replacing them; a synced
write fsyncs every WAL still open, so the older ones first. A power cut (or
SIGKILL) therefore leaves a MANIFEST that is a prefix of what was written,
every WAL numbered L or more that held a synced write, and possibly table
files no record lists: unfinished flush or compaction outputs and obsolete
files whose unlink was lost. The open is refused when:

1. the first write the replayed WALs hold comes after S + 1: writes S+1..
   are in no WAL and no table listed (the MANIFEST lost the record that
   moved L, and the WALs it let go are deleted);
2. the WALs' write batches leave a gap (a WAL, or part of one, is missing
   while later writes are there; RocksDB would recover them after a hole);
3. a complete table file no record lists, numbered at least L and above the
   MANIFEST's own number, holds writes above F (so it is no compaction of
   listed tables), and of the WALs numbered from L to just below it none
   holds a write it holds, WAL L itself is gone, and fewer than two are left:
   the WALs it was flushed from are gone. (An unfinished flush leaves the
   WAL its memtable was written to, which is WAL L when the last recorded
   flush switched to it, and the WAL switched to before the flush, both
   below the table's number; the WAL a truncated MANIFEST's L names was
   deleted once the lost record moved L past it.)

What it accepts as harmless: tables a record added and a later one deleted
(obsolete compaction inputs; their seqnos can exceed every listed table's,
zeroed by a bottommost compaction), tables older than the MANIFEST or L,
incomplete tables (no footer: never synced), compaction outputs (writes up to
F), and flushes whose record was lost with their WALs still there, even when
the table holds writes the WAL lost (unsynced, never acknowledged): RocksDB
then recovers the WAL's prefix and deletes the table.

What it cannot detect: a truncated MANIFEST whose lost records only compacted
(nothing lost: RocksDB fails on the deleted inputs, or replays the WALs); a
lost flush whose writes a later lost compaction wrote, seqnos zeroed, into a
table that is itself unlisted (its writes look no newer than F) while no WAL
holds later writes; a MANIFEST truncated by exactly the records after which
nothing was written or deleted. It can refuse (safely, never silently) a
state a power cut leaves on ext4 without a journal with unsynced writes: an
unfinished flush whose WAL (other than WAL L) lost every write and whose next
WAL's name did not reach the disk, or unsynced writes reaching the disk out of
order across two WALs (rule 2: RocksDB would recover a hole). The WALs are read in full at
every read-write open of an existing database (about as long as RocksDB's
own replay); the check does not verify checksums, RocksDB's read-only open
has already done so.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import rocksdict

from raftstore.engines._lsm_records import (
    _file_number,
    _log_scan,
    _logical_records,
    _read_whole,
    _slice,
    _Unreadable,
    _varint,
    _wal_batches,
)
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
    lock_native_lock_file,
    namespace_bounds,
    namespace_prefix,
)
from raftstore.engines.base import EngineOption, WriteBatch, between
from raftstore.errors import RaftStoreError, StoreLockedError

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
#: Attempts at a read-only (re)open beside a writer that is replacing files meanwhile.
_READ_ONLY_ATTEMPTS = 5


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


#: The footer magic number that ends every complete block-based table file.
_TABLE_MAGIC = (0x88E241B785F4CFF7).to_bytes(8, "little")

# VersionEdit tags (RocksDB db/version_edit.h) that the MANIFEST check reads or steps over.
_TAG_COMPARATOR = 1
_TAG_LOG_NUMBER = 2
_TAG_NEXT_FILE = 3
_TAG_LAST_SEQUENCE = 4
_TAG_COMPACT_CURSOR = 5
_TAG_DELETED_FILE = 6
_TAG_PREV_LOG_NUMBER = 9
_TAG_MIN_LOG_TO_KEEP = 10
_TAG_NEW_FILE4 = 103
_TAG_COLUMN_FAMILY = 200
_TAG_COLUMN_FAMILY_ADD = 201
_TAG_COLUMN_FAMILY_DROP = 202
_TAG_MAX_COLUMN_FAMILY = 203
_TAG_IN_ATOMIC_GROUP = 300
_TAG_BLOB_FILE_ADDITION = 400
_TAG_BLOB_FILE_GARBAGE = 401
#: Tags with this bit are forward compatible: a length-prefixed value any reader may skip.
_TAG_SAFE_IGNORE = 1 << 13
#: The last custom field of a kNewFile4 record.
_NEW_FILE_TERMINATE = 1
_VARINT_TAGS = frozenset(
    (_TAG_LOG_NUMBER, _TAG_NEXT_FILE, _TAG_LAST_SEQUENCE, _TAG_PREV_LOG_NUMBER,
     _TAG_MIN_LOG_TO_KEEP, _TAG_MAX_COLUMN_FAMILY, _TAG_IN_ATOMIC_GROUP)
)  # fmt: skip
_SLICE_TAGS = frozenset(
    (_TAG_COMPARATOR, _TAG_COLUMN_FAMILY_ADD, _TAG_BLOB_FILE_ADDITION, _TAG_BLOB_FILE_GARBAGE)
)


class _Manifest:
    """What the MANIFEST RocksDB recovers from records about the default column family.

    ``log_number``: WALs numbered below it hold only flushed writes (RocksDB
    skips them). ``last_sequence``: the database's last sequence number when
    the last edit was written. ``flushed``: the highest ``largest_seqno`` any
    table file added by any edit held when it was added (compactions that
    zero sequence numbers lower a file's value, never this history).
    ``added``: every table file number an edit added; ``live``: those not
    deleted since.
    """

    def __init__(self, data: Any) -> None:
        self.log_number = 0
        self.last_sequence = 0
        self.flushed = 0
        self.added: set[int] = set()
        self.live: set[int] = set()
        for _, record in _logical_records(data):
            self._apply(record)

    def _apply(self, edit: bytes) -> None:
        pos, family = 0, 0
        while pos < len(edit):
            tag, pos = _varint(edit, pos)
            if tag in _VARINT_TAGS:
                value, pos = _varint(edit, pos)
                if tag == _TAG_LOG_NUMBER and family == 0:
                    self.log_number = max(self.log_number, value)
                elif tag == _TAG_LAST_SEQUENCE:
                    self.last_sequence = value
            elif tag in _SLICE_TAGS or tag & _TAG_SAFE_IGNORE:
                _, pos = _slice(edit, pos)
            elif tag == _TAG_COLUMN_FAMILY:
                family, pos = _varint(edit, pos)
            elif tag == _TAG_COLUMN_FAMILY_DROP:
                pass
            elif tag == _TAG_COMPACT_CURSOR:
                _, pos = _varint(edit, pos)
                _, pos = _slice(edit, pos)
            elif tag == _TAG_DELETED_FILE:
                _, pos = _varint(edit, pos)
                number, pos = _varint(edit, pos)
                if family == 0:
                    self.live.discard(number)
            elif tag == _TAG_NEW_FILE4:
                _, pos = _varint(edit, pos)  # level
                number, pos = _varint(edit, pos)
                _, pos = _varint(edit, pos)  # size
                _, pos = _slice(edit, pos)  # smallest key
                _, pos = _slice(edit, pos)  # largest key
                _, pos = _varint(edit, pos)  # smallest sequence
                largest, pos = _varint(edit, pos)
                while True:
                    field, pos = _varint(edit, pos)
                    if field == _NEW_FILE_TERMINATE:
                        break
                    _, pos = _slice(edit, pos)
                if family == 0:
                    self.added.add(number)
                    self.live.add(number)
                    self.flushed = max(self.flushed, largest)
            else:
                raise _Unreadable(f"unknown VersionEdit tag {tag}")


def _read_manifest(path: Path) -> _Manifest | None:
    """Parse the MANIFEST *path*; None when a record is not understood."""
    data = _read_whole(path)
    try:
        return _Manifest(data)
    except _Unreadable:
        return None
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def _complete_table(path: Path) -> bool:
    """Tell whether table file *path* ends with the footer of a complete table."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < len(_TABLE_MAGIC):
                return False
            file.seek(size - len(_TABLE_MAGIC))
            return file.read() == _TABLE_MAGIC
    except OSError:
        return False


#: Real paths of the databases a read-write handle of this process has open.
_writers: set[str] = set()
_writers_lock = threading.Lock()


class _Writer:
    """A read-write handle's claim on its database, and the POSIX lock on its ``LOCK``.

    RocksDB takes ``LOCK`` with a POSIX lock; a read-write handle that reads
    from a read-only open takes the same lock itself, so no writer of another
    process opens the database meanwhile. POSIX locks do not conflict within
    a process, and closing any descriptor of the file drops them all, so
    this process's writers are kept apart by ``_writers``, and the lock is
    closed only after the database. `release` is idempotent (also the
    handle's finaliser) and does nothing in a forked child.
    """

    def __init__(self, real: str) -> None:
        self.owner = os.getpid()
        self.real = real
        self.claimed = False
        self.lock_fd: int | None = None
        self.switching = threading.Lock()

    def claim(self, engine: RocksDBEngine) -> None:
        with _writers_lock:
            if self.real in _writers:
                held = BlockingIOError(errno.EAGAIN, "held by another handle in this process")
                raise StoreLockedError(
                    f"the {engine.name} database at {engine._data_path} is in use by another "
                    "handle in this process; close it first"
                ) from held
            _writers.add(self.real)
            self.claimed = True

    def lock(self, engine: RocksDBEngine) -> None:
        self.lock_fd = lock_native_lock_file(engine, Path(self.real))

    def release(self) -> None:
        if os.getpid() != self.owner:
            return
        lock_fd, self.lock_fd = self.lock_fd, None
        if lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(lock_fd)
        if self.claimed:
            self.claimed = False
            with _writers_lock:
                _writers.discard(self.real)


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
        self._write_options = rocksdict.WriteOptions()
        self._write_options.sync = sync
        #: A read-write handle of an existing database reads from a read-only
        #: open until its first write, sync or compaction (`_writable`).
        self._deferred = False
        self._held = _Writer(os.path.realpath(self._data_path))
        if read_only:
            self._opened(self._open_read_only())
            return
        self._held.claim(self)
        weakref.finalize(self, self._held.release)
        try:
            if self.create:
                self._open_read_write()
                return
            # Read-only first: it changes no file, so a refusal (here, or by the store
            # reading what the engine holds) leaves them all as they were. The
            # database's LOCK is held meanwhile, as RocksDB takes it.
            self._held.lock(self)
            db = self._open_read_only()
            try:
                self._check_table_files(db)
            except BaseException:
                db.close()
                raise
            self._opened(db)
            self._deferred = True
        except BaseException:
            self._held.release()
            raise

    def _open_read_write(self) -> None:
        try:
            if self.create:
                self._data_path.mkdir(parents=True, exist_ok=True)
                self._check_logs()
            native = rocksdict.Rdict(
                str(self._data_path),
                self._native_options(self._options, create=self.create),
                access_type=rocksdict.AccessType.read_write(),
            )
        except RaftStoreError:
            raise
        except Exception as exc:
            self._raise_native(exc, "open")
        self._opened(native)

    def _writable(self) -> rocksdict.Rdict:
        """Return the database for a write: opened read-write now if still deferred."""
        db = self._live()
        if not self._deferred:
            return db
        with self._held.switching:
            if not self._deferred:
                return self._live()
            self._db = None
            try:
                db.close()
            except Exception as exc:
                self._raise_native(exc, "close")
            self._deferred = False
            self._open_read_write()
        return self._live()

    def close(self) -> None:
        """Close the database, then release its LOCK (and this handle's claim on it)."""
        try:
            super().close()
        finally:
            if not self.read_only:
                self._held.release()

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
        self._check_live_wal()

    def _check_live_wal(self) -> None:
        """Refuse a database whose live WAL is gone: no WAL numbered at least the log number.

        RocksDB creates a WAL on every open and on every memtable switch, and
        records a log number L (the oldest WAL holding unflushed writes) only
        after the WAL it names or a later one exists, its name synced with the
        directory (a flush syncs the directory before its MANIFEST record; an
        open syncs it with the new MANIFEST). It deletes a WAL only once L has
        moved past it, and never the one it writes to, not even on close. So
        a MANIFEST whose L is set while no WAL numbered L or more is there
        means a deleted WAL, whose writes (the last ones) RocksDB would drop
        without an error. The MANIFEST is read before the directory is listed,
        so a writer beside a read-only handle cannot make this refuse.
        """
        data = self._data_path
        try:
            manifest_name = (data / "CURRENT").read_bytes().decode("ascii", "replace").strip()
        except OSError as exc:
            self._raise_native(exc, "listing")
        manifest = _read_manifest(data / manifest_name)
        if manifest is None or manifest.log_number == 0:
            return  # unreadable (the table file check refuses what matters) or never recorded
        try:
            names = os.listdir(data)
        except OSError as exc:
            self._raise_native(exc, "listing")
        if any(n.endswith(".log") and _file_number(n) >= manifest.log_number for n in names):
            return
        raise self._damaged(
            f"{manifest_name} records log number {manifest.log_number}, but no WAL numbered "
            f"{manifest.log_number} or more is there: the live write-ahead log was deleted, "
            "and with it the last writes"
        )

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
                problem, resume = _log_scan(self._data_path / name, resume)
                if problem is not None:
                    raise self._damaged(problem)
            scanned[name] = (size, resume)
        self._scanned = scanned
        return files

    def _check_table_files(self, db: rocksdict.Rdict) -> None:
        """Check, from read-only *db*, that RocksDB would recover every write its files hold.

        *db* stays open. Raises `CorruptionError` when the MANIFEST and the WALs
        show a hole in the writes RocksDB would recover, the sign of a
        truncated or damaged MANIFEST (or of a missing WAL). The criterion and
        its limits are stated in the module's "The MANIFEST check" section.
        """
        try:
            live = {entry["name"].lstrip("/") for entry in db.live_files()}
            recovered = db.latest_sequence_number()
        except Exception as exc:
            self._raise_native(exc, "open")
        data = self._data_path
        try:
            names = os.listdir(data)
            manifest_name = (data / "CURRENT").read_bytes().decode("ascii", "replace").strip()
        except OSError as exc:
            self._raise_native(exc, "listing")
        unlisted = sorted(n for n in names if n.endswith(".sst") and n not in live)
        manifest = _read_manifest(data / manifest_name)
        if manifest is None or manifest.live != {_file_number(n) for n in live}:
            if unlisted:
                raise self._damaged(
                    f"table files {', '.join(unlisted)} are not listed in {manifest_name}, "
                    "whose records this check cannot read, so it cannot tell whether the "
                    "MANIFEST lost them"
                )
            return
        # The WALs RocksDB replays, oldest first, and the first sequence number each holds.
        wals = sorted(
            (_file_number(n), n)
            for n in names
            if n.endswith(".log") and _file_number(n) >= manifest.log_number
        )
        firsts: dict[int, int] = {}
        expected: int | None = None
        where = ""
        for number, name in wals:
            for sequence, count in _wal_batches(data / name):
                firsts.setdefault(number, sequence)
                if expected is None and sequence > manifest.last_sequence + 1:
                    raise self._damaged(
                        f"{name} starts at sequence {sequence}, but {manifest_name} accounts "
                        f"for writes only up to {manifest.last_sequence}: writes "
                        f"{manifest.last_sequence + 1}..{sequence - 1} are in no WAL and no "
                        "table file it lists; the MANIFEST is truncated or damaged, or a WAL "
                        "is missing"
                    )
                if expected is not None and sequence > expected:
                    raise self._damaged(
                        f"writes {expected}..{sequence - 1} are missing between {where} and "
                        f"{name}, but writes after them are there: a WAL, or part of one, is "
                        "missing (RocksDB would recover the later writes without the earlier)"
                    )
                expected = max(expected or 0, sequence + count)
                where = name
        manifest_number = _file_number(manifest_name)
        for name in unlisted:
            number = _file_number(name)
            if number in manifest.added or number < manifest_number:
                continue  # obsolete: deleted by a recorded edit, or older than this MANIFEST
            if number < manifest.log_number or not _complete_table(data / name):
                continue  # its writes' WALs were flushed since; or never finished nor synced
            newest = _largest_sequence(data / name)
            if newest is not None and newest <= manifest.flushed:
                continue  # a compaction's output: its inputs are still listed
            sources = [w for w, _ in wals if w < number]
            holds = [w for w in sources if w in firsts and (newest is None or firsts[w] <= newest)]
            if manifest.log_number in sources or len(sources) >= 2 or holds:
                continue  # a flush whose edit was not written: its WALs are still there
            held = "writes of unknown sequence" if newest is None else f"writes up to {newest}"
            left = ", ".join(f"{w:06d}.log" for w in sources) or "none"
            raise self._damaged(
                f"table file {name} holds {held}, which neither {manifest_name} (it accounts "
                f"for flushed writes up to {manifest.flushed}) nor a WAL holds: the WALs "
                f"numbered {manifest.log_number} to {number - 1} it was flushed from are gone "
                f"(left: {left}, holding none of its writes) and the database would recover "
                f"only to sequence {recovered}: the MANIFEST is truncated or damaged"
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
        db = self._writable()
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
        db = self._writable()
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
        db = self._writable()
        try:
            db.flush_wal(sync=True)
        except Exception as exc:
            self._raise_native(exc, "sync")

    def compact(self) -> None:
        """Compact every level, dropping deleted entries and giving their disk space back."""
        db = self._live()
        if self.read_only:
            return
        db = self._writable()
        compact_options = rocksdict.CompactOptions()
        # Without this, RocksDB skips the bottommost level, where most deleted data sits.
        compact_options.set_bottommost_level_compaction(
            rocksdict.BottommostLevelCompaction.force_optimized()
        )
        try:
            db.compact_range(None, None, compact_options)
        except Exception as exc:
            self._raise_native(exc, "compact")
