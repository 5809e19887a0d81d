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

Read-only: LevelDB has no read-only mode and lets one handle at a time open a
database. ``read_only=True`` is emulated: the database must exist, the
handle takes LevelDB's exclusive LOCK like a writer (so it cannot run beside
one: `StoreLockedError`), and every write through it raises `ReadOnlyError`.
LevelDB still replays its log into a table file on open, as on any open; the
data does not change. ``supports_read_only`` is False because a read-only
handle cannot be open while a writer has the store.

Never forget: an existing database opens with ``create_if_missing=False``
and ``paranoid_checks=True``, so a damaged log block fails the open with
`CorruptionError` instead of being skipped (a hole in the middle of the log);
a torn final record (a write that never returned) is still dropped quietly.
LevelDB rewrites its info log (``LOG``, ``LOG.old``) on every open, a failed
one included; no other file changes when an open fails.

Before any native call, an existing database's MANIFEST is read in Python
(`raftstore.engines._lsm_records`): a missing live log (the log number the
MANIFEST records, which LevelDB never deletes while it is live) or a hole in
the sequence numbers of the write batches in the logs LevelDB replays (a
zeroed block LevelDB would skip) is refused (`LevelDBEngine._check_logs`).
Out of reach: a log cut at a record boundary, or zeroed from some point to its
end, looks like writes that were never made; only an outside record (the
store's own meta record, raftstore's checks) can tell them apart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import plyvel

from raftstore.engines._lsm_records import (
    _file_number,
    _wal_batches,
    batch_gap,
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
    namespace_bounds,
    namespace_prefix,
)
from raftstore.engines.base import EngineOption, WriteBatch, between
from raftstore.errors import StorageError

__all__ = ["LevelDBEngine"]

_logger = logging.getLogger(__name__)

#: Values of the ``compression`` option -> plyvel's ``compression`` argument.
_COMPRESSIONS: Mapping[str, str | None] = {"snappy": "snappy", "none": None}


def _message(exc: BaseException) -> str:
    # plyvel puts LevelDB's status text in args[0] as bytes.
    if exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode("utf-8", "replace")
    return str(exc)


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
        try:
            if self.create:
                self._data_path.mkdir(parents=True, exist_ok=True)
            native = plyvel.DB(
                str(self._data_path),
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
        self._opened(native)

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
        A write batch numbered past the writes before it in the logs it
        replays (or past the MANIFEST's last sequence number, for the first)
        means writes in between are gone while later ones are there: LevelDB
        skips a zeroed block and reads on.
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
            [(name, _wal_batches(data / name)) for _, name in replayed], manifest.last_sequence
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
        db = self._live()
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
            self._live().compact_range(start=low, stop=high)
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
