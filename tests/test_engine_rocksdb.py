"""Unit tests of `RocksDBEngine`: the shared `PrefixedEngineTests`, then its own."""

from __future__ import annotations

import gc
import tempfile
import weakref
from pathlib import Path

import pytest
import rocksdict
from prefixed_engine_support import OpenEngine, PrefixedEngineTests, index, log_keys, put_logs

import raftstore
from raftstore import Log
from raftstore.engines.base import LOGS, STABLE, WriteBatch
from raftstore.engines.rocksdb import RocksDBEngine
from raftstore.errors import ConfigurationError, ReadOnlyError
from raftstore.registry import coerce_options


class TestRocksDBEngine(PrefixedEngineTests):
    """`RocksDBEngine` passes the shared engine tests, and these of its own."""

    engine_class = RocksDBEngine

    # -- range deletes -------------------------------------------------------------------

    def test_prefix_delete_of_100k_uses_one_range_tombstone(self, engine: RocksDBEngine) -> None:
        put_logs(engine, range(1, 100_011))
        engine.write(WriteBatch(deletes=[(LOGS, index(1), index(100_000))]))
        # A point delete per key would leave 100k tombstones for every seek to step over.
        native: rocksdict.Rdict = engine._db  # type: ignore[assignment]
        assert native.property_int_value("rocksdb.num-deletes-active-mem-table") == 0
        assert engine.first_key(LOGS) == index(100_001)
        assert engine.first_key(LOGS, index(100_001)) == index(100_001)
        assert engine.last_key(LOGS) == index(100_010)
        assert engine.last_key(LOGS, index(100_000)) is None
        assert engine.scan(LOGS, b"", None, 1) == [(index(100_001), b"v100001")]

    # -- read-only: a secondary instance beside the writer --------------------------------

    def test_read_only_runs_beside_the_writer(self, open_engine: OpenEngine) -> None:
        writer = open_engine()
        put_logs(writer, [1, 2, 3])
        writer.write(WriteBatch(puts=[(STABLE, b"k", b"v")]))
        reader = open_engine(read_only=True)
        assert log_keys(reader) == [1, 2, 3]
        assert reader.get(STABLE, b"k") == b"v"
        with pytest.raises(ReadOnlyError):
            reader.write(WriteBatch(puts=[(LOGS, index(4), b"x")]))
        reader.sync()
        reader.compact()
        assert log_keys(writer) == [1, 2, 3]

    def test_read_only_sees_the_writers_later_batches(self, open_engine: OpenEngine) -> None:
        writer = open_engine()
        put_logs(writer, range(1, 11))
        reader = open_engine(read_only=True)
        writer.write(
            WriteBatch(deletes=[(LOGS, index(1), index(5))], puts=[(LOGS, index(11), b"v")])
        )
        assert reader.first_key(LOGS) == index(6)
        assert reader.last_key(LOGS) == index(11)
        assert reader.get(LOGS, index(11)) == b"v"
        writer.compact()  # table files the reader has open are replaced
        put_logs(writer, [12])
        writer.close()
        assert log_keys(reader) == [6, 7, 8, 9, 10, 11, 12]

    def test_read_only_leaves_no_file_anywhere(
        self, open_engine: OpenEngine, data_path: Path
    ) -> None:
        # Issue 11 case 6: secondary instances left reader directories in the temp directory.
        put_logs(open_engine(), [1])
        temp = Path(tempfile.gettempdir())
        temp_before = {p.name for p in temp.iterdir() if "raftstore-rocksdb" in p.name}
        before = {p.name: p.read_bytes() for p in data_path.iterdir()}
        reader = open_engine(read_only=True)
        assert log_keys(reader) == [1]
        reader.close()
        assert {p.name for p in temp.iterdir() if "raftstore-rocksdb" in p.name} <= temp_before
        assert {p.name: p.read_bytes() for p in data_path.iterdir()} == before

    def test_read_only_never_closed_is_released_when_collected(self, data_path: Path) -> None:
        options = coerce_options("rocksdb", RocksDBEngine.options, {})
        writer = RocksDBEngine(data_path, sync=False, read_only=False, options=options)
        try:
            put_logs(writer, [1])
            reader = RocksDBEngine(data_path, sync=False, read_only=True, options=options)
            assert reader.get(LOGS, index(1)) == b"v1"
            probe = weakref.ref(reader)
            del reader
            gc.collect()
            assert probe() is None
        finally:
            writer.close()

    def test_read_only_reopens_only_when_the_writer_wrote(self, open_engine: OpenEngine) -> None:
        writer = open_engine()
        put_logs(writer, [1])
        reader = open_engine(read_only=True)
        native = reader._db
        assert log_keys(reader) == [1]
        assert reader._db is native  # nothing new: the same handle
        put_logs(writer, [2])
        assert log_keys(reader) == [1, 2]
        assert reader._db is not native

    # -- options -------------------------------------------------------------------------

    def test_options_reach_rocksdb(self, open_engine: OpenEngine, data_path: Path) -> None:
        engine = open_engine(write_buffer_size="1048576", compression="zstd", block_cache_size=0)
        put_logs(engine, [1])
        written = "\n".join(path.read_text() for path in data_path.glob("OPTIONS-*"))
        assert "write_buffer_size=1048576" in written
        assert "compression=kZSTD" in written

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("compression", "brotli"),
            ("max_background_jobs", 0),
            ("max_background_jobs", 200_000),
            ("write_buffer_size", 2**40),
        ],
    )
    def test_bad_rocksdb_options_are_refused(
        self, open_engine: OpenEngine, option: str, value: object
    ) -> None:
        with pytest.raises(ConfigurationError, match=option):
            open_engine(**{option: value})

    def test_url_options_through_open(self, tmp_path: Path) -> None:
        target = f"rocksdb://{tmp_path / 'store'}?compression=lz4&write_buffer_size=2097152"
        with raftstore.open(target) as store:
            store.store_logs([Log(1, 1, data=b"x")])
        written = "\n".join(p.read_text() for p in (tmp_path / "store" / "data").glob("OPTIONS-*"))
        assert "write_buffer_size=2097152" in written
        assert "compression=kLZ4Compression" in written
