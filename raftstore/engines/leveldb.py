"""The ``leveldb`` engine: LevelDB through the ``plyvel`` binding.

Install with ``pip install 'raftstore[leveldb]'``. This module imports
``plyvel`` at the top; the registry imports the module only when the engine
is first used, so ``import raftstore`` never loads LevelDB.

Layout: LevelDB has one keyspace, so every namespace lives under a one-byte
key prefix (`raftstore.engines._prefixed`) and one plyvel write batch spans
every namespace atomically.

LevelDB has no range delete: an inclusive range delete reads the keys in the
range and deletes each in the same write batch. Each deleted key leaves a
tombstone that a seek must step over until a compaction drops it (~25 ms per
seek-to-first after deleting 100k keys), so once ``compact_after_deletes``
keys have been deleted the engine compacts the deleted key range. plyvel's
``compact_range()`` without bounds compacts nothing useful: the bounds are
always given.

Read-only, and opening an existing database: LevelDB has no read-only mode
(every open replays the log into a new table file, writes a new MANIFEST,
replaces CURRENT and deletes the log) and lets one handle at a time open a
database. So an existing database is opened on a private snapshot: a fresh
directory beside it (``.leveldb-readonly-<pid>-<random>``) holding a hard
link to each of its files but ``LOCK`` and the info logs. LevelDB never
changes an existing file in place (it writes new files and renames them), so
the database's own files are untouched. The handle holds the database's
``LOCK`` (a POSIX lock, as LevelDB takes it) meanwhile, so no writer of
another process changes the files under it (`StoreLockedError`), and one
handle per process. A read-only handle reads from the snapshot for its whole
life; a read-write handle reads from it (the trial open) until its first
write, sync or compaction, which closes it and opens the real directory. A
refused open, a `verify` or a session that only reads therefore changes no
byte and no name. The snapshot is removed on close (and by a finaliser);
those of processes that died are removed at the next open.
``supports_read_only`` is False because a read-only handle cannot be open
while a writer has the store.

Never forget: an existing database opens with ``create_if_missing=False``
and ``paranoid_checks=True``, so a damaged log block fails the open with
`CorruptionError` instead of being skipped (a hole in the middle of the log);
a torn final record (a write that never returned) is still dropped quietly.
LevelDB rewrites its info log (``LOG``, ``LOG.old``) on every open, a failed
one included: in the snapshot, not in the database.

Before any native call, an existing database's MANIFEST is read in Python
(`raftstore.engines._lsm_records`): a missing live log (the log number the
MANIFEST records, which LevelDB never deletes while it is live) or a hole in
the sequence numbers of the write batches inside a log LevelDB replays (a
zeroed block LevelDB would skip) is refused (`LevelDBEngine._check_logs`).
Out of reach: a log cut at a record boundary, or zeroed from some point to its
end, looks like writes that were never made; only an outside record (the
store's own meta record, raftstore's checks) can tell them apart.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import plyvel

from raftstore.engines._lsm_records import (
    _file_number,
    batch_gap,
    log_batches,
    read_leveldb_manifest,
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
    fsync_directory,
    fsync_file,
    key_bounds,
    lock_native_lock_file,
    namespace_bounds,
    namespace_prefix,
)
from raftstore.engines.base import EngineOption, WriteBatch, between
from raftstore.errors import StorageError, StoreLockedError

__all__ = ["LevelDBEngine"]

_logger = logging.getLogger(__name__)

#: Values of the ``compression`` option -> plyvel's ``compression`` argument.
_COMPRESSIONS: Mapping[str, str | None] = {"snappy": "snappy", "none": None}


def _message(exc: BaseException) -> str:
    # plyvel puts LevelDB's status text in args[0] as bytes.
    if exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode("utf-8", "replace")
    return str(exc)


#: Hard-link snapshots of a database's files live beside it, under this prefix and a pid.
_SNAPSHOT_PREFIX = ".leveldb-readonly-"
#: Files a snapshot leaves out: the lock, and the info log every open rewrites.
_NOT_SNAPSHOTTED = ("LOCK", "LOG")
#: Real paths of the databases open in this process (POSIX locks cannot tell handles apart).
_in_use: set[str] = set()
_in_use_lock = threading.Lock()


def _snapshot(data: Path) -> Path:
    """Return a new directory beside *data* holding a hard link to each of its files.

    LevelDB never changes an existing file in place (it writes new files and
    renames them over old names), so opening the snapshot leaves every file of
    *data* as it was. ``LOCK`` and the info logs are left out. A file that
    cannot be linked (another file system) is copied.
    """
    try:
        snapshot = Path(
            tempfile.mkdtemp(prefix=f"{_SNAPSHOT_PREFIX}{os.getpid()}-", dir=data.parent)
        )
    except OSError:
        snapshot = Path(tempfile.mkdtemp(prefix=f"{_SNAPSHOT_PREFIX}{os.getpid()}-"))
    try:
        with os.scandir(data) as entries:
            for entry in entries:
                if entry.name.startswith(_NOT_SNAPSHOTTED) or not entry.is_file(
                    follow_symlinks=False
                ):
                    continue
                try:
                    os.link(entry.path, snapshot / entry.name, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted meanwhile
                except OSError:
                    shutil.copy2(entry.path, snapshot / entry.name, follow_symlinks=False)
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise
    return snapshot


class _Held:
    """What a handle holds besides its native database: a snapshot, a lock, its claim.

    `release` (idempotent; also the handle's finaliser) removes the snapshot,
    closes the lock and drops the claim, in the opening process only: a
    forked child never touches its parent's files.
    """

    def __init__(self, real: str) -> None:
        self.owner = os.getpid()
        self.real = real
        self.snapshot: Path | None = None
        self.lock_fd: int | None = None

    def remove_snapshot(self) -> None:
        snapshot, self.snapshot = self.snapshot, None
        if snapshot is not None and os.getpid() == self.owner:
            shutil.rmtree(snapshot, ignore_errors=True)

    def release(self) -> None:
        if os.getpid() != self.owner:
            return
        self.remove_snapshot()
        lock_fd, self.lock_fd = self.lock_fd, None
        if lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(lock_fd)
        with _in_use_lock:
            _in_use.discard(self.real)


def _remove_stale_snapshots(parent: Path) -> None:
    """Remove the snapshots in *parent* whose process is gone."""
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(_SNAPSHOT_PREFIX)]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(_SNAPSHOT_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue  # alive, another user's


class LevelDBEngine(PrefixedEngine[Any]):
    """LevelDB (plyvel) as a raftstore key-value engine.

    With ``sync=True`` each write batch is fsynced before it returns
    (plyvel's ``sync=True``); with ``sync=False`` it reaches the OS and
    `sync` fsyncs LevelDB's log.
    """

    name: ClassVar[str] = "leveldb"
    persistent: ClassVar[bool] = True
    supports_read_only: ClassVar[bool] = False
    options: ClassVar[Mapping[str, EngineOption]] = {
        "write_buffer_size": byte_size_option(
            4 * MIB,
            "bytes of writes kept in the memtable before it is written to a table file",
            minimum=64 * KIB,
            maximum=GIB,
        ),
        "block_cache_size": byte_size_option(
            8 * MIB,
            "bytes of the LRU cache of uncompressed table blocks",
            minimum=0,
            maximum=TIB,
        ),
        "block_size": byte_size_option(
            4 * KIB,
            "approximate bytes of user data per table block",
            minimum=KIB,
            maximum=4 * MIB,
        ),
        "max_open_files": EngineOption(
            int,
            1000,
            "table files LevelDB keeps open",
            check=between(74, 50_000, "files"),
        ),
        "compression": compression_option(_COMPRESSIONS, "table block"),
        "compact_after_deletes": EngineOption(
            int,
            10_000,
            "compact the deleted key range once this many keys have been deleted "
            "(keeps seeks fast and gives the space back); 0 never compacts automatically",
            check=between(0, 2**63 - 1, "keys"),
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
        """Open the LevelDB database in *path*, creating it only when *create* is true.

        Raises `StoreLockedError` when another handle holds the database,
        `CorruptionError` when an existing database's files are missing or
        damaged and `StorageError` for other failures, besides the path
        checks of `PrefixedEngine`.
        """
        super().__init__(path, sync=sync, read_only=read_only, options=options, create=create)
        self._compact_after_deletes: int = options["compact_after_deletes"]
        # Deleted keys not yet compacted away, and the prefixed key range they span.
        self._pending_deletes = 0
        self._pending_low = b""
        self._pending_high = b""
        real = os.path.realpath(self._data_path)
        with _in_use_lock:
            if real in _in_use:
                held = BlockingIOError(errno.EAGAIN, "held by another handle in this process")
                raise StoreLockedError(
                    f"the {self.name} database at {self._data_path} is in use by another "
                    "handle in this process; close it first"
                ) from held
            _in_use.add(real)
        self._held = _Held(real)
        #: The options of the real open a read-write handle still has to make, or None.
        self._deferred: Mapping[str, Any] | None = None
        self._switch_lock = threading.Lock()
        weakref.finalize(self, self._held.release)
        try:
            self._open_native(options)
        except BaseException:
            self._held.release()
            raise

    def _open_native(self, options: Mapping[str, Any]) -> None:
        """Open the database: read-only on a snapshot; read-write after a trial on one."""
        if not self.create:
            self._lock_existing()
            _remove_stale_snapshots(self._data_path.parent)
            snapshot = _snapshot(self._data_path)
            self._held.snapshot = snapshot
            # LevelDB has no read-only mode: replaying the log writes a table
            # file and a MANIFEST, changes CURRENT and deletes the log. In the
            # snapshot that touches none of the database's own files; for a
            # read-write open it is the trial that must pass before the real open.
            # A read-write handle reads from the snapshot too until its first
            # write, sync or compaction opens the real directory (`_writable`):
            # an open that the store then refuses (a damaged record) or that
            # only reads leaves every file as it was.
            self._opened(self._plyvel(snapshot, options))
            if not self.read_only:
                self._deferred = options
            return
        self._open_real(options)

    def _open_real(self, options: Mapping[str, Any]) -> None:
        try:
            if self.create:
                self._data_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._raise_native(exc, "open")
        self._opened(self._plyvel(self._data_path, options))

    def _writable(self) -> Any:
        """Return the open database for a write: the real one, opened now if still deferred."""
        db = self._live()
        if self._deferred is None:
            return db
        with self._switch_lock:
            options = self._deferred
            if options is None:
                return self._live()
            self._db = None
            try:
                db.close()
            except Exception as exc:
                self._raise_native(exc, "close")
            self._held.remove_snapshot()
            self._deferred = None
            self._open_real(options)
        return self._live()

    def _plyvel(self, directory: Path, options: Mapping[str, Any]) -> Any:
        try:
            return plyvel.DB(
                str(directory),
                create_if_missing=self.create,
                # Fail on a damaged log block or table instead of skipping it.
                paranoid_checks=True,
                write_buffer_size=options["write_buffer_size"],
                lru_cache_size=options["block_cache_size"],
                block_size=options["block_size"],
                max_open_files=options["max_open_files"],
                compression=_COMPRESSIONS[options["compression"]],
            )
        except Exception as exc:
            self._raise_native(exc, "open")

    def _lock_existing(self) -> None:
        """Take LevelDB's own lock on the database's ``LOCK`` file (without creating it).

        A snapshot is consistent only while no writer changes the files, and
        a read-only handle keeps a writer of another process out, as LevelDB's
        own lock did. (This process's handles are kept apart by ``_in_use``:
        POSIX locks do not conflict within a process.)
        """
        self._held.lock_fd = lock_native_lock_file(self, self._data_path)

    def close(self) -> None:
        """Close the database, then remove its snapshot and release its lock."""
        try:
            super().close()
        finally:
            self._held.release()

    _native_text = staticmethod(_message)

    # -- checks of an existing database ----------------------------------------------------

    def _check_existing(self) -> None:
        super()._check_existing()
        self._check_logs()

    def _check_logs(self) -> None:
        """Refuse, before any native call, a database whose live log is missing or has a hole.

        The MANIFEST records the log number L (logs below it are flushed into
        tables). LevelDB creates log L before the record naming it (on every
        open, and on every memtable switch), syncs the directory with that
        record, and deletes a log only once a later record moved L past it:
        log L (and a recorded previous log) is never missing unless deleted
        behind LevelDB's back, and LevelDB would then open without its writes.
        A write batch numbered past the writes before it inside one log
        (between two of its batches, after a zeroed region, or at the live
        log's head, past the MANIFEST's last sequence number) means writes in
        between are gone while later ones are there: LevelDB skips a zeroed
        block and reads on (`batch_gap`). A hole where an older log ends is
        accepted: a power cut can leave it with unsynced writes only.
        """
        data = self._data_path
        try:
            manifest_name = (data / "CURRENT").read_bytes().decode("ascii", "replace").strip()
            names = os.listdir(data)
        except OSError as exc:
            self._raise_native(exc, "listing")
        manifest = read_leveldb_manifest(data / manifest_name)
        if manifest is None or manifest.log_number == 0:
            return  # records this parser does not know: LevelDB's own checks apply
        logs = {_file_number(n): n for n in names if n.endswith(".log")}
        needed = [manifest.log_number]
        if manifest.prev_log_number:
            needed.append(manifest.prev_log_number)
        for number in needed:
            if number not in logs:
                raise self._damaged(
                    f"{manifest_name} names the live log {number:06d}.log, which is missing: "
                    "the last writes were in it"
                )
        replayed = sorted(
            (number, name)
            for number, name in logs.items()
            if number >= manifest.log_number or number == manifest.prev_log_number
        )
        gap = batch_gap(
            [(name, log_batches(data / name)) for _, name in replayed], manifest.last_sequence
        )
        if gap is not None:
            raise self._damaged(gap)

    @staticmethod
    def _is_lock_error(exc: BaseException, text: str) -> bool:
        return isinstance(exc, plyvel.IOError) and "LOCK" in text

    @staticmethod
    def _is_corruption(exc: BaseException, text: str) -> bool:
        return isinstance(exc, plyvel.CorruptionError)

    def get(self, namespace: str, key: bytes) -> bytes | None:
        """Return the value under *key* in *namespace*, or None; damaged blocks raise."""
        db = self._live()
        prefixed = namespace_prefix(namespace) + key
        try:
            value: bytes | None = db.get(prefixed, verify_checksums=True)
        except Exception as exc:
            self._raise_native(exc, "read")
        return value

    def write(self, batch: WriteBatch) -> None:
        """Apply *batch* as one LevelDB write batch: all of it or, on any error, none.

        Range deletes delete each key in the range; once
        ``compact_after_deletes`` keys have been deleted since the last
        compaction, the deleted key range is compacted after the write.
        """
        if self.read_only:
            raise self._read_only_error()
        db = self._writable()
        # Not `with db.write_batch()`: plyvel's context manager writes even when the block raises.
        native = db.write_batch(sync=self.sync_writes)
        prefixes = NAMESPACE_PREFIXES
        deleted = 0
        low_deleted = high_deleted = b""
        try:
            for start, end in delete_ranges(batch):
                with db.iterator(
                    start=start, stop=end, include_value=False, verify_checksums=True
                ) as keys:
                    for key in keys:
                        native.delete(key)
                        if not deleted or key < low_deleted:
                            low_deleted = key
                        high_deleted = max(high_deleted, key)
                        deleted += 1
            for namespace, key, value in batch.puts:
                native.put(prefixes[namespace] + key, value)
            if deleted or batch.puts:
                native.write()
        except Exception as exc:
            self._raise_write_error(exc)
        if deleted:
            self._note_deletes(deleted, low_deleted, high_deleted)

    def _note_deletes(self, count: int, low: bytes, high: bytes) -> None:
        """Count *count* deleted keys in ``[low, high]``; compact once enough piled up."""
        if self._pending_deletes:
            low, high = min(low, self._pending_low), max(high, self._pending_high)
        self._pending_deletes += count
        self._pending_low, self._pending_high = low, high
        if self._compact_after_deletes and self._pending_deletes >= self._compact_after_deletes:
            try:
                self._compact_range(low, high)
            except StorageError:
                # The write is done and durable: failing the call now would tell
                # the store it did not happen. LevelDB compacts on its own later.
                _logger.warning("leveldb compaction after a delete failed", exc_info=True)

    def _compact_range(self, low: bytes, high: bytes) -> None:
        try:
            self._writable().compact_range(start=low, stop=high)
        except Exception as exc:
            self._raise_native(exc, "compact")
        self._pending_deletes = 0

    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Return up to *limit* ``(key, value)`` pairs with ``low <= key <= high``, in key order."""
        db = self._live()
        prefix, end = key_bounds(namespace, high)
        pairs: list[tuple[bytes, bytes]] = []
        if limit <= 0:
            return pairs
        skip = len(prefix)
        try:
            with db.iterator(start=prefix + low, stop=end, verify_checksums=True) as items:
                for key, value in items:
                    pairs.append((key[skip:], value))
                    if len(pairs) >= limit:
                        break
        except Exception as exc:
            self._raise_native(exc, "scan")
        return pairs

    def first_key(self, namespace: str, low: bytes = b"") -> bytes | None:
        """Return the smallest key ``>= low`` in *namespace*, or None."""
        db = self._live()
        prefix, end = namespace_bounds(namespace)
        return self._edge_key(db, prefix + low, end, len(prefix), last=False)

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        """Return the largest key ``<= high`` (any key when None) in *namespace*, or None."""
        db = self._live()
        prefix, end = key_bounds(namespace, high)
        return self._edge_key(db, prefix, end, len(prefix), last=True)

    def _edge_key(
        self, db: Any, start: bytes, end: bytes, skip: int, *, last: bool
    ) -> bytes | None:
        """Return the first (*last*: last) key in ``[start, end)``, less *skip* bytes, or None."""
        try:
            with db.iterator(
                start=start, stop=end, reverse=last, include_value=False, verify_checksums=True
            ) as keys:
                key: bytes | None = next(keys, None)
        except Exception as exc:
            self._raise_native(exc, "seek")
        return None if key is None else key[skip:]

    def sync(self) -> None:
        """Fsync LevelDB's logs and directory: every write made so far survives a crash.

        An empty batch written with ``sync=True`` fsyncs only the current log.
        When LevelDB switched memtables it closed the previous log without an
        fsync, and writes still only there become durable only once that
        memtable is in a table file. So, in this order:

        1. every log but the newest (the rotated ones: a log deleted
           meanwhile was compacted into a synced table), then the directory,
           which LevelDB does not fsync when it creates a log;
        2. the synced empty batch, which fsyncs the current log;
        3. if that batch itself switched logs (it found the memtable full),
           the log it left behind, and the directory again.

        Rotated logs come first because a cut between the steps must leave the
        older writes durable whenever newer ones are: the current log durable
        and a rotated one not would recover the later writes after a hole.
        A cut after step 2 leaves only the empty batch in the new log.
        """
        db = self._live()
        if self.read_only:
            return
        db = self._writable()
        try:
            before = self._fsync_rotated_logs(())
        except OSError as exc:
            self._raise_native(exc, "sync")
        try:
            db.write_batch(sync=True).write()
        except Exception as exc:
            self._raise_native(exc, "sync")
        try:
            if self._logs()[-1:] != before[-1:]:
                self._fsync_rotated_logs(before[:-1])
        except OSError as exc:
            self._raise_native(exc, "sync")

    def _logs(self) -> list[Path]:
        """Return LevelDB's log files, oldest (lowest number) first."""
        return sorted(self._data_path.glob("*.log"), key=lambda log: (len(log.name), log.name))

    def _fsync_rotated_logs(self, done: Sequence[Path]) -> list[Path]:
        """Fsync every log but the newest (less those in *done*), then the directory.

        Returns the logs found, oldest first.
        """
        logs = self._logs()
        for log in logs[:-1]:
            if log not in done:
                fsync_file(log)
        fsync_directory(self._data_path)
        return logs

    def compact(self) -> None:
        """Compact every namespace, dropping deleted entries and giving their disk space back."""
        self._live()
        if self.read_only:
            return
        low = min(NAMESPACE_PREFIXES.values())
        high = max(NAMESPACE_PREFIXES.values())
        self._compact_range(low, bytes((high[0] + 1,)))
