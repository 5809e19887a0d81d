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
from typing import Any, ClassVar, NoReturn

import rocksdict

from raftstore.engines._prefixed import (
    NAMESPACE_PREFIXES,
    namespace_bounds,
    namespace_prefix,
    successor,
    unknown_namespace,
)
from raftstore.engines.base import Engine, EngineOption, WriteBatch, between, one_of
from raftstore.errors import (
    ConfigurationError,
    CorruptionError,
    RaftStoreError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StoreNotFoundError,
)

__all__ = ["RocksDBEngine"]

_KIB = 1024
_MIB = 1024 * _KIB
_GIB = 1024 * _MIB
_TIB = 1024 * _GIB

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


class RocksDBEngine(Engine):
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
        "write_buffer_size": EngineOption(
            int,
            64 * _MIB,
            "bytes of writes kept in the memtable before it is flushed to a table file",
            check=between(64 * _KIB, 64 * _GIB, "bytes"),
        ),
        "block_cache_size": EngineOption(
            int,
            32 * _MIB,
            "bytes of the LRU cache of uncompressed table blocks; 0 disables it",
            check=between(0, _TIB, "bytes"),
        ),
        "compression": EngineOption(
            str,
            "snappy",
            f"table file compression: {', '.join(_COMPRESSIONS)}",
            check=one_of(*_COMPRESSIONS),
        ),
        "max_background_jobs": EngineOption(
            int,
            2,
            "threads for background flushes and compactions",
            check=between(1, 64, "threads"),
        ),
    }

    def __init__(
        self, path: Path | None, *, sync: bool, read_only: bool, options: Mapping[str, Any]
    ) -> None:
        """Open (creating when absent and not read-only) the RocksDB database in *path*.

        Raises `StoreLockedError` when another handle holds the database,
        `StoreNotFoundError` for a read-only open of a missing database,
        `ConfigurationError` without a path, `StorageError` for other failures.
        """
        super().__init__(path, sync=sync, read_only=read_only, options=options)
        if path is None:
            raise ConfigurationError("the rocksdb engine stores its data on disk: give it a path")
        self._data_path = Path(path)
        self._db: rocksdict.Rdict | None = None
        self._secondary_dir: str | None = None
        self._secondary_cleanup: weakref.finalize[Any, Any] | None = None
        if read_only and not (self._data_path / "CURRENT").is_file():
            raise StoreNotFoundError(f"no rocksdb database at {self._data_path}")
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

    def _raise_native(self, exc: BaseException, doing: str) -> NoReturn:
        """Raise the raftstore error for a rocksdict failure while *doing*, chained to it."""
        # rocksdict raises plain Exception whose text starts with RocksDB's status.
        text = str(exc)
        error: RaftStoreError
        if text.startswith("IO error") and "LOCK" in text:
            error = StoreLockedError(
                f"the rocksdb database at {self._data_path} is in use by another handle or "
                f"process; close it first ({text})"
            )
        elif text.startswith("Corruption"):
            error = CorruptionError(f"rocksdb {doing} at {self._data_path} failed: {text}")
        elif "does not exist" in text and "create_if_missing" in text:
            error = StoreNotFoundError(f"no rocksdb database at {self._data_path}")
        else:
            error = StorageError(f"rocksdb {doing} at {self._data_path} failed: {text}")
        raise error from exc

    def _live(self) -> rocksdict.Rdict:
        db = self._db
        if db is None:
            raise StoreClosedError(f"the rocksdb engine at {self._data_path} is closed")
        return db

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

    def get(self, namespace: str, key: bytes) -> bytes | None:
        """Return the value under *key* in *namespace*, or None when absent."""
        db = self._readable()
        prefixed = namespace_prefix(namespace) + key
        try:
            value: bytes | None = db.get(prefixed)
        except Exception as exc:
            self._raise_native(exc, "read")
        return value

    def write(self, batch: WriteBatch) -> None:
        """Apply *batch* as one RocksDB write batch: all of it or, on any error, none."""
        if self.read_only:
            raise ReadOnlyError(f"the rocksdb engine at {self._data_path} is read-only")
        db = self._live()
        native = rocksdict.WriteBatch(raw_mode=True)
        prefixes = NAMESPACE_PREFIXES
        try:
            for namespace in batch.clears:
                native.delete_range(*namespace_bounds(namespace))
            for namespace, low, high in batch.deletes:
                prefix = namespace_prefix(namespace)
                if low <= high:
                    native.delete_range(prefix + low, successor(prefix + high))
            for namespace, key, value in batch.puts:
                native.put(prefixes[namespace] + key, value)
        except KeyError as exc:
            raise unknown_namespace(exc.args[0]) from exc
        except RaftStoreError:
            raise
        except Exception as exc:
            self._raise_native(exc, "write")
        if native.is_empty():
            return
        try:
            db.write(native, self._write_options)
        except Exception as exc:
            self._raise_native(exc, "write")

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        """Store one value with ``DB::Put`` (cheaper than a batch of one when synced)."""
        if self.read_only:
            raise ReadOnlyError(f"the rocksdb engine at {self._data_path} is read-only")
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

    def _end(self, namespace: str, high: bytes | None) -> tuple[bytes, bytes]:
        """Return ``(prefix, exclusive end)`` for keys of *namespace* up to *high* inclusive."""
        prefix, namespace_end = namespace_bounds(namespace)
        return prefix, namespace_end if high is None else successor(prefix + high)

    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Return up to *limit* ``(key, value)`` pairs with ``low <= key <= high``, in key order."""
        db = self._readable()
        prefix, end = self._end(namespace, high)
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
        key: bytes | None = None
        iterator = None
        try:
            iterator = db.iter(self._read_options(start, end))
            iterator.seek(start)
            if iterator.valid():
                key = iterator.key()[len(prefix) :]
            else:
                iterator.status()
        except Exception as exc:
            self._raise_native(exc, "seek")
        finally:
            del iterator
        return key

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        """Return the largest key ``<= high`` (any key when None) in *namespace*, or None."""
        db = self._readable()
        prefix, end = self._end(namespace, high)
        key: bytes | None = None
        iterator = None
        try:
            iterator = db.iter(self._read_options(prefix, end))
            # With an upper bound set, seek_to_last finds the last key below it.
            iterator.seek_to_last()
            if iterator.valid():
                key = iterator.key()[len(prefix) :]
            else:
                iterator.status()
        except Exception as exc:
            self._raise_native(exc, "seek")
        finally:
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
        db, self._db = self._db, None
        if db is None:
            return
        try:
            db.close()
        except Exception as exc:
            self._raise_native(exc, "close")
        finally:
            self._remove_secondary_dir()
