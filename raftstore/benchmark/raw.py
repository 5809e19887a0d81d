"""The raw baselines: each engine's own Python binding doing a workload's work.

Each writes the store's exact bytes, taken from the one place that defines
them (`raftstore._records`: the key layout and the record framing with its
CRC-32), under the key prefix of the rocksdb and leveldb engines. Raw reads
slice the 4-byte trailer off and decode with the same codec *without*
checking the checksum, so ``x raw`` prices the whole store layer: checks,
locking, framing, checksum and the engine adapter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from raftstore._records import FORMAT_VERSION, index_key, key_index, record_format
from raftstore.benchmark.handles import Handle
from raftstore.codecs.base import Codec
from raftstore.engines._prefixed import MIB, NAMESPACE_PREFIXES
from raftstore.engines.base import LOGS
from raftstore.log import Log

__all__ = [
    "RAW_ENGINES",
    "RawHandle",
    "RawLevel",
    "RawLmdb",
    "RawMemory",
    "RawRocks",
    "has_raw",
    "open_raw",
]

#: ``frame(key, payload)``: the record the store writes for *payload* under the ``logs`` *key*.
_frame: Callable[[bytes, bytes], bytes] = functools.partial(
    record_format(FORMAT_VERSION).frame, LOGS
)
#: The rocksdb and leveldb engines' prefix of the ``logs`` namespace.
_LOG_PREFIX = NAMESPACE_PREFIXES[LOGS]
_LOGS_END = bytes((_LOG_PREFIX[0] + 1,))


def _prefixed_key(index: int) -> bytes:
    return _LOG_PREFIX + index_key(index)


class RawHandle(Handle):
    """Shared parts of the raw bindings: the record bytes and the bounds they track."""

    kind: ClassVar[str] = "raw"

    def __init__(self, codec: Codec) -> None:
        self.encode = codec.encode
        self.decode = codec.decode
        self.first = 0
        self.last = 0

    def records(self, batch: list[Log], prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """``(prefix + key, record)`` of each entry of *batch*, framed as the store frames them."""
        encode, frame = self.encode, _frame
        items = []
        for log in batch:
            key = index_key(log.index)
            items.append((prefix + key, frame(key, encode(log))))
        return items

    def _note(self, batch: list[Log]) -> None:
        if not self.first:
            self.first = batch[0].index
        self.last = batch[-1].index

    def truncate_prefix(self, keep: int) -> None:
        high = self.last - keep
        if high >= self.first:
            self._delete(self.first, high)
            self.first = high + 1

    def _delete(self, low: int, high: int) -> None:
        raise NotImplementedError


class RawLmdb(RawHandle):
    """py-lmdb on the ``logs`` database of the store's own layout."""

    def __init__(self, path: Path, codec: Codec, *, sync: bool) -> None:
        import lmdb

        super().__init__(codec)
        self.env = lmdb.open(
            str(path),
            map_size=1 << 36,
            subdir=True,
            sync=sync,
            metasync=sync,
            max_dbs=3,
            readahead=False,
            lock=True,
        )
        self.db = self.env.open_db(b"logs")
        with self.env.begin(db=self.db) as txn:
            cursor = txn.cursor()
            if cursor.first():
                self.first = key_index(cursor.key())
                cursor.last()
                self.last = key_index(cursor.key())
        self.reader: Any = None

    def append(self, batches: list[list[Log]]) -> None:
        begin, db = self.env.begin, self.db
        if len(batches[0]) == 1:
            encode = self.encode
            for batch in batches:
                log = batch[0]
                key = index_key(log.index)
                with begin(write=True, db=db) as txn:
                    txn.put(key, _frame(key, encode(log)))
        else:
            records = self.records
            for batch in batches:
                items = records(batch)
                with begin(write=True, db=db) as txn:
                    txn.cursor().putmulti(items)
        self._note(batches[-1])

    def get_many(self, indexes: Sequence[int]) -> None:
        if self.reader is None:
            self.reader = self.env.begin(db=self.db)
        get, decode = self.reader.get, self.decode
        for index in indexes:
            decode(get(index_key(index))[:-4])

    def _delete(self, low: int, high: int) -> None:
        self._drop_reader()
        stop = index_key(high)
        with self.env.begin(write=True, db=self.db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(index_key(low)):
                key = cursor.key()
                while key and key <= stop:
                    cursor.delete()
                    key = cursor.key()

    def _drop_reader(self) -> None:
        if self.reader is not None:
            self.reader.abort()
            self.reader = None

    def startup(self) -> int:
        with self.env.begin(db=self.db) as txn:
            cursor = txn.cursor()
            if not cursor.last():
                return 0
            last = key_index(cursor.key())
            cursor.first()
            record: Any = txn.get(index_key(last))
            self.decode(record[:-4])
        return last

    def close(self) -> None:
        self._drop_reader()
        self.env.close()


class _RawPrefixed(RawHandle):
    """Shared parts of the raw bindings that keep the rocksdb and leveldb engines' key layout."""

    db: Any

    def get_many(self, indexes: Sequence[int]) -> None:
        get, decode = self.db.get, self.decode
        for index in indexes:
            decode(get(_LOG_PREFIX + index_key(index))[:-4])

    def close(self) -> None:
        self.db.close()


class RawRocks(_RawPrefixed):
    """rocksdict in raw mode, with the rocksdb engine's key prefix and default options."""

    def __init__(self, path: Path, codec: Codec, *, sync: bool) -> None:
        import rocksdict

        super().__init__(codec)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(64 * MIB)
        options.set_compression_type(rocksdict.DBCompressionType.snappy())
        options.set_max_background_jobs(2)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(32 * MIB))
        options.set_block_based_table_factory(table)
        self.db: Any = rocksdict.Rdict(str(path), options)
        self.write_options = rocksdict.WriteOptions()
        self.write_options.sync = sync
        self.make_batch: Callable[[], Any] = lambda: rocksdict.WriteBatch(raw_mode=True)

    def append(self, batches: list[list[Log]]) -> None:
        db, options = self.db, self.write_options
        if len(batches[0]) == 1:
            encode = self.encode
            for batch in batches:
                log = batch[0]
                key = index_key(log.index)
                db.put(_LOG_PREFIX + key, _frame(key, encode(log)), options)
        else:
            make_batch, records = self.make_batch, self.records
            for batch in batches:
                native = make_batch()
                put = native.put
                for key, record in records(batch, _LOG_PREFIX):
                    put(key, record)
                db.write(native, options)
        self._note(batches[-1])

    def _delete(self, low: int, high: int) -> None:
        native = self.make_batch()
        native.delete_range(_prefixed_key(low), _prefixed_key(high) + b"\x00")
        self.db.write(native, self.write_options)

    def startup(self) -> int:
        iterator = self.db.iter()
        iterator.seek(_LOG_PREFIX)  # first, as the store reads it
        iterator.seek(_LOGS_END)
        if iterator.valid():
            iterator.prev()
        else:
            iterator.seek_to_last()
        if not iterator.valid():
            return 0
        last = key_index(iterator.key()[1:])
        del iterator
        self.get_many((last,))
        return last


class RawLevel(_RawPrefixed):
    """plyvel with the leveldb engine's key prefix and default options."""

    def __init__(self, path: Path, codec: Codec, *, sync: bool) -> None:
        import plyvel

        super().__init__(codec)
        self.sync = sync
        self.db = plyvel.DB(
            str(path),
            create_if_missing=True,
            write_buffer_size=4 * MIB,
            lru_cache_size=8 * MIB,
            block_size=4096,
            max_open_files=1000,
            compression="snappy",
        )

    def append(self, batches: list[list[Log]]) -> None:
        db, sync = self.db, self.sync
        if len(batches[0]) == 1:
            put, encode = db.put, self.encode
            for batch in batches:
                log = batch[0]
                key = index_key(log.index)
                put(_LOG_PREFIX + key, _frame(key, encode(log)), sync=sync)
        else:
            records = self.records
            for batch in batches:
                native = db.write_batch(sync=sync)
                for key, record in records(batch, _LOG_PREFIX):
                    native.put(key, record)
                native.write()
        self._note(batches[-1])

    def _delete(self, low: int, high: int) -> None:
        native = self.db.write_batch(sync=self.sync)
        with self.db.iterator(
            start=_prefixed_key(low),
            stop=_prefixed_key(high),
            include_stop=True,
            include_value=False,
        ) as keys:
            for key in keys:
                native.delete(key)
        native.write()

    def startup(self) -> int:
        with self.db.iterator(start=_LOG_PREFIX, stop=_LOGS_END, reverse=True) as items:
            for key, _ in items:
                last = key_index(key[1:])
                self.get_many((last,))
                return last
        return 0


class RawMemory(RawHandle):
    """A plain dict: the floor under the memory engine."""

    def __init__(self, codec: Codec) -> None:
        super().__init__(codec)
        self.values: dict[bytes, bytes] = {}

    def append(self, batches: list[list[Log]]) -> None:
        values, records = self.values, self.records
        for batch in batches:
            values.update(records(batch))
        self._note(batches[-1])

    def get_many(self, indexes: Sequence[int]) -> None:
        values, decode = self.values, self.decode
        for index in indexes:
            decode(values[index_key(index)][:-4])

    def _delete(self, low: int, high: int) -> None:
        values = self.values
        for index in range(low, high + 1):
            values.pop(index_key(index), None)

    def startup(self) -> int:
        self.get_many((self.last,))
        return self.last


#: Engine name -> its raw binding's module (the one the RSS probe imports before measuring).
RAW_ENGINES: dict[str, str | None] = {
    "lmdb": "lmdb",
    "rocksdb": "rocksdict",
    "leveldb": "plyvel",
    "memory": None,
}


def has_raw(engine: str) -> bool:
    """True when *engine* has a raw-binding twin (`open_raw` knows it)."""
    return engine in RAW_ENGINES


def open_raw(engine: str, path: Path | None, codec: Codec, *, sync: bool) -> RawHandle:
    """The raw binding of *engine* on the data directory *path* (the store's ``data/``).

    Raises `ValueError` for an engine without one (see `has_raw`).
    """
    if engine == "lmdb" and path is not None:
        return RawLmdb(path, codec, sync=sync)
    if engine == "rocksdb" and path is not None:
        return RawRocks(path, codec, sync=sync)
    if engine == "leveldb" and path is not None:
        return RawLevel(path, codec, sync=sync)
    if engine == "memory":
        return RawMemory(codec)
    raise ValueError(f"no raw baseline for engine {engine!r}")
