"""Unit tests of `LevelDBEngine`: the shared `PrefixedEngineTests`, then its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import plyvel
import pytest
from prefixed_engine_support import OpenEngine, PrefixedEngineTests, index, log_keys, put_logs

import raftstore
from raftstore import Log
from raftstore.engines.base import LOGS, STABLE, WriteBatch
from raftstore.engines.leveldb import LevelDBEngine
from raftstore.errors import ConfigurationError, ReadOnlyError, StoreLockedError


def deleted_range_size(engine: LevelDBEngine, low: int, high: int) -> int:
    """Bytes LevelDB's table files hold between logs *low* and *high*, tombstones included."""
    native: Any = engine._db
    size: int = native.approximate_size(b"l" + index(low), b"l" + index(high))
    return size


class _CompactionFails:
    """Wraps a plyvel DB so that compact_range fails like an I/O error."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def __getattr__(self, name: str) -> Any:
        return getattr(self._native, name)

    def compact_range(self, **bounds: bytes) -> None:
        raise plyvel.IOError(b"IO error: injected")


class _RecordingBatches:
    """Wraps a plyvel DB: records each synced batch written in *events*.

    With *rotate*, the synced batch first makes LevelDB switch to a new log (as a batch
    finding the memtable full does), by writing past the write buffer unsynced.
    """

    def __init__(self, native: Any, events: list[str], *, rotate: bool = False) -> None:
        self._native = native
        self._events = events
        self._rotate = rotate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._native, name)

    def write_batch(self, *, sync: bool = False) -> Any:
        batch = self._native.write_batch(sync=sync)
        outer = self

        class Batch:
            def put(self, key: bytes, value: bytes) -> None:
                batch.put(key, value)

            def write(self) -> None:
                if sync and outer._rotate:
                    for n in range(2000):
                        outer._native.put(b"z%08d" % n, b"v" * 100)
                if sync:
                    outer._events.append("synced batch")
                batch.write()

        return Batch()


def recording_plyvel(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Make plyvel.DB record the keyword arguments it is opened with; return them."""
    given: dict[str, Any] = {}
    real_db = plyvel.DB

    def recording_db(name: str, **options: Any) -> Any:
        given.update(options)
        return real_db(name, **options)

    monkeypatch.setattr(plyvel, "DB", recording_db)
    return given


class TestLevelDBEngine(PrefixedEngineTests):
    """`LevelDBEngine` passes the shared engine tests, and these of its own."""

    engine_class = LevelDBEngine

    # -- range deletes and the compaction after them ---------------------------------------

    def test_prefix_delete_of_100k_compacts_the_deleted_range(self, engine: LevelDBEngine) -> None:
        for start in range(1, 100_011, 10_000):
            put_logs(engine, range(start, min(start + 10_000, 100_011)))
        engine.write(WriteBatch(deletes=[(LOGS, index(1), index(100_000))]))
        # Compacted: no table holds the 100k tombstones a seek would step over.
        assert deleted_range_size(engine, 1, 100_000) == 0
        assert engine.first_key(LOGS) == index(100_001)
        assert engine.first_key(LOGS, index(100_001)) == index(100_001)
        assert engine.last_key(LOGS) == index(100_010)
        assert engine.last_key(LOGS, index(100_000)) is None
        assert engine.scan(LOGS, b"", None, 1) == [(index(100_001), b"v100001")]

    def test_small_deletes_add_up_to_a_compaction(self, open_engine: OpenEngine) -> None:
        engine = open_engine(compact_after_deletes=1000)
        for start in range(1, 2001, 500):
            put_logs(engine, range(start, start + 500))
        put_logs(engine, [3000])
        engine.compact()
        engine.write(WriteBatch(deletes=[(LOGS, index(1), index(600))]))
        assert deleted_range_size(engine, 1, 600) > 0
        engine.write(WriteBatch(deletes=[(LOGS, index(601), index(1200))]))
        assert deleted_range_size(engine, 1, 1200) == 0
        assert engine.first_key(LOGS) == index(1201)

    def test_compaction_after_deletes_can_be_turned_off(self, open_engine: OpenEngine) -> None:
        engine = open_engine(compact_after_deletes=0)
        put_logs(engine, range(1, 20_011))
        engine.compact()
        engine.write(WriteBatch(deletes=[(LOGS, index(1), index(20_000))]))
        assert deleted_range_size(engine, 1, 20_000) > 0
        assert engine.first_key(LOGS) == index(20_001)

    def test_failed_compaction_after_a_delete_keeps_the_delete(
        self, open_engine: OpenEngine, caplog: pytest.LogCaptureFixture
    ) -> None:
        engine = open_engine(compact_after_deletes=10)
        put_logs(engine, range(1, 31))
        native = engine._db
        engine._db = _CompactionFails(native)
        try:
            engine.write(WriteBatch(deletes=[(LOGS, index(1), index(20))]))
        finally:
            engine._db = native
        assert log_keys(engine) == list(range(21, 31))
        assert "compaction after a delete failed" in caplog.text

    # -- read-only: emulated, never beside the writer ------------------------------------

    def test_read_only_is_emulated(self, open_engine: OpenEngine) -> None:
        writer = open_engine()
        put_logs(writer, [1, 2, 3])
        writer.write(WriteBatch(puts=[(STABLE, b"k", b"v")]))
        writer.close()
        reader = open_engine(read_only=True)
        assert log_keys(reader) == [1, 2, 3]
        assert reader.get(STABLE, b"k") == b"v"
        with pytest.raises(ReadOnlyError):
            reader.write(WriteBatch(puts=[(LOGS, index(4), b"x")]))
        reader.sync()
        reader.compact()
        reader.close()
        assert log_keys(open_engine()) == [1, 2, 3]

    def test_read_only_cannot_run_beside_the_writer(self, open_engine: OpenEngine) -> None:
        assert not LevelDBEngine.supports_read_only
        open_engine()
        with pytest.raises(StoreLockedError):
            open_engine(read_only=True)

    # -- sync: every log, not only the current one (issue 15 item 7) -----------------------

    def test_sync_fsyncs_rotated_logs_before_the_synced_batch(
        self, open_engine: OpenEngine, data_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A cut inside sync() must never leave the current log durable and a rotated one
        # not: later writes there, earlier ones missing, a hole in the middle of the log.
        engine = open_engine(write_buffer_size=64 * 1024)
        first_log = min(data_path.glob("*.log"))
        # ~200 KiB through a 64 KiB memtable: LevelDB switches logs, closing each unsynced.
        for start in range(1, 2001, 100):
            engine.write(
                WriteBatch(
                    puts=[(LOGS, index(n), b"%0100d" % n) for n in range(start, start + 100)]
                )
            )
        assert min(data_path.glob("*.log")) != first_log or len(list(data_path.glob("*.log"))) > 1
        events: list[str] = []
        real_fsync = os.fsync

        def recording_fsync(fd: int) -> None:
            events.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", recording_fsync)
        native = engine._db
        engine._db = _RecordingBatches(native, events)
        logs = sorted(str(path) for path in data_path.glob("*.log"))
        try:
            engine.sync()
        finally:
            engine._db = native
        assert "synced batch" in events, events
        before = events[: events.index("synced batch")]
        rotated = {log for log in logs[:-1] if Path(log).exists()}
        assert rotated <= set(before), (rotated, events)
        assert str(data_path) in before, events
        assert log_keys(engine) == list(range(1, 2001))

    def test_sync_fsyncs_a_log_rotated_by_its_own_batch(
        self, open_engine: OpenEngine, data_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The synced batch itself can switch memtables: the log it leaves behind is fsynced too.
        engine = open_engine(write_buffer_size=64 * 1024)
        events: list[str] = []
        native = engine._db
        rotating = _RecordingBatches(native, events, rotate=True)
        real_fsync = os.fsync

        def recording_fsync(fd: int) -> None:
            events.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)

        put_logs(engine, range(1, 11))
        old_log = max(data_path.glob("*.log"))
        monkeypatch.setattr(os, "fsync", recording_fsync)
        engine._db = rotating
        try:
            engine.sync()
        finally:
            engine._db = native
        assert max(data_path.glob("*.log")) != old_log, "the batch did not switch logs"
        after = events[events.index("synced batch") + 1 :]
        assert not old_log.exists() or str(old_log) in after, events
        assert str(data_path) in after, events

    # -- options -------------------------------------------------------------------------

    def test_options_reach_plyvel(
        self, open_engine: OpenEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        given = recording_plyvel(monkeypatch)
        engine = open_engine(
            write_buffer_size="1048576", block_cache_size=0, block_size=8192, compression="none"
        )
        put_logs(engine, [1])
        assert given["write_buffer_size"] == 1048576
        assert given["lru_cache_size"] == 0
        assert given["block_size"] == 8192
        assert given["compression"] is None
        assert given["create_if_missing"] is True

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("compression", "zstd"),
            ("compact_after_deletes", -1),
            ("max_open_files", 10),
            ("max_open_files", 2**40),
            ("block_size", 2**30),
            ("write_buffer_size", 2**31),
        ],
    )
    def test_bad_leveldb_options_are_refused(
        self, open_engine: OpenEngine, option: str, value: object
    ) -> None:
        with pytest.raises(ConfigurationError, match=option):
            open_engine(**{option: value})

    def test_url_options_through_open(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        given = recording_plyvel(monkeypatch)
        target = f"leveldb://{tmp_path / 'store'}?compression=none&write_buffer_size=2097152"
        with raftstore.open(target) as store:
            store.store_logs([Log(1, 1, data=b"x")])
        assert given["write_buffer_size"] == 2097152
        assert given["compression"] is None
