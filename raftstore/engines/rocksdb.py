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
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping
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


class RocksDBEngine(PrefixedEngine[rocksdict.Rdict]):
    """RocksDB (rocksdict) as a raftstore key-value engine.

    Writes go through the write-ahead log; with ``sync=True`` each write
    batch is fsynced before it returns (``WriteOptions.sync``), with
    ``sync=False`` it reaches the OS and `sync` fsyncs the WAL.

    Read-only handles open a RocksDB *secondary* instance: it takes no lock,
    may run beside the writer (in this process or another) and catches up
    with the writer's committed batches before every read. Its own info log
    goes to a temporary directory removed on close. (RocksDB's plain
    read-only open would only ever see the data as of its open.)
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
        """Open (creating when absent and not read-only) the RocksDB database in *path*.

        Raises `StoreLockedError` when another handle holds the database and
        `StorageError` for other failures, besides the path checks of
        `PrefixedEngine`.
        """
        self._secondary_dir: str | None = None
        self._secondary_cleanup: weakref.finalize[Any, Any] | None = None
        super().__init__(path, sync=sync, read_only=read_only, options=options, create=create)
        try:
            db_options = self._native_options(options, create=not read_only)
            if read_only:
                # A secondary keeps every table file open, so the writer's
                # compactions cannot delete a file from under it.
                db_options.set_max_open_files(-1)
                # Otherwise every catch-up starts 16 threads to open table
                # files: ~0.7 ms per read instead of ~15 µs.
                db_options.set_max_file_opening_threads(1)
                self._secondary_dir = tempfile.mkdtemp(prefix="raftstore-rocksdb-reader-")
                # Removed on close, or when a handle never closed is collected
                # or the interpreter exits.
                self._secondary_cleanup = weakref.finalize(
                    self, shutil.rmtree, self._secondary_dir, ignore_errors=True
                )
                access = rocksdict.AccessType.secondary(self._secondary_dir)
            else:
                self._data_path.mkdir(parents=True, exist_ok=True)
                access = rocksdict.AccessType.read_write()
            self._db = rocksdict.Rdict(str(self._data_path), db_options, access_type=access)
        except Exception as exc:
            self._remove_secondary_dir()
            self._raise_native(exc, "open")
        self._write_options = rocksdict.WriteOptions()
        self._write_options.sync = sync

    @staticmethod
    def _native_options(options: Mapping[str, Any], *, create: bool) -> rocksdict.Options:
        native = rocksdict.Options(raw_mode=True)
        native.create_if_missing(create)
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

    def _readable(self) -> rocksdict.Rdict:
        """Return the open database, first caught up with the writer on a read-only handle."""
        db = self._live()
        if self._secondary_dir is not None:
            try:
                # ~15 µs when the writer has written nothing new.
                db.try_catch_up_with_primary()
            except Exception as exc:
                self._raise_native(exc, "catch-up with the writer")
        return db

    def _remove_secondary_dir(self) -> None:
        cleanup, self._secondary_cleanup = self._secondary_cleanup, None
        self._secondary_dir = None
        if cleanup is not None:
            cleanup()

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

    def close(self) -> None:
        """Close the database and release its LOCK; a second call does nothing."""
        try:
            super().close()
        finally:
            self._remove_secondary_dir()
