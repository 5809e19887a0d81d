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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import plyvel

from raftstore.engines._prefixed import (
    NAMESPACE_PREFIXES,
    namespace_bounds,
    namespace_prefix,
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

__all__ = ["LevelDBEngine"]

_logger = logging.getLogger(__name__)

_KIB = 1024
_MIB = 1024 * _KIB
_GIB = 1024 * _MIB
_TIB = 1024 * _GIB

#: Values of the ``compression`` option -> plyvel's ``compression`` argument.
_COMPRESSIONS: Mapping[str, str | None] = {"snappy": "snappy", "none": None}


def _message(exc: BaseException) -> str:
    # plyvel puts LevelDB's status text in args[0] as bytes.
    if exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode("utf-8", "replace")
    return str(exc)


class LevelDBEngine(Engine):
    """LevelDB (plyvel) as a raftstore key-value engine.

    With ``sync=True`` each write batch is fsynced before it returns
    (plyvel's ``sync=True``); with ``sync=False`` it reaches the OS and
    `sync` fsyncs LevelDB's log.
    """

    name: ClassVar[str] = "leveldb"
    persistent: ClassVar[bool] = True
    supports_read_only: ClassVar[bool] = False
    options: ClassVar[Mapping[str, EngineOption]] = {
        "write_buffer_size": EngineOption(
            int,
            4 * _MIB,
            "bytes of writes kept in the memtable before it is written to a table file",
            check=between(64 * _KIB, _GIB, "bytes"),
        ),
        "block_cache_size": EngineOption(
            int,
            8 * _MIB,
            "bytes of the LRU cache of uncompressed table blocks",
            check=between(0, _TIB, "bytes"),
        ),
        "block_size": EngineOption(
            int,
            4 * _KIB,
            "approximate bytes of user data per table block",
            check=between(_KIB, 4 * _MIB, "bytes"),
        ),
        "max_open_files": EngineOption(
            int,
            1000,
            "table files LevelDB keeps open",
            check=between(74, 50_000, "files"),
        ),
        "compression": EngineOption(
            str,
            "snappy",
            f"table block compression: {', '.join(_COMPRESSIONS)}",
            check=one_of(*_COMPRESSIONS),
        ),
        "compact_after_deletes": EngineOption(
            int,
            10_000,
            "compact the deleted key range once this many keys have been deleted "
            "(keeps seeks fast and gives the space back); 0 never compacts automatically",
            check=between(0, 2**63 - 1, "keys"),
        ),
    }

    def __init__(
        self, path: Path | None, *, sync: bool, read_only: bool, options: Mapping[str, Any]
    ) -> None:
        """Open (creating when absent and not read-only) the LevelDB database in *path*.

        Raises `StoreLockedError` when another handle holds the database,
        `StoreNotFoundError` for a read-only open of a missing database,
        `ConfigurationError` without a path, `StorageError` for other failures.
        """
        super().__init__(path, sync=sync, read_only=read_only, options=options)
        if path is None:
            raise ConfigurationError("the leveldb engine stores its data on disk: give it a path")
        self._data_path = Path(path)
        self._db: Any = None
        self._compact_after_deletes: int = options["compact_after_deletes"]
        # Deleted keys not yet compacted away, and the prefixed key range they span.
        self._pending_deletes = 0
        self._pending_low = b""
        self._pending_high = b""
        if read_only and not (self._data_path / "CURRENT").is_file():
            raise StoreNotFoundError(f"no leveldb database at {self._data_path}")
        try:
            if not read_only:
                self._data_path.mkdir(parents=True, exist_ok=True)
            self._db = plyvel.DB(
                str(self._data_path),
                create_if_missing=not read_only,
                write_buffer_size=options["write_buffer_size"],
                lru_cache_size=options["block_cache_size"],
                block_size=options["block_size"],
                max_open_files=options["max_open_files"],
                compression=_COMPRESSIONS[options["compression"]],
            )
        except Exception as exc:
            self._raise_native(exc, "open")

    def _raise_native(self, exc: BaseException, doing: str) -> NoReturn:
        """Raise the raftstore error for a plyvel failure while *doing*, chained to it."""
        text = _message(exc)
        error: RaftStoreError
        if isinstance(exc, plyvel.IOError) and "LOCK" in text:
            error = StoreLockedError(
                f"the leveldb database at {self._data_path} is in use by another handle or "
                f"process; close it first ({text})"
            )
        elif isinstance(exc, plyvel.CorruptionError):
            error = CorruptionError(f"leveldb {doing} at {self._data_path} failed: {text}")
        elif "does not exist" in text and "create_if_missing" in text:
            error = StoreNotFoundError(f"no leveldb database at {self._data_path}")
        else:
            error = StorageError(f"leveldb {doing} at {self._data_path} failed: {text}")
        raise error from exc

    def _live(self) -> Any:
        db = self._db
        if db is None:
            raise StoreClosedError(f"the leveldb engine at {self._data_path} is closed")
        return db

    def get(self, namespace: str, key: bytes) -> bytes | None:
        """Return the value under *key* in *namespace*, or None when absent."""
        db = self._live()
        prefixed = namespace_prefix(namespace) + key
        try:
            value: bytes | None = db.get(prefixed)
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
            raise ReadOnlyError(f"the leveldb engine at {self._data_path} is read-only")
        db = self._live()
        # Not `with db.write_batch()`: plyvel's context manager writes even when the block raises.
        native = db.write_batch(sync=self.sync_writes)
        prefixes = NAMESPACE_PREFIXES
        deleted = 0
        low_deleted = high_deleted = b""
        try:
            ranges = [(*namespace_bounds(namespace), False) for namespace in batch.clears]
            for namespace, low, high in batch.deletes:
                prefix = namespace_prefix(namespace)
                if low <= high:
                    ranges.append((prefix + low, prefix + high, True))
            for start, stop, include_stop in ranges:
                with db.iterator(
                    start=start, stop=stop, include_stop=include_stop, include_value=False
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
        except KeyError as exc:
            raise unknown_namespace(exc.args[0]) from exc
        except RaftStoreError:
            raise
        except Exception as exc:
            self._raise_native(exc, "write")
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
        prefix, end = namespace_bounds(namespace)
        pairs: list[tuple[bytes, bytes]] = []
        if limit <= 0:
            return pairs
        stop, include_stop = (end, False) if high is None else (prefix + high, True)
        skip = len(prefix)
        try:
            with db.iterator(start=prefix + low, stop=stop, include_stop=include_stop) as items:
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
        try:
            with db.iterator(start=prefix + low, stop=end, include_value=False) as keys:
                key: bytes | None = next(keys, None)
        except Exception as exc:
            self._raise_native(exc, "seek")
        return None if key is None else key[len(prefix) :]

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        """Return the largest key ``<= high`` (any key when None) in *namespace*, or None."""
        db = self._live()
        prefix, end = namespace_bounds(namespace)
        stop, include_stop = (end, False) if high is None else (prefix + high, True)
        try:
            with db.iterator(
                start=prefix,
                stop=stop,
                include_stop=include_stop,
                reverse=True,
                include_value=False,
            ) as keys:
                key: bytes | None = next(keys, None)
        except Exception as exc:
            self._raise_native(exc, "seek")
        return None if key is None else key[len(prefix) :]

    def sync(self) -> None:
        """Fsync LevelDB's log: every write made so far survives a crash."""
        db = self._live()
        if self.read_only:
            return
        try:
            # An empty batch written with sync=True fsyncs the log behind every earlier write.
            db.write_batch(sync=True).write()
        except Exception as exc:
            self._raise_native(exc, "sync")

    def compact(self) -> None:
        """Compact every namespace, dropping deleted entries and giving their disk space back."""
        self._live()
        if self.read_only:
            return
        low = min(NAMESPACE_PREFIXES.values())
        high = max(NAMESPACE_PREFIXES.values())
        self._compact_range(low, bytes((high[0] + 1,)))

    def close(self) -> None:
        """Close the database and release its LOCK; a second call does nothing."""
        db, self._db = self._db, None
        if db is None:
            return
        try:
            db.close()
        except Exception as exc:
            self._raise_native(exc, "close")
