"""``raftstore bench``: every engine x codec on Raft-shaped workloads, beside its baselines.

Each figure is measured side by side with its baselines in the same process:

- ``raw``: the engine's own Python binding (py-lmdb, rocksdict, plyvel, a
  dict for ``memory``) doing the same work in a minimal loop, with the same
  keys and the same record bytes (the payload and its 4-byte CRC-32 trailer,
  computed in the loop). Raw reads slice the trailer off and decode with the
  same codec without verifying the checksum, so ``x raw`` prices the whole store layer:
  checks, locking, framing, checksum and the engine adapter.
- ``pysyncobj``: PySyncObj's ``FileJournal`` (never fsyncs) and
  ``MemoryJournal`` on the same append / read / reopen work.
- ``fsync floor``: ``write`` + ``fsync`` of a 64-byte record, the most a
  synced write can do on this disk (shown as one fsync per batch).

Rounds of every subject of a table are interleaved (rotating the order) and
each figure is the median of its rounds; ``x raw`` is the median of the
per-round ratios, so slow drift of a noisy machine cancels out.

The JSON written by ``--json`` is described in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, TextIO

import raftstore
from raftstore._records import FORMAT_VERSION, record_format
from raftstore.codecs.base import Codec
from raftstore.engines.base import LOGS
from raftstore.errors import (
    ConfigurationError,
    EngineUnavailableError,
    RaftStoreError,
    UnknownCodecError,
    UnknownEngineError,
)
from raftstore.log import Log, LogType
from raftstore.registry import create_codec, get_engine_class

__all__ = [
    "FULL",
    "QUICK",
    "SMOKE",
    "WORKLOADS",
    "BenchConfig",
    "Handle",
    "JournalHandle",
    "RawHandle",
    "Report",
    "Result",
    "Sizes",
    "StoreHandle",
    "add_subcommand",
    "build_logs",
    "format_tables",
    "measure_fsync_floor",
    "open_raw",
    "run",
    "run_benchmarks",
    "run_rss_probe",
    "table_order",
    "write_plot",
]

SCHEMA_VERSION = 1

#: Workload name -> what one operation is.
WORKLOADS: dict[str, str] = {
    "append_1": "store_log of one new entry per call",
    "append_64": "store_logs of 64 new entries per call",
    "append_1024": "store_logs of 1024 new entries per call",
    "get_random": "get_log at uniformly random indexes of a filled log",
    "tail_read": "get_log of the last 64 entries (what a leader does to replicate)",
    "churn": "appends of 64 with delete_range of the prefix every 16 batches, keeping 1024",
    "reopen": "open + first_index + last_index + get_log(last), after a clean close",
    "rss": "peak RSS growth of a fresh process: reopen + 10k random get_log",
}
_SYNCED_WORKLOADS = ("append_1", "append_64", "append_1024", "churn")
_DATASET_WORKLOADS = ("get_random", "tail_read", "reopen", "rss")
_BATCH_SIZES = {"append_1": 1, "append_64": 64, "append_1024": 1024}
_TAIL = 64
_CHURN_BATCH = 64
_CHURN_EVERY = 16
_CHURN_KEEP = 1024
_RSS_GETS = 10_000
#: Entries written per call while filling a data set.
_FILL_BATCH = 1024

_INDEX = struct.Struct(">Q")
_PREFIXED_INDEX = struct.Struct(">BQ")
_LOG_PREFIX = ord("l")  # the rocksdb and leveldb engines' ``logs`` key prefix
_MIB = 1024 * 1024

_pack_index = _INDEX.pack
_crc32 = zlib.crc32
#: The CRC starting value of a log record under its key: the store's own framing.
_log_seed = record_format(FORMAT_VERSION).seed(LOGS)


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    """How long and how big: one preset per ``--quick`` / full / smoke run."""

    name: str
    #: Timed budget of one round of one subject, in seconds.
    round_seconds: float
    #: Rounds per subject; figures are medians over them.
    repeats: int
    #: Log lengths for ``reopen`` and ``rss``; the largest is the data set of
    #: ``get_random`` and ``tail_read``.
    dataset_sizes: tuple[int, ...]
    #: Bytes of ``data`` per entry.
    data_bytes: int = 128


#: Clocks a step can be timed with (``--clock``).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}

QUICK = Sizes("quick", 0.04, 3, (1_000, 10_000))
FULL = Sizes("full", 0.2, 5, (10_000, 100_000, 1_000_000))
SMOKE = Sizes("smoke", 0.002, 1, (100, 300))


@dataclass(slots=True)
class BenchConfig:
    """What to run; see ``raftstore bench --help``."""

    engines: list[str]
    codecs: list[str]
    workloads: list[str]
    syncs: list[bool]
    sizes: Sizes = FULL
    #: Codecs that get the ``reopen`` / ``rss`` ladder (codecs do not change them).
    ladder_codecs: list[str] = field(default_factory=lambda: ["msgpack"])
    baselines: bool = True
    directory: Path | None = None
    seed: int = 1
    #: ``wall`` (default) or ``cpu``: the calling thread's CPU time, for
    #: unsynced and read steps only; steadier on a busy machine, blind to
    #: time spent waiting (and to the engine's background threads).
    clock: str = "wall"


@dataclass(slots=True)
class Result:
    """One figure: a subject measured on one workload case."""

    workload: str
    case: str
    subject: str
    #: ``raftstore``, ``raw``, ``pysyncobj`` or ``fsync``.
    kind: str
    engine: str | None
    codec: str | None
    sync: bool | None
    unit: str
    higher_is_better: bool
    value: float
    samples: list[float]
    ratio_to_raw: float | None = None
    ratio_to_best: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(slots=True)
class Report:
    """Everything one run produced, as written to ``--json``."""

    results: list[Result]
    environment: dict[str, Any]
    settings: dict[str, Any]
    targets: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON document (schema in docs/benchmarks.md)."""
        return {
            "schema": SCHEMA_VERSION,
            "environment": self.environment,
            "settings": self.settings,
            "seconds": round(self.seconds, 2),
            "results": [asdict(result) for result in self.results],
            "targets": self.targets,
        }


# -- entries --------------------------------------------------------------------------------------


def build_logs(first: int, count: int, data_bytes: int = 128, term: int = 1) -> list[Log]:
    """*count* command entries from index *first*, with fixed-size data and a timestamp."""
    stamp = 1_700_000_000_000_000_000
    payload = bytes(range(256)) * (data_bytes // 256 + 1)
    return [
        Log(
            first + offset,
            term,
            LogType.COMMAND,
            payload[(first + offset) % 256 :][:data_bytes],
            b"",
            stamp + first + offset,
        )
        for offset in range(count)
    ]


def _batches(first: int, batch: int, count: int, data_bytes: int) -> list[list[Log]]:
    logs = build_logs(first, batch * count, data_bytes)
    return [logs[at : at + batch] for at in range(0, len(logs), batch)]


# -- handles: one interface over the store, the raw bindings and the journals ---------------------


class Handle:
    """What a workload drives: the store, a raw binding, or a PySyncObj journal.

    The loops live inside the handle so that a workload pays one Python call
    per chunk, never one per operation, on every subject alike.
    """

    kind: ClassVar[str] = ""

    def append(self, batches: list[list[Log]]) -> None:
        """Write each batch in one call (a batch of one as a single put)."""
        raise NotImplementedError

    def get_many(self, indexes: Sequence[int]) -> None:
        """Read and decode the entry at each index."""
        raise NotImplementedError

    def tail(self, last: int, times: int) -> None:
        """Read the ``_TAIL`` entries ending at *last*, *times* over."""
        for _ in range(times):
            self.get_many(range(last - _TAIL + 1, last + 1))

    def truncate_prefix(self, keep: int) -> None:
        """Delete the oldest entries, keeping the newest *keep*."""
        raise NotImplementedError

    def startup(self) -> int:
        """What Raft reads at start: first, last and the last entry; returns last."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the handle."""


class StoreHandle(Handle):
    """A `raftstore.RaftStore`."""

    kind: ClassVar[str] = "raftstore"

    def __init__(self, store: raftstore.RaftStore) -> None:
        self.store = store

    def append(self, batches: list[list[Log]]) -> None:
        store = self.store
        if len(batches[0]) == 1:
            store_log = store.store_log
            for batch in batches:
                store_log(batch[0])
        else:
            store_logs = store.store_logs
            for batch in batches:
                store_logs(batch)

    def get_many(self, indexes: Sequence[int]) -> None:
        get_log = self.store.get_log
        for index in indexes:
            get_log(index)

    def truncate_prefix(self, keep: int) -> None:
        store = self.store
        store.delete_range(store.first_index(), store.last_index() - keep)

    def startup(self) -> int:
        store = self.store
        store.first_index()
        last = store.last_index()
        if last:
            store.get_log(last)
        return last

    def close(self) -> None:
        self.store.close()


class RawHandle(Handle):
    """Shared parts of the raw bindings: the record bytes and the bounds they track."""

    kind: ClassVar[str] = "raw"

    def __init__(self, codec: Codec) -> None:
        self.encode = codec.encode
        self.decode = codec.decode
        self.first = 0
        self.last = 0

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
                self.first = _INDEX.unpack(cursor.key())[0]
                cursor.last()
                self.last = _INDEX.unpack(cursor.key())[0]
        self.reader: Any = None

    def append(self, batches: list[list[Log]]) -> None:
        encode, begin, db, pack = self.encode, self.env.begin, self.db, _pack_index
        if len(batches[0]) == 1:
            for batch in batches:
                log = batch[0]
                payload = encode(log)
                with begin(write=True, db=db) as txn:
                    txn.put(
                        pack(log.index),
                        payload
                        + _crc32(payload, _log_seed(_pack_index(log.index))).to_bytes(4, "little"),
                    )
        else:
            for batch in batches:
                items = []
                for log in batch:
                    payload = encode(log)
                    items.append(
                        (
                            pack(log.index),
                            payload
                            + _crc32(payload, _log_seed(_pack_index(log.index))).to_bytes(
                                4, "little"
                            ),
                        )
                    )
                with begin(write=True, db=db) as txn:
                    txn.cursor().putmulti(items)
        self._note(batches[-1])

    def get_many(self, indexes: Sequence[int]) -> None:
        if self.reader is None:
            self.reader = self.env.begin(db=self.db)
        get, decode, pack = self.reader.get, self.decode, _pack_index
        for index in indexes:
            decode(get(pack(index))[:-4])

    def _delete(self, low: int, high: int) -> None:
        self._drop_reader()
        stop = _pack_index(high)
        with self.env.begin(write=True, db=self.db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(_pack_index(low)):
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
            last: int = _INDEX.unpack(cursor.key())[0]
            cursor.first()
            record: Any = txn.get(_pack_index(last))
            self.decode(record[:-4])
        return last

    def close(self) -> None:
        self._drop_reader()
        self.env.close()


class _RawPrefixed(RawHandle):
    """Shared parts of the raw bindings that keep the rocksdb and leveldb engines' key layout."""

    db: Any

    def get_many(self, indexes: Sequence[int]) -> None:
        get, decode, pack = self.db.get, self.decode, _PREFIXED_INDEX.pack
        for index in indexes:
            decode(get(pack(_LOG_PREFIX, index))[:-4])

    def close(self) -> None:
        self.db.close()


class RawRocks(_RawPrefixed):
    """rocksdict in raw mode, with the rocksdb engine's key prefix and default options."""

    def __init__(self, path: Path, codec: Codec, *, sync: bool) -> None:
        import rocksdict

        super().__init__(codec)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(64 * _MIB)
        options.set_compression_type(rocksdict.DBCompressionType.snappy())
        options.set_max_background_jobs(2)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(32 * _MIB))
        options.set_block_based_table_factory(table)
        self.db: Any = rocksdict.Rdict(str(path), options)
        self.write_options = rocksdict.WriteOptions()
        self.write_options.sync = sync
        self.make_batch: Callable[[], Any] = lambda: rocksdict.WriteBatch(raw_mode=True)

    def append(self, batches: list[list[Log]]) -> None:
        encode, pack, db, options = self.encode, _PREFIXED_INDEX.pack, self.db, self.write_options
        if len(batches[0]) == 1:
            for batch in batches:
                log = batch[0]
                payload = encode(log)
                db.put(
                    pack(_LOG_PREFIX, log.index),
                    payload
                    + _crc32(payload, _log_seed(_pack_index(log.index))).to_bytes(4, "little"),
                    options,
                )
        else:
            make_batch = self.make_batch
            for batch in batches:
                native = make_batch()
                put = native.put
                for log in batch:
                    payload = encode(log)
                    put(
                        pack(_LOG_PREFIX, log.index),
                        payload
                        + _crc32(payload, _log_seed(_pack_index(log.index))).to_bytes(4, "little"),
                    )
                db.write(native, options)
        self._note(batches[-1])

    def _delete(self, low: int, high: int) -> None:
        native = self.make_batch()
        pack = _PREFIXED_INDEX.pack
        native.delete_range(pack(_LOG_PREFIX, low), pack(_LOG_PREFIX, high) + b"\x00")
        self.db.write(native, self.write_options)

    def startup(self) -> int:
        iterator = self.db.iter()
        iterator.seek(bytes((_LOG_PREFIX,)))  # first, as the store reads it
        iterator.seek(bytes((_LOG_PREFIX + 1,)))
        if iterator.valid():
            iterator.prev()
        else:
            iterator.seek_to_last()
        if not iterator.valid():
            return 0
        last: int = _PREFIXED_INDEX.unpack(iterator.key())[1]
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
            write_buffer_size=4 * _MIB,
            lru_cache_size=8 * _MIB,
            block_size=4096,
            max_open_files=1000,
            compression="snappy",
        )

    def append(self, batches: list[list[Log]]) -> None:
        encode, pack, db, sync = self.encode, _PREFIXED_INDEX.pack, self.db, self.sync
        if len(batches[0]) == 1:
            put = db.put
            for batch in batches:
                log = batch[0]
                payload = encode(log)
                put(
                    pack(_LOG_PREFIX, log.index),
                    payload
                    + _crc32(payload, _log_seed(_pack_index(log.index))).to_bytes(4, "little"),
                    sync=sync,
                )
        else:
            for batch in batches:
                native = db.write_batch(sync=sync)
                for log in batch:
                    payload = encode(log)
                    native.put(
                        pack(_LOG_PREFIX, log.index),
                        payload
                        + _crc32(payload, _log_seed(_pack_index(log.index))).to_bytes(4, "little"),
                    )
                native.write()
        self._note(batches[-1])

    def _delete(self, low: int, high: int) -> None:
        pack = _PREFIXED_INDEX.pack
        native = self.db.write_batch(sync=self.sync)
        with self.db.iterator(
            start=pack(_LOG_PREFIX, low),
            stop=pack(_LOG_PREFIX, high),
            include_stop=True,
            include_value=False,
        ) as keys:
            for key in keys:
                native.delete(key)
        native.write()

    def startup(self) -> int:
        with self.db.iterator(
            start=bytes((_LOG_PREFIX,)), stop=bytes((_LOG_PREFIX + 1,)), reverse=True
        ) as items:
            for key, _ in items:
                last: int = _PREFIXED_INDEX.unpack(key)[1]
                self.get_many((last,))
                return last
        return 0


class RawMemory(RawHandle):
    """A plain dict: the floor under the memory engine."""

    def __init__(self, codec: Codec) -> None:
        super().__init__(codec)
        self.values: dict[bytes, bytes] = {}

    def append(self, batches: list[list[Log]]) -> None:
        encode, pack, values = self.encode, _pack_index, self.values
        for batch in batches:
            for log in batch:
                payload = encode(log)
                values[pack(log.index)] = payload + _crc32(
                    payload, _log_seed(_pack_index(log.index))
                ).to_bytes(4, "little")
        self._note(batches[-1])

    def get_many(self, indexes: Sequence[int]) -> None:
        values, decode, pack = self.values, self.decode, _pack_index
        for index in indexes:
            decode(values[pack(index)][:-4])

    def _delete(self, low: int, high: int) -> None:
        values, pack = self.values, _pack_index
        for index in range(low, high + 1):
            values.pop(pack(index), None)

    def startup(self) -> int:
        self.get_many((self.last,))
        return self.last


class JournalHandle(Handle):
    """A PySyncObj journal: entries are ``(command, idx, term)``, positions are offsets."""

    kind: ClassVar[str] = "pysyncobj"

    def __init__(self, journal: Any) -> None:
        self.journal = journal

    def append(self, batches: list[list[Log]]) -> None:
        add = self.journal.add
        for batch in batches:
            for log in batch:
                add(log.data, log.index, log.term)

    def get_many(self, indexes: Sequence[int]) -> None:
        journal = self.journal
        first = journal[0][1]
        for index in indexes:
            journal[index - first]

    def tail(self, last: int, times: int) -> None:
        journal = self.journal
        for _ in range(times):
            journal[-_TAIL:]

    def truncate_prefix(self, keep: int) -> None:
        journal = self.journal
        if len(journal) > keep:
            journal.deleteEntriesTo(len(journal) - keep)

    def startup(self) -> int:
        journal = self.journal
        if not len(journal):
            return 0
        journal[0]
        last: int = journal[-1][1]
        return last

    def close(self) -> None:
        self.journal._destroy()


def open_raw(engine: str, path: Path | None, codec: Codec, *, sync: bool) -> RawHandle:
    """The raw binding of *engine* on the data directory *path* (the store's ``data/``)."""
    if engine == "lmdb" and path is not None:
        return RawLmdb(path, codec, sync=sync)
    if engine == "rocksdb" and path is not None:
        return RawRocks(path, codec, sync=sync)
    if engine == "leveldb" and path is not None:
        return RawLevel(path, codec, sync=sync)
    if engine == "memory":
        return RawMemory(codec)
    raise ValueError(f"no raw baseline for engine {engine!r}")


_RAW_ENGINES = ("lmdb", "rocksdb", "leveldb", "memory")
#: The note on a store row whose engine has no raw binding to compare with.
NO_RAW = "no raw baseline"


def has_raw(engine: str) -> bool:
    """True when *engine* has a raw-binding twin (`open_raw` knows it)."""
    return engine in _RAW_ENGINES


def _persistent(engine: str) -> bool:
    """True when *engine* keeps its data on disk (so it can be reopened)."""
    return bool(get_engine_class(engine).persistent)


# -- subjects: something measured in rounds -------------------------------------------------------


class Subject:
    """One row of a table: a handle factory plus the chunk of work one step does."""

    def __init__(
        self,
        label: str,
        kind: str,
        engine: str | None,
        codec: str | None,
        step: Callable[[Handle], tuple[int, float]],
        *,
        opener: Callable[[], Handle] | None = None,
        handle: Handle | None = None,
        per_round: bool = False,
        timed_open: bool = False,
        note: str = "",
    ) -> None:
        self.label = label
        self.kind = kind
        self.engine = engine
        self.codec = codec
        self.step = step
        self.opener = opener
        self.handle = handle
        #: Open a handle for each round (two handles on one store cannot coexist).
        self.per_round = per_round
        #: The timed work is the open itself (``reopen``).
        self.timed_open = timed_open
        self.note = note
        self.samples: list[float] = []

    def _open(self) -> Handle:
        if self.handle is None:
            assert self.opener is not None
            self.handle = self.opener()
        return self.handle

    def round(self, budget: float) -> float:
        """Run for about *budget* seconds; return operations per timed second."""
        if self.timed_open:
            return self._reopen_round(budget)
        handle = self._open()
        count = 0
        elapsed = 0.0
        perf_counter = time.perf_counter
        deadline = perf_counter() + budget
        step = self.step
        try:
            step(handle)  # warm caches, untimed
            while True:
                done, seconds = step(handle)
                count += done
                elapsed += seconds
                if perf_counter() >= deadline:
                    break
        finally:
            if self.per_round:
                self.release()
        return count / elapsed if elapsed > 0 else 0.0

    def _reopen_round(self, budget: float) -> float:
        assert self.opener is not None
        opens = 0
        elapsed = 0.0
        perf_counter = time.perf_counter
        deadline = perf_counter() + budget
        while True:
            gc.collect()
            began = perf_counter()
            handle = self.opener()
            handle.startup()
            ended = perf_counter()
            handle.close()
            opens += 1
            elapsed += ended - began
            if perf_counter() >= deadline:
                break
        return opens / elapsed

    def release(self) -> None:
        """Close the handle, if one is open."""
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()


def _engine_subject(
    kind: str, engine: str, codec: str, step: Callable[[Handle], tuple[int, float]], **how: Any
) -> Subject:
    """The row of raftstore (*kind* ``"raftstore"``) or of *engine*'s own binding (``"raw"``).

    *how* holds `Subject`'s keywords: how the row gets its handle.
    """
    label = f"{engine}/{codec}" if kind == "raftstore" else f"raw {engine} ({codec} records)"
    return Subject(label, kind, engine, codec, step, **how)


def _fill_batches(first: int, last: int, data_bytes: int) -> Iterator[list[Log]]:
    """Yield the logs ``first..last`` (none when first > last) in batches of `_FILL_BATCH`."""
    for start in range(first, last + 1, _FILL_BATCH):
        yield build_logs(start, min(_FILL_BATCH, last + 1 - start), data_bytes)


def _rss_result(
    subject: str,
    kind: str,
    engine: str | None,
    codec: str | None,
    size: int,
    probe: dict[str, Any],
) -> Result:
    """The ``rss`` row of *subject*: a fresh process's peak RSS growth over *size* entries."""
    return Result(
        workload="rss",
        case=f"{_size_label(size)} entries",
        subject=subject,
        kind=kind,
        engine=engine,
        codec=codec,
        sync=None,
        unit="MB",
        higher_is_better=False,
        value=probe["growth_mb"],
        samples=[probe["growth_mb"]],
        params={"entries": size, **probe},
    )


# -- progress -------------------------------------------------------------------------------------


class Progress:
    """A one-line bar on a terminal; one plain line per table elsewhere."""

    def __init__(self, total: int, stream: TextIO | None, *, tty: bool | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty() if tty is None and stream is not None else bool(tty)
        self.began = time.monotonic()
        self.label = ""

    def start(self, label: str) -> None:
        """Announce the table or step about to run."""
        self.label = label
        if self.stream is None:
            return
        if self.tty:
            self._draw()
        else:
            percent = 100 * self.done // self.total
            print(f"[{percent:3d}%] {label}", file=self.stream, flush=True)

    def advance(self, steps: int = 1) -> None:
        """Count *steps* units of work as done."""
        self.done = min(self.total, self.done + steps)
        if self.stream is not None and self.tty:
            self._draw()

    def _draw(self) -> None:
        assert self.stream is not None
        width = 30
        filled = width * self.done // self.total
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.monotonic() - self.began
        line = f"\r[{bar}] {100 * self.done // self.total:3d}% {elapsed:5.0f}s {self.label}"
        self.stream.write(line[:120].ljust(120))
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self.stream is not None and self.tty:
            self.done = self.total
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


# -- measuring ------------------------------------------------------------------------------------


def measure_fsync_floor(directory: Path, seconds: float, repeats: int) -> list[float]:
    """Rounds of ``write`` + ``fsync`` of a 64-byte record; returns fsyncs per second."""
    path = directory / "fsync-floor"
    record = b"r" * 64
    rates = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(repeats):
            count = 0
            began = time.perf_counter()
            while True:
                os.write(fd, record)
                os.fsync(fd)
                count += 1
                elapsed = time.perf_counter() - began
                if elapsed >= seconds:
                    break
            rates.append(count / elapsed)
    finally:
        os.close(fd)
        path.unlink()
    return rates


#: Synced rounds: this many times as many, each this many times as long (fsync
#: latency on a shared disk swings by 10x within seconds; short, many, interleaved
#: rounds pair the store with its raw twin under the same conditions).
_SYNCED_ROUNDS = 3
_SYNCED_ROUND_SHARE = 0.5


def _interleave(
    subjects: list[Subject], sizes: Sizes, progress: Progress, *, synced: bool = False
) -> None:
    seconds = sizes.round_seconds
    repeats = sizes.repeats
    if synced:
        seconds *= _SYNCED_ROUND_SHARE
        repeats *= _SYNCED_ROUNDS
    for repeat in range(repeats):
        shift = repeat % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            subject.samples.append(subject.round(seconds))
            progress.advance(1 if not synced else 0)
        if synced and repeat % _SYNCED_ROUNDS == _SYNCED_ROUNDS - 1:
            progress.advance(len(subjects))


def _paired_ratio(samples: list[float], baseline: list[float], higher: bool) -> float | None:
    if not samples or len(samples) != len(baseline):
        return None
    ratios = [
        (mine / theirs if higher else theirs / mine)
        for mine, theirs in zip(samples, baseline, strict=True)
        if mine > 0 and theirs > 0
    ]
    return statistics.median(ratios) if ratios else None


def _results_of(
    workload: str,
    case: str,
    subjects: list[Subject],
    *,
    sync: bool | None,
    unit: str,
    scale: float = 1.0,
    as_seconds: bool = False,
    params: dict[str, Any] | None = None,
) -> list[Result]:
    """Turn measured subjects into results, with each store's ratio to its raw twin."""
    results = []
    for subject in subjects:
        rates = [rate * scale for rate in subject.samples]
        samples = [1 / rate for rate in rates] if as_seconds else rates
        results.append(
            Result(
                workload=workload,
                case=case,
                subject=subject.label,
                kind=subject.kind,
                engine=subject.engine,
                codec=subject.codec,
                sync=sync,
                unit=unit,
                higher_is_better=not as_seconds,
                value=statistics.median(samples),
                samples=[round(sample, 9) for sample in samples],
                params=dict(params or {}),
                note=subject.note,
            )
        )
    _link_raw(results)
    return results


def _link_raw(results: list[Result]) -> None:
    raw = {(r.engine, r.codec): r for r in results if r.kind == "raw"}
    for result in results:
        twin = raw.get((result.engine, result.codec))
        if twin is None or result.kind not in ("raftstore", "raw"):
            continue
        result.ratio_to_raw = _paired_ratio(result.samples, twin.samples, result.higher_is_better)


def _finish_ratios(results: list[Result]) -> None:
    """Set ``ratio_to_best``: each row against the best raftstore engine x codec of its table."""
    tables: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        tables.setdefault((result.workload, result.case), []).append(result)
    for rows in tables.values():
        stores = [row.value for row in rows if row.kind == "raftstore" and row.value > 0]
        if not stores:
            continue
        higher = rows[0].higher_is_better
        best = max(stores) if higher else min(stores)
        for row in rows:
            if row.value > 0:
                row.ratio_to_best = row.value / best if higher else best / row.value


# -- the runner -----------------------------------------------------------------------------------


def _sync_case(sync: bool) -> str:
    return "sync" if sync else "no sync"


def _size_label(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return str(count)


class _Runner:
    def __init__(self, config: BenchConfig, progress_stream: TextIO | None) -> None:
        self.config = config
        self.sizes = config.sizes
        self.results: list[Result] = []
        self.rng = random.Random(config.seed)
        self.progress = Progress(self._planned_rounds(), progress_stream)
        self.fsync_rates: list[float] = []
        self.codecs = {name: create_codec(name) for name in config.codecs}
        #: Times the work of unsynced and read steps (reopen and synced writes: always wall).
        self.clock: Callable[[], float] = CLOCKS[config.clock]

    # planning -----------------------------------------------------------

    def _planned_rounds(self) -> int:
        config, repeats = self.config, self.sizes.repeats
        pairs = len(config.engines) * len(config.codecs)
        rounds = 0
        for workload in config.workloads:
            if workload in _SYNCED_WORKLOADS:
                rounds += len(config.syncs) * (2 * pairs + 2) * repeats
            elif workload in ("get_random", "tail_read"):
                rounds += (2 * pairs + 2) * repeats
            elif workload == "reopen":
                rounds += len(self.sizes.dataset_sizes) * (2 * len(config.engines) + 1) * repeats
        return rounds + 1

    # helpers ------------------------------------------------------------

    def _tmp(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.directory))
        shutil.rmtree(path)
        return path

    def _open_store(self, engine: str, codec: str, path: Path | None, *, sync: bool) -> Any:
        if path is None:
            return raftstore.open(f"{engine}://", codec=codec, sync=sync)
        return raftstore.open(path, engine=engine, codec=codec, sync=sync)

    def _journal_subjects(
        self,
        make_step: Callable[[], Callable[[Handle], tuple[int, float]]],
        file_journal: Path | None,
        memory: Any | None,
    ) -> list[Subject]:
        from pysyncobj.journal import FileJournal, MemoryJournal

        subjects = []
        if file_journal is not None:
            path = str(file_journal)
            subjects.append(
                Subject(
                    "pysyncobj FileJournal",
                    "pysyncobj",
                    None,
                    None,
                    make_step(),
                    opener=lambda: JournalHandle(FileJournal(path)),
                    note="never fsyncs",
                )
            )
        subjects.append(
            Subject(
                "pysyncobj MemoryJournal",
                "pysyncobj",
                None,
                None,
                make_step(),
                handle=JournalHandle(memory if memory is not None else MemoryJournal()),
                note="not durable",
            )
        )
        return subjects

    @property
    def _baselines(self) -> bool:
        return self.config.baselines and _have("pysyncobj")

    # writes --------------------------------------------------------------

    def run_appends(self, workload: str, sync: bool) -> None:
        batch = _CHURN_BATCH if workload == "churn" else _BATCH_SIZES[workload]
        # About 1024 entries per timed step unsynced; a synced step stays near 64 fsyncs.
        per_step = max(1, (64 if sync and workload != "churn" else 1024) // batch)
        data_bytes = self.sizes.data_bytes
        case = _sync_case(sync)
        self.progress.start(f"{workload} ({case})")
        subjects: list[Subject] = []
        paths: list[Path] = []
        # CPU time would hide the fsync a synced write waits for.
        clock = time.perf_counter if sync else self.clock

        def stepper() -> Callable[[Handle], tuple[int, float]]:
            state = {"next": 1, "calls": 0}

            def step(handle: Handle) -> tuple[int, float]:
                # Entries are built untimed: making Log objects is the caller's work.
                batches = _batches(state["next"], batch, per_step, data_bytes)
                state["next"] += batch * per_step
                began = clock()
                handle.append(batches)
                if workload == "churn":
                    state["calls"] += per_step
                    if state["calls"] >= _CHURN_EVERY:
                        state["calls"] = 0
                        handle.truncate_prefix(_CHURN_KEEP)
                return batch * per_step, clock() - began

            return step

        for engine in self.config.engines:
            for codec in self.config.codecs:
                persistent = _persistent(engine)
                path = self._tmp(f"{engine}-{codec}") if persistent else None
                store_step = stepper()
                store = self._open_store(engine, codec, path, sync=sync)
                subjects.append(
                    _engine_subject(
                        "raftstore",
                        engine,
                        codec,
                        store_step,
                        handle=StoreHandle(store),
                        note="" if has_raw(engine) else NO_RAW,
                    )
                )
                if path is not None:
                    paths.append(path)
                if not has_raw(engine):
                    continue
                raw_path = self._tmp(f"raw-{engine}-{codec}") if persistent else None
                if raw_path is not None:
                    raw_path.mkdir()
                    paths.append(raw_path)
                raw_handle = open_raw(engine, raw_path, self.codecs[codec], sync=sync)
                subjects.append(_engine_subject("raw", engine, codec, stepper(), handle=raw_handle))
        if self._baselines and not sync:
            journal_path = self._tmp("filejournal")
            paths.append(Path(f"{journal_path}.meta"))
            paths.append(journal_path)
            subjects += self._journal_subjects(stepper, journal_path, None)
        try:
            _interleave(subjects, self.sizes, self.progress, synced=sync)
        finally:
            for subject in subjects:
                subject.release()
            for path in paths:
                _remove(path)
        unit = "entries/s"
        params = {"batch": batch, "data_bytes": data_bytes}
        if workload == "churn":
            params.update(delete_every=_CHURN_EVERY, keep=_CHURN_KEEP)
        results = _results_of(workload, case, subjects, sync=sync, unit=unit, params=params)
        if sync and self.fsync_rates and workload != "churn":
            results.append(
                Result(
                    workload=workload,
                    case=case,
                    subject="fsync floor (1 fsync per call)",
                    kind="fsync",
                    engine=None,
                    codec=None,
                    sync=True,
                    unit=unit,
                    higher_is_better=True,
                    value=statistics.median(self.fsync_rates) * batch,
                    samples=[rate * batch for rate in self.fsync_rates],
                    params=params,
                    note="write+fsync of 64 bytes, times the batch size",
                )
            )
        self.results += results

    # reads on filled data sets -----------------------------------------------

    def run_datasets(self) -> None:
        """Fill each engine x codec once, growing through the sizes, and read it."""
        workloads = [w for w in self.config.workloads if w in _DATASET_WORKLOADS]
        if not workloads:
            return
        sizes = self.sizes.dataset_sizes
        reads = [w for w in workloads if w in ("get_random", "tail_read")]
        ladder = [w for w in workloads if w in ("reopen", "rss")]
        largest = sizes[-1]
        indexes = [self.rng.randrange(1, largest + 1) for _ in range(4096)]
        read_subjects: dict[str, list[Subject]] = {w: [] for w in reads}
        ladder_results: dict[tuple[str, int], list[Subject]] = {}
        rss_results: list[Result] = []
        for engine in self.config.engines:
            for codec in self.config.codecs:
                on_ladder = bool(ladder) and codec in self.config.ladder_codecs
                if not reads and not on_ladder:
                    continue
                self._one_dataset(
                    engine,
                    codec,
                    sizes if on_ladder else (largest,),
                    ladder if on_ladder else [],
                    reads,
                    indexes,
                    read_subjects,
                    ladder_results,
                    rss_results,
                )
        if self._baselines:
            self._journal_datasets(reads, ladder, indexes, read_subjects, ladder_results)
        for workload, subjects in read_subjects.items():
            unit = "entries/s"
            self.results += _results_of(
                workload,
                f"{_size_label(largest)} entries",
                subjects,
                sync=None,
                unit=unit,
                params={"entries": largest, "data_bytes": self.sizes.data_bytes},
            )
        for (workload, size), subjects in ladder_results.items():
            self.results += _results_of(
                workload,
                f"{_size_label(size)} entries",
                subjects,
                sync=None,
                unit="s",
                as_seconds=True,
                params={"entries": size},
            )
        self.results += rss_results

    def _read_step(
        self, workload: str, indexes: list[int], last: int
    ) -> Callable[[Handle], tuple[int, float]]:
        perf_counter = self.clock
        if workload == "tail_read":
            times = 16

            def tail(handle: Handle) -> tuple[int, float]:
                began = perf_counter()
                handle.tail(last, times)
                return times * _TAIL, perf_counter() - began

            return tail
        position = {"at": 0}
        chunk = 1024

        def gets(handle: Handle) -> tuple[int, float]:
            at = position["at"]
            position["at"] = (at + chunk) % (len(indexes) - chunk)
            wanted = indexes[at : at + chunk]
            began = perf_counter()
            handle.get_many(wanted)
            return chunk, perf_counter() - began

        return gets

    def _one_dataset(
        self,
        engine: str,
        codec: str,
        sizes: Sequence[int],
        ladder: list[str],
        reads: list[str],
        indexes: list[int],
        read_subjects: dict[str, list[Subject]],
        ladder_results: dict[tuple[str, int], list[Subject]],
        rss_results: list[Result],
    ) -> None:
        persistent = _persistent(engine)
        path = self._tmp(f"data-{engine}-{codec}") if persistent else None
        data = None if path is None else path / "data"
        store = self._open_store(engine, codec, path, sync=False)
        raw_memory = RawMemory(self.codecs[codec]) if not persistent and has_raw(engine) else None
        filled = 0
        try:
            for size in sizes:
                self.progress.start(f"fill {engine}/{codec} to {_size_label(size)}")
                for logs in _fill_batches(filled + 1, size, self.sizes.data_bytes):
                    store.store_logs(logs)
                    if raw_memory is not None:
                        raw_memory.append([logs])
                filled = max(filled, size)
                if persistent:
                    store.sync()
                    store.close()
                    # The first open after writing replays the engine's log; measure the next.
                    self._open_store(engine, codec, path, sync=False).close()
                if persistent and "reopen" in ladder:
                    self.progress.start(f"reopen {engine}/{codec} at {_size_label(size)}")
                    assert path is not None
                    assert data is not None
                    subjects = self._opened_subjects(
                        engine, codec, _no_step, path, data, timed_open=True
                    )
                    _interleave(subjects, self.sizes, self.progress)
                    ladder_results.setdefault(("reopen", size), []).extend(subjects)
                if persistent and "rss" in ladder:
                    assert path is not None
                    assert data is not None
                    self.progress.start(f"rss {engine}/{codec} at {_size_label(size)}")
                    rss_results += self._rss(engine, codec, path, data, size)
                if persistent and size != sizes[-1]:
                    store = self._open_store(engine, codec, path, sync=False)
            for workload in reads:
                self.progress.start(f"{workload} {engine}/{codec} ({_size_label(filled)})")
                step = self._read_step(workload, indexes, filled)
                if persistent:
                    assert path is not None
                    assert data is not None
                    subjects = self._opened_subjects(
                        engine, codec, step, path, data, per_round=True
                    )
                else:
                    subjects = [
                        _engine_subject(
                            "raftstore",
                            engine,
                            codec,
                            step,
                            handle=StoreHandle(store),
                            note="" if raw_memory is not None else NO_RAW,
                        )
                    ]
                    if raw_memory is not None:
                        subjects.append(
                            _engine_subject("raw", engine, codec, step, handle=raw_memory)
                        )
                _interleave(subjects, self.sizes, self.progress)
                for subject in subjects:
                    if subject.per_round:
                        subject.release()
                    subject.handle = None
                read_subjects[workload].extend(subjects)
        finally:
            if not store.closed:
                store.close()
            if path is not None:
                _remove(path)

    def _opened_subjects(
        self,
        engine: str,
        codec: str,
        step: Callable[[Handle], tuple[int, float]],
        path: Path,
        data: Path,
        *,
        per_round: bool = False,
        timed_open: bool = False,
    ) -> list[Subject]:
        """The store on *path* and its raw twin on *data*, each opening its own handles."""
        codec_object = self.codecs[codec]
        store = _engine_subject(
            "raftstore",
            engine,
            codec,
            step,
            opener=lambda: StoreHandle(self._open_store(engine, codec, path, sync=False)),
            per_round=per_round,
            timed_open=timed_open,
            note="" if has_raw(engine) else NO_RAW,
        )
        if not has_raw(engine):
            return [store]
        return [
            store,
            _engine_subject(
                "raw",
                engine,
                codec,
                step,
                opener=lambda: open_raw(engine, data, codec_object, sync=False),
                per_round=per_round,
                timed_open=timed_open,
            ),
        ]

    def _rss(self, engine: str, codec: str, path: Path, data: Path, size: int) -> list[Result]:
        results = []
        for kind, target in (("raftstore", path), ("raw", data)):
            if kind == "raw" and not has_raw(engine):
                continue
            probe = run_rss_probe(kind, engine, codec, target, size)
            if probe is None:
                continue
            subject = f"{engine}/{codec}" if kind == "raftstore" else f"raw {engine}"
            result = _rss_result(subject, kind, engine, codec, size, probe)
            if not has_raw(engine):
                result.note = NO_RAW
            results.append(result)
        return results

    def _journal_datasets(
        self,
        reads: list[str],
        ladder: list[str],
        indexes: list[int],
        read_subjects: dict[str, list[Subject]],
        ladder_results: dict[tuple[str, int], list[Subject]],
    ) -> None:
        from pysyncobj.journal import FileJournal, MemoryJournal

        sizes = self.sizes.dataset_sizes
        path = self._tmp("filejournal")
        memory = MemoryJournal()
        journal = FileJournal(str(path))
        filled = 0
        try:
            for size in sizes:
                self.progress.start(f"fill pysyncobj journals to {_size_label(size)}")
                for logs in _fill_batches(filled + 1, size, self.sizes.data_bytes):
                    for log in logs:
                        journal.add(log.data, log.index, log.term)
                        memory.add(log.data, log.index, log.term)
                filled = max(filled, size)
                journal.flush()
                if "reopen" in ladder:
                    journal._destroy()
                    subject = Subject(
                        "pysyncobj FileJournal",
                        "pysyncobj",
                        None,
                        None,
                        _no_step,
                        opener=lambda: JournalHandle(FileJournal(str(path))),
                        timed_open=True,
                        note="reads the whole file into a list",
                    )
                    self.progress.start(f"reopen FileJournal at {_size_label(size)}")
                    _interleave([subject], self.sizes, self.progress)
                    ladder_results.setdefault(("reopen", size), []).append(subject)
                    journal = FileJournal(str(path))
                if "rss" in ladder:
                    probe = run_rss_probe("pysyncobj", "filejournal", "", path, size)
                    if probe is not None:
                        self.results.append(
                            _rss_result(
                                "pysyncobj FileJournal", "pysyncobj", None, None, size, probe
                            )
                        )
            for workload in reads:
                step = self._read_step(workload, indexes, filled)
                self.progress.start(f"{workload} pysyncobj journals")
                subjects = self._journal_subjects(_constant(step), None, memory)
                subjects.insert(
                    0,
                    Subject(
                        "pysyncobj FileJournal",
                        "pysyncobj",
                        None,
                        None,
                        step,
                        handle=JournalHandle(journal),
                        note="list in memory",
                    ),
                )
                _interleave(subjects, self.sizes, self.progress)
                read_subjects[workload].extend(subjects)
        finally:
            journal._destroy()
            _remove(path)
            _remove(Path(str(path) + ".meta"))

    # all ----------------------------------------------------------------

    def run(self) -> list[Result]:
        config = self.config
        base = config.directory
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="raftstore-bench-", dir=base) as tmp:
            self.directory = Path(tmp)
            if True in config.syncs and config.baselines:
                self.progress.start("fsync floor")
                self.fsync_rates = measure_fsync_floor(
                    self.directory, self.sizes.round_seconds, self.sizes.repeats
                )
                self.progress.advance()
            for workload in config.workloads:
                if workload in _SYNCED_WORKLOADS:
                    for sync in config.syncs:
                        self.run_appends(workload, sync)
            self.run_datasets()
        self.progress.finish()
        _finish_ratios(self.results)
        return self.results

    directory: Path


def _constant(
    step: Callable[[Handle], tuple[int, float]],
) -> Callable[[], Callable[[Handle], tuple[int, float]]]:
    return lambda: step


def _no_step(handle: Handle) -> tuple[int, float]:
    return 0, 0.0


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# -- RSS probe (runs in a fresh interpreter) ------------------------------------------------------


def _status_kib(field_name: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _rss_probe(kind: str, engine: str, codec: str, target: str, size: int) -> dict[str, Any]:
    """Open *target* in this (fresh) process, read like Raft at start, report RSS growth."""
    rng = random.Random(7)
    gets = [rng.randrange(1, size + 1) for _ in range(_RSS_GETS)]
    handle: Handle
    if kind == "pysyncobj":
        from pysyncobj.journal import FileJournal

        before = _status_kib("VmRSS")
        handle = JournalHandle(FileJournal(target))
    elif kind == "raw":
        codec_object = create_codec(codec)
        importlib.import_module(
            {"lmdb": "lmdb", "rocksdb": "rocksdict", "leveldb": "plyvel"}[engine]
        )
        before = _status_kib("VmRSS")
        handle = open_raw(engine, Path(target), codec_object, sync=False)
    else:
        get_engine_class(engine)
        create_codec(codec)
        before = _status_kib("VmRSS")
        handle = StoreHandle(raftstore.open(target, engine=engine, codec=codec, sync=False))
    handle.startup()
    handle.get_many(gets)
    after = _status_kib("VmRSS")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forking parent.
    peak = _status_kib("VmHWM")
    handle.close()
    return {
        "rss_before_mb": round(before / 1024, 1),
        "rss_after_mb": round(after / 1024, 1),
        "peak_mb": round(peak / 1024, 1),
        "growth_mb": round((peak - before) / 1024, 1),
    }


def run_rss_probe(
    kind: str, engine: str, codec: str, target: Path, size: int
) -> dict[str, Any] | None:
    code = (
        "import json, sys; from raftstore.benchmark import _rss_probe; "
        "print(json.dumps(_rss_probe(*sys.argv[1:5], int(sys.argv[5]))))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, kind, engine, codec, str(target), str(size)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        probe: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        print(f"rss probe of {kind} {engine} failed: {exc}", file=sys.stderr)
        return None
    return probe


# -- targets --------------------------------------------------------------------------------------


def _find(results: list[Result], workload: str, case: str | None, subject: str) -> Result | None:
    for result in results:
        if (
            result.workload == workload
            and (case is None or result.case == case)
            and result.subject == subject
        ):
            return result
    return None


def evaluate_targets(
    results: list[Result], engine: str = "lmdb", codec: str = "msgpack"
) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured ratio (None when not measured)."""
    me = f"{engine}/{codec}"
    targets: list[dict[str, Any]] = []

    def add(name: str, measured: float | None, goal: float, at_least: bool, detail: str) -> None:
        met = None if measured is None else (measured >= goal if at_least else measured <= goal)
        targets.append(
            {
                "target": name,
                "measured": None if measured is None else round(measured, 3),
                "goal": f"{'>=' if at_least else '<='} {goal}",
                "met": met,
                "detail": detail,
            }
        )

    gets = [r for r in results if r.workload == "get_random" and r.subject == me]
    add(
        f"get_log vs raw get+decode ({me})",
        gets[0].ratio_to_raw if gets else None,
        0.85,
        True,
        gets[0].case if gets else "not measured",
    )
    batch = _find(results, "append_64", "no sync", me)
    add(
        f"store_logs(64, unsynced) vs raw batch write ({me})",
        batch.ratio_to_raw if batch else None,
        0.8,
        True,
        "",
    )
    single = _find(results, "append_1", "sync", me)
    add(
        f"synced store_log vs raw synced put ({me})",
        single.ratio_to_raw if single else None,
        0.9,
        True,
        "",
    )
    reopens = sorted(
        (r for r in results if r.workload == "reopen" and r.subject == me),
        key=lambda r: int(r.params["entries"]),
    )
    if len(reopens) >= 2:
        add(
            f"reopen at {reopens[-1].case} / reopen at {reopens[0].case} ({me})",
            reopens[-1].value / reopens[0].value,
            2.0,
            False,
            f"{reopens[-1].value * 1000:.2f} ms vs {reopens[0].value * 1000:.2f} ms",
        )
    else:
        add(f"reopen at largest / smallest ({me})", None, 2.0, False, "not measured")
    rss = sorted(
        (r for r in results if r.workload == "rss" and r.subject == me),
        key=lambda r: int(r.params["entries"]),
    )
    raw_rss = {r.case: r for r in results if r.workload == "rss" and r.subject == f"raw {engine}"}
    if rss:
        largest = rss[-1]
        raw = raw_rss.get(largest.case)
        beyond = largest.value - (raw.value if raw else 0.0)
        add(
            f"peak RSS growth at {largest.case} beyond the raw binding's, MB ({me})",
            beyond,
            50.0,
            False,
            f"store {largest.value} MB, raw {raw.value if raw else '?'} MB",
        )
    else:
        add(f"peak RSS growth beyond the raw binding's, MB ({me})", None, 50.0, False, "")
    for workload in ("append_1", "append_64", "append_1024"):
        journal = _find(results, workload, "no sync", "pysyncobj FileJournal")
        stores = [
            r
            for r in results
            if r.workload == workload
            and r.case == "no sync"
            and r.kind == "raftstore"
            and r.engine != "memory"
        ]
        if journal and stores:
            best = max(stores, key=lambda r: r.value)
            add(
                f"fastest on-disk engine vs FileJournal, {workload} unsynced",
                best.value / journal.value,
                1.0,
                True,
                f"{best.subject}",
            )
    reopen_journal = [
        r for r in results if r.workload == "reopen" and r.subject == "pysyncobj FileJournal"
    ]
    for journal in reopen_journal:
        stores = [
            r
            for r in results
            if r.workload == "reopen" and r.case == journal.case and r.kind == "raftstore"
        ]
        if stores:
            best = min(stores, key=lambda r: r.value)
            add(
                f"fastest engine vs FileJournal, reopen at {journal.case} (speed-up)",
                journal.value / best.value,
                1.0,
                True,
                f"{best.subject} {best.value * 1000:.2f} ms vs {journal.value * 1000:.2f} ms",
            )
    return targets


# -- output ---------------------------------------------------------------------------------------


def _format_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:,.2f} ms"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.0f}"


def format_tables(results: Iterable[Result]) -> str:
    """One aligned table per workload case: rate, ratio to raw, ratio to the best."""
    tables: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        tables.setdefault((result.workload, result.case), []).append(result)
    blocks = []
    for (workload, case), rows in tables.items():
        unit = rows[0].unit
        shown = "time" if unit == "s" else ("peak RSS growth" if unit == "MB" else unit)
        title = f"{workload} [{case}] - {WORKLOADS.get(workload, '')}"
        ordered = table_order(rows)
        width = max(len(r.subject) for r in ordered) + 2
        lines = [title, f"  {'subject':<{width}}{shown:>16}{'x raw':>9}{'x best':>9}  note"]
        for row in ordered:
            raw = "" if row.ratio_to_raw is None else f"{row.ratio_to_raw:.2f}"
            best = "" if row.ratio_to_best is None else f"{row.ratio_to_best:.2f}"
            lines.append(
                f"  {row.subject:<{width}}{_format_value(row.value, unit):>16}"
                f"{raw:>9}{best:>9}  {row.note}".rstrip()
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def table_order(rows: list[Result]) -> list[Result]:
    """Stores best first, each followed by its raw twin; then the other baselines."""

    def rank(row: Result) -> float:
        return -row.value if row.higher_is_better else row.value

    raw = {(row.engine, row.codec): row for row in rows if row.kind == "raw"}
    ordered: list[Result] = []
    for row in sorted((r for r in rows if r.kind == "raftstore"), key=rank):
        ordered.append(row)
        twin = raw.pop((row.engine, row.codec), None)
        if twin is not None:
            ordered.append(twin)
    ordered += sorted(raw.values(), key=rank)
    ordered += sorted((r for r in rows if r.kind not in ("raftstore", "raw")), key=rank)
    return ordered


def format_targets(targets: list[dict[str, Any]]) -> str:
    """The targets as a short list: measured, goal, met."""
    lines = ["targets:"]
    for target in targets:
        measured = "n/a" if target["measured"] is None else f"{target['measured']}"
        met = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        detail = f"  ({target['detail']})" if target["detail"] else ""
        lines.append(
            f"  {met:<13} {measured:>9} (goal {target['goal']})  {target['target']}{detail}"
        )
    return "\n".join(lines)


def write_plot(results: list[Result], path: Path) -> None:
    """Grouped bar charts, one panel per workload case (needs matplotlib: raftstore[plot])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        tables.setdefault((result.workload, result.case), []).append(result)
    columns = 3
    rows = (len(tables) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.6 * rows), squeeze=False)
    for axis in axes.flat[len(tables) :]:
        axis.set_visible(False)
    for axis, ((workload, case), entries) in zip(axes.flat, tables.items(), strict=False):
        groups = sorted({_group(r) for r in entries}, key=_group_order)
        series = sorted({_series(r) for r in entries}, key=_series_order)
        width = 0.8 / max(len(series), 1)
        for offset, name in enumerate(series):
            xs, heights = [], []
            for position, group in enumerate(groups):
                for result in entries:
                    if _group(result) == group and _series(result) == name:
                        xs.append(position + offset * width - 0.4 + width / 2)
                        heights.append(result.value * 1000 if result.unit == "s" else result.value)
            if xs:
                raw = name.startswith("raw ")
                axis.bar(
                    xs,
                    heights,
                    width,
                    label=name,
                    color=_series_color(name),
                    hatch="///" if raw else None,
                    edgecolor="white" if raw else None,
                    alpha=0.75 if raw else 1.0,
                )
        axis.set_xticks(range(len(groups)))
        axis.set_xticklabels(groups, fontsize=8)
        unit = entries[0].unit
        axis.set_ylabel({"s": "ms (lower is better)", "MB": "MB (lower is better)"}.get(unit, unit))
        if unit != "MB":
            axis.set_yscale("log")
        axis.set_title(f"{workload} [{case}]", fontsize=10)
        axis.legend(fontsize=6)
    figure.suptitle(
        "raftstore bench: bars = raftstore engine/codec, hatched = the raw binding doing"
        " the same work"
    )
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    figure.savefig(path, dpi=110)
    plt.close(figure)


_CODEC_COLORS = {"msgpack": "tab:blue", "pickle": "tab:orange", "cbor": "tab:green"}
_BASELINE_COLORS = {
    "FileJournal": "tab:red",
    "MemoryJournal": "tab:pink",
    "fsync floor (1 fsync per call)": "black",
}


def _series_color(name: str) -> str:
    codec = name.removeprefix("raw ").strip("()")
    return _CODEC_COLORS.get(codec) or _BASELINE_COLORS.get(name, "tab:gray")


def _group(result: Result) -> str:
    if result.kind in ("pysyncobj", "fsync"):
        return result.kind
    return str(result.engine)


def _group_order(group: str) -> tuple[int, str]:
    order = {"lmdb": 0, "rocksdb": 1, "leveldb": 2, "memory": 3, "pysyncobj": 4, "fsync": 5}
    return order.get(group, 9), group


def _series(result: Result) -> str:
    if result.kind == "raftstore":
        return str(result.codec)
    if result.kind == "raw":
        return f"raw ({result.codec})"
    return result.subject.replace("pysyncobj ", "")


def _series_order(name: str) -> tuple[int, int, str]:
    codec = name.removeprefix("raw ").strip("()")
    codecs = list(_CODEC_COLORS)
    if codec in codecs:
        return 0, 2 * codecs.index(codec) + name.startswith("raw "), name
    return (1 if name.startswith("raw ") or codec not in _BASELINE_COLORS else 2), 0, name


def environment() -> dict[str, Any]:
    """The machine and library versions a report was measured with."""
    versions: dict[str, str | None] = {}
    for package in ("raftstore", "lmdb", "rocksdict", "plyvel", "msgpack", "cbor2", "pysyncobj"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        import lmdb

        versions["LMDB (C)"] = ".".join(str(part) for part in lmdb.version())
    except ImportError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = 0
    with contextlib.suppress(ValueError, OSError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "versions": versions,
    }


# -- entry points ---------------------------------------------------------------------------------


def run_benchmarks(config: BenchConfig, *, progress: TextIO | None = None) -> Report:
    """Run *config*'s matrix and return every figure with its ratios and the targets."""
    began = time.monotonic()
    runner = _Runner(config, progress)
    results = runner.run()
    report = Report(
        results=results,
        environment=environment(),
        settings={
            "engines": config.engines,
            "codecs": config.codecs,
            "workloads": config.workloads,
            "syncs": config.syncs,
            "sizes": asdict(config.sizes),
            "ladder_codecs": config.ladder_codecs,
            "baselines": config.baselines,
            "clock": config.clock,
        },
    )
    report.targets = evaluate_targets(results)
    report.seconds = time.monotonic() - began
    return report


def _names(
    text: str | None, known: Sequence[str], what: str, error: type[RaftStoreError]
) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise error(f"bench: unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Build a `BenchConfig` from ``raftstore bench`` arguments.

    Raises `UnknownEngineError` / `UnknownCodecError` for a name nobody registered,
    `EngineUnavailableError` for one whose package is missing and `ConfigurationError`
    for an unknown workload (the CLI turns them into its documented exit codes).
    """
    engines_info = {info.name: info for info in raftstore.available_engines()}
    codecs_info = {info.name: info for info in raftstore.available_codecs()}
    engines = _names(args.engines, list(engines_info), "engine", UnknownEngineError) or [
        name for name, info in engines_info.items() if info.available
    ]
    codecs = _names(args.codecs, list(codecs_info), "codec", UnknownCodecError) or [
        name for name, info in codecs_info.items() if info.available
    ]
    for name in engines:
        if not engines_info[name].available:
            raise EngineUnavailableError(
                f"bench: engine {name!r} is not available here: {engines_info[name].install_hint}"
            )
    for name in codecs:
        if not codecs_info[name].available:
            raise EngineUnavailableError(
                f"bench: codec {name!r} is not available here: {codecs_info[name].install_hint}"
            )
    workloads = _names(args.workloads, list(WORKLOADS), "workload", ConfigurationError) or list(
        WORKLOADS
    )
    syncs = [True, False] if args.sync is None else [args.sync]
    sizes = QUICK if args.quick else FULL
    if getattr(args, "smoke", False):
        sizes = SMOKE
    ladder = [codec for codec in codecs if codec == raftstore.DEFAULT_CODEC] or codecs[:1]
    return BenchConfig(
        engines=engines,
        codecs=codecs,
        workloads=workloads,
        syncs=syncs,
        sizes=sizes,
        ladder_codecs=ladder,
        baselines=not args.no_baselines,
        directory=args.dir,
        clock=args.clock,
    )


def run(args: argparse.Namespace) -> int:
    """``raftstore bench``: run, print the tables and targets, write JSON / plot."""
    config = config_from_args(args)
    if args.plot is not None and not _have("matplotlib"):
        print(
            "raftstore bench: --plot needs matplotlib: pip install 'raftstore[plot]'",
            file=sys.stderr,
        )
        return 2
    print(
        f"raftstore bench ({config.sizes.name}): engines {', '.join(config.engines)};"
        f" codecs {', '.join(config.codecs)}; sync {config.syncs}; clock {config.clock}",
        flush=True,
    )
    report = run_benchmarks(config, progress=sys.stderr)
    print()
    print(format_tables(report.results))
    print()
    print(format_targets(report.targets))
    print(f"\n{len(report.results)} figures in {report.seconds:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot is not None:
        write_plot(report.results, args.plot)
        print(f"wrote {args.plot}")
    return 0


def add_subcommand(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` to the ``raftstore`` command's subparsers."""
    bench = commands.add_parser(
        "bench",
        help="benchmark every engine x codec against the raw engines and PySyncObj",
        description=(
            "Benchmark raftstore engines x codecs on Raft-shaped workloads, side by side"
            " with the raw engine bindings, PySyncObj's journals and the fsync floor."
            f" Workloads: {', '.join(WORKLOADS)}."
        ),
        epilog=(
            "example:\n  raftstore bench --quick\n"
            "  raftstore bench --engines lmdb,rocksdb --codecs msgpack --json out.json"
            " --plot out.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--engines", help="comma-separated engines (default: every available one)")
    bench.add_argument("--codecs", help="comma-separated codecs (default: every available one)")
    bench.add_argument(
        "--workloads", help=f"comma-separated workloads (default: all): {', '.join(WORKLOADS)}"
    )
    bench.add_argument(
        "--sync",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only synced (--sync) or unsynced (--no-sync) writes (default: both)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="small sizes and short rounds (about a minute)"
    )
    bench.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    bench.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the PySyncObj journals and the fsync floor (raw bindings always run)",
    )
    bench.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="time unsynced and read steps by wall time (default) or by this thread's CPU"
        " time (steadier on a busy machine; synced writes and reopen always use wall time)",
    )
    bench.add_argument("--json", type=Path, metavar="FILE", help="write every figure as JSON")
    bench.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="write grouped bar charts (needs matplotlib)"
    )
    bench.add_argument(
        "--dir", type=Path, metavar="DIR", help="where to put the stores (default: system temp)"
    )
    bench.set_defaults(func=run)
