"""Unit tests of `RocksDBEngine` on its own; the store contract is the conformance suite's."""

from __future__ import annotations

import gc
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rocksdict

import raftstore
from raftstore import Log
from raftstore.engines.base import LOGS, META, STABLE, WriteBatch
from raftstore.engines.rocksdb import RocksDBEngine
from raftstore.errors import (
    ConfigurationError,
    CorruptionError,
    InvalidArgumentError,
    RaftStoreError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StoreNotFoundError,
)
from raftstore.registry import coerce_options

MAX_KEY = b"\xff" * 8

OpenEngine = Callable[..., RocksDBEngine]


def index(number: int) -> bytes:
    return number.to_bytes(8, "big")


@pytest.fixture
def data_path(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_engine(data_path: Path) -> Iterator[OpenEngine]:
    """Open engines on *data_path* (options as the store passes them); close them all at the end."""
    engines: list[RocksDBEngine] = []

    def open_engine(
        *, sync: bool = False, read_only: bool = False, path: Path | None = None, **options: Any
    ) -> RocksDBEngine:
        engine = RocksDBEngine(
            data_path if path is None else path,
            sync=sync,
            read_only=read_only,
            options=coerce_options("rocksdb", RocksDBEngine.options, options),
        )
        engines.append(engine)
        return engine

    yield open_engine
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(open_engine: OpenEngine) -> RocksDBEngine:
    return open_engine()


def put_logs(engine: RocksDBEngine, numbers: range | list[int]) -> None:
    engine.write(WriteBatch(puts=[(LOGS, index(n), b"v%d" % n) for n in numbers]))


def log_keys(engine: RocksDBEngine) -> list[int]:
    return [int.from_bytes(key, "big") for key, _ in engine.scan(LOGS, b"", None, 10**9)]


# -- reads and writes ----------------------------------------------------------


def test_namespaces_are_separate(engine: RocksDBEngine) -> None:
    engine.write(
        WriteBatch(
            puts=[(LOGS, index(1), b"log"), (STABLE, index(1), b"stable"), (META, b"m", b"meta")]
        )
    )
    assert engine.get(LOGS, index(1)) == b"log"
    assert engine.get(STABLE, index(1)) == b"stable"
    assert engine.get(META, b"m") == b"meta"
    assert engine.get(META, index(1)) is None
    assert engine.first_key(LOGS) == engine.last_key(LOGS) == index(1)
    assert engine.scan(STABLE, b"", None, 10) == [(index(1), b"stable")]


def test_empty_value_is_not_absent(engine: RocksDBEngine) -> None:
    engine.write(WriteBatch(puts=[(STABLE, b"empty", b"")]))
    assert engine.get(STABLE, b"empty") == b""
    assert engine.get(STABLE, b"missing") is None


def test_batch_applies_clears_then_deletes_then_puts(engine: RocksDBEngine) -> None:
    put_logs(engine, range(1, 11))
    engine.write(WriteBatch(puts=[(STABLE, b"kept", b"1"), (STABLE, b"gone", b"1")]))
    engine.write(
        WriteBatch(
            clears=[STABLE],
            deletes=[(LOGS, index(3), index(6))],
            puts=[
                (LOGS, index(4), b"first"),
                (LOGS, index(4), b"later wins"),
                (STABLE, b"kept", b"2"),
            ],
        )
    )
    assert log_keys(engine) == [1, 2, 4, 7, 8, 9, 10]
    assert engine.get(LOGS, index(4)) == b"later wins"
    assert engine.scan(STABLE, b"", None, 10) == [(b"kept", b"2")]


def test_failed_batch_writes_nothing(engine: RocksDBEngine) -> None:
    put_logs(engine, [1, 2, 3])
    bad_value: Any = 12345  # not bytes: rocksdict refuses it while building the batch
    with pytest.raises(StorageError) as caught:
        engine.write(
            WriteBatch(
                deletes=[(LOGS, index(1), index(3))],
                puts=[(LOGS, index(4), b"ok"), (LOGS, index(5), bad_value)],
            )
        )
    assert caught.value.__cause__ is not None
    assert log_keys(engine) == [1, 2, 3]


def test_unknown_namespace_is_an_invalid_argument(engine: RocksDBEngine) -> None:
    put_logs(engine, [1])
    with pytest.raises(InvalidArgumentError, match="unknown namespace 'nope'"):
        engine.write(WriteBatch(puts=[(LOGS, index(2), b"x"), ("nope", b"k", b"v")]))
    with pytest.raises(InvalidArgumentError):
        engine.get("nope", b"k")
    assert log_keys(engine) == [1]


def test_large_batch_is_complete(engine: RocksDBEngine) -> None:
    put_logs(engine, range(1, 50_001))
    assert engine.first_key(LOGS) == index(1)
    assert engine.last_key(LOGS) == index(50_000)
    assert len(engine.scan(LOGS, b"", None, 100_000)) == 50_000


# -- inclusive range deletes -----------------------------------------------------


def test_delete_range_is_inclusive_at_both_ends(engine: RocksDBEngine) -> None:
    put_logs(engine, range(1, 11))
    engine.write(WriteBatch(deletes=[(LOGS, index(3), index(5))]))
    assert log_keys(engine) == [1, 2, 6, 7, 8, 9, 10]
    engine.write(WriteBatch(deletes=[(LOGS, index(7), index(7))]))
    assert log_keys(engine) == [1, 2, 6, 8, 9, 10]


def test_delete_range_up_to_the_all_ff_key(engine: RocksDBEngine) -> None:
    top = 2**64 - 1
    put_logs(engine, [1, 2**63, top - 1, top])
    engine.write(WriteBatch(deletes=[(LOGS, index(top - 1), MAX_KEY)]))
    assert log_keys(engine) == [1, 2**63]
    put_logs(engine, [top])
    engine.write(WriteBatch(deletes=[(LOGS, index(2), MAX_KEY)]))
    assert log_keys(engine) == [1]


def test_delete_range_low_above_high_deletes_nothing(engine: RocksDBEngine) -> None:
    put_logs(engine, range(1, 6))
    engine.write(WriteBatch(deletes=[(LOGS, index(4), index(2))]))
    assert log_keys(engine) == [1, 2, 3, 4, 5]


def test_delete_range_spares_longer_keys_after_high(engine: RocksDBEngine) -> None:
    keys = [b"a", b"a\x00", b"a\x00\x00", b"a\x01", b"b"]
    engine.write(WriteBatch(puts=[(STABLE, key, b"v") for key in keys]))
    engine.write(WriteBatch(deletes=[(STABLE, b"a", b"a\x00")]))
    assert [key for key, _ in engine.scan(STABLE, b"", None, 10)] == [b"a\x00\x00", b"a\x01", b"b"]


def test_clear_empties_only_its_namespace(engine: RocksDBEngine) -> None:
    put_logs(engine, [1, 2**64 - 1])
    engine.write(WriteBatch(puts=[(STABLE, b"\xff" * 100, b"long"), (META, b"m", b"meta")]))
    engine.write(WriteBatch(clears=[STABLE]))
    assert engine.first_key(STABLE) is None
    assert log_keys(engine) == [1, 2**64 - 1]
    assert engine.get(META, b"m") == b"meta"
    engine.write(WriteBatch(clears=[LOGS]))
    assert engine.first_key(LOGS) is None
    assert engine.last_key(LOGS) is None


# -- seeks and scans ---------------------------------------------------------------


def test_first_and_last_key_respect_bounds(engine: RocksDBEngine) -> None:
    assert engine.first_key(LOGS) is None
    assert engine.last_key(LOGS) is None
    engine.write(WriteBatch(puts=[(META, b"m", b"meta"), (STABLE, b"s", b"stable")]))
    assert engine.first_key(LOGS) is None  # the meta and stable keys sort after the logs
    assert engine.last_key(LOGS) is None
    put_logs(engine, [5, 10, 2**64 - 1])
    assert engine.first_key(LOGS, index(6)) == index(10)
    assert engine.first_key(LOGS, index(10)) == index(10)
    assert engine.first_key(LOGS, index(2**64 - 1)) == MAX_KEY
    assert engine.first_key(LOGS, MAX_KEY + b"\x00") is None
    assert engine.last_key(LOGS, index(9)) == index(5)
    assert engine.last_key(LOGS, index(10)) == index(10)
    assert engine.last_key(LOGS, index(4)) is None
    assert engine.last_key(LOGS, MAX_KEY) == MAX_KEY
    assert engine.last_key(LOGS) == MAX_KEY


def test_scan_bounds_and_limit(engine: RocksDBEngine) -> None:
    put_logs(engine, range(1, 21))
    assert [n for n in range(3, 8)] == [
        int.from_bytes(k, "big") for k, _ in engine.scan(LOGS, index(3), index(7), 100)
    ]
    assert engine.scan(LOGS, index(3), index(7), 2) == [(index(3), b"v3"), (index(4), b"v4")]
    assert engine.scan(LOGS, index(3), index(7), 0) == []
    assert engine.scan(LOGS, index(8), index(7), 10) == []
    assert len(engine.scan(LOGS, index(15), None, 100)) == 6
    assert engine.scan(LOGS, index(20), MAX_KEY, 100) == [(index(20), b"v20")]


def test_prefix_delete_of_100k_uses_one_range_tombstone(engine: RocksDBEngine) -> None:
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


def test_seeks_after_prefix_delete_and_reopen(open_engine: OpenEngine) -> None:
    engine = open_engine()
    put_logs(engine, range(1, 100_011))
    engine.write(WriteBatch(deletes=[(LOGS, index(1), index(100_000))]))
    engine.close()
    reopened = open_engine()
    assert reopened.first_key(LOGS) == index(100_001)
    assert reopened.last_key(LOGS) == index(100_010)


# -- durability, compaction, disk usage --------------------------------------------


@pytest.mark.parametrize("sync", [True, False])
def test_writes_survive_close_and_reopen(open_engine: OpenEngine, sync: bool) -> None:
    engine = open_engine(sync=sync)
    put_logs(engine, range(1, 101))
    engine.write(WriteBatch(deletes=[(LOGS, index(1), index(10))]))
    engine.sync()
    engine.close()
    reopened = open_engine(sync=sync)
    assert log_keys(reopened) == list(range(11, 101))


def test_compact_gives_space_back(engine: RocksDBEngine) -> None:
    randbytes = random.Random(0).randbytes  # incompressible values, 4 KiB each
    for start in range(1, 4001, 500):
        puts = [(LOGS, index(n), randbytes(4096)) for n in range(start, start + 500)]
        engine.write(WriteBatch(puts=puts))
    engine.compact()
    full = engine.disk_usage()
    assert full > 4000 * 4096 // 2
    engine.write(WriteBatch(deletes=[(LOGS, index(1), index(3999))]))
    engine.compact()
    assert engine.disk_usage() < full // 4
    assert log_keys(engine) == [4000]


# -- read-only -----------------------------------------------------------------------


def test_read_only_runs_beside_the_writer(open_engine: OpenEngine) -> None:
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


def test_read_only_sees_the_writers_later_batches(open_engine: OpenEngine) -> None:
    writer = open_engine()
    put_logs(writer, range(1, 11))
    reader = open_engine(read_only=True)
    writer.write(WriteBatch(deletes=[(LOGS, index(1), index(5))], puts=[(LOGS, index(11), b"v")]))
    assert reader.first_key(LOGS) == index(6)
    assert reader.last_key(LOGS) == index(11)
    assert reader.get(LOGS, index(11)) == b"v"
    writer.compact()  # table files the reader has open are replaced
    put_logs(writer, [12])
    writer.close()
    assert log_keys(reader) == [6, 7, 8, 9, 10, 11, 12]


def test_read_only_cleans_up_after_itself(open_engine: OpenEngine, data_path: Path) -> None:
    put_logs(open_engine(), [1])
    before = sorted(path.name for path in data_path.iterdir())
    reader = open_engine(read_only=True)
    reader_dir = Path(reader._secondary_dir or "")
    assert reader_dir.is_dir()
    reader.close()
    assert not reader_dir.exists()
    assert sorted(path.name for path in data_path.iterdir()) == before


def test_read_only_never_closed_cleans_up_when_collected(data_path: Path) -> None:
    options = coerce_options("rocksdb", RocksDBEngine.options, {})
    writer = RocksDBEngine(data_path, sync=False, read_only=False, options=options)
    try:
        put_logs(writer, [1])
        reader = RocksDBEngine(data_path, sync=False, read_only=True, options=options)
        reader_dir = Path(reader._secondary_dir or "")
        assert reader.get(LOGS, index(1)) == b"v1"
        del reader
        gc.collect()
        assert not reader_dir.exists()
    finally:
        writer.close()


def test_read_only_open_of_missing_database(open_engine: OpenEngine, data_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match=str(data_path)):
        open_engine(read_only=True)
    assert not data_path.exists()


# -- locking and errors --------------------------------------------------------------


def test_second_open_is_locked_and_close_releases(open_engine: OpenEngine, data_path: Path) -> None:
    first = open_engine()
    put_logs(first, [1, 2])
    with pytest.raises(StoreLockedError, match=str(data_path)) as caught:
        open_engine()
    assert isinstance(caught.value.__cause__, Exception)
    assert not isinstance(caught.value.__cause__, RaftStoreError)
    # Every read leaves no iterator behind (a live one would keep the LOCK).
    first.scan(LOGS, b"", None, 10)
    first.first_key(LOGS)
    first.last_key(LOGS, index(1))
    first.close()
    second = open_engine()
    assert log_keys(second) == [1, 2]


def test_open_held_by_another_process_is_locked(open_engine: OpenEngine, data_path: Path) -> None:
    open_engine()
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from raftstore.engines.rocksdb import RocksDBEngine\n"
        "from raftstore.errors import StoreLockedError\n"
        "options = {name: option.default for name, option in RocksDBEngine.options.items()}\n"
        "try:\n"
        "    RocksDBEngine(Path(sys.argv[1]), sync=True, read_only=False, options=options)\n"
        "except StoreLockedError as exc:\n"
        "    print('locked', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(data_path)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(Path(raftstore.__file__).parent.parent)},
    )
    assert result.stdout.startswith("locked")
    assert str(data_path) in result.stdout


def test_native_corruption_is_wrapped(open_engine: OpenEngine, data_path: Path) -> None:
    open_engine().close()
    (data_path / "CURRENT").write_bytes(b"garbage")
    with pytest.raises(CorruptionError, match="rocksdb open") as caught:
        open_engine()
    assert caught.value.__cause__ is not None


def test_native_io_error_is_wrapped(tmp_path: Path, open_engine: OpenEngine) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(StorageError) as caught:
        open_engine(path=blocker / "data")
    assert caught.value.__cause__ is not None


def test_use_after_close_is_a_closed_error(engine: RocksDBEngine) -> None:
    engine.close()
    engine.close()
    with pytest.raises(StoreClosedError):
        engine.get(LOGS, index(1))
    with pytest.raises(StoreClosedError):
        engine.write(WriteBatch(puts=[(LOGS, index(1), b"x")]))


def test_needs_a_path() -> None:
    options = coerce_options("rocksdb", RocksDBEngine.options, {})
    with pytest.raises(ConfigurationError, match="path"):
        RocksDBEngine(None, sync=True, read_only=False, options=options)


# -- options -------------------------------------------------------------------------


def test_options_reach_rocksdb(open_engine: OpenEngine, data_path: Path) -> None:
    engine = open_engine(write_buffer_size="1048576", compression="zstd", block_cache_size=0)
    put_logs(engine, [1])
    written = "\n".join(path.read_text() for path in data_path.glob("OPTIONS-*"))
    assert "write_buffer_size=1048576" in written
    assert "compression=kZSTD" in written


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("compression", "brotli"),
        ("write_buffer_size", 1024),
        ("write_buffer_size", "lots"),
        ("max_background_jobs", 0),
        ("max_background_jobs", 200_000),
        ("write_buffer_size", 2**40),
        ("block_cache_size", 2**64),
        ("block_cache_size", -1),
        ("no_such_option", 1),
    ],
)
def test_bad_options_are_refused(open_engine: OpenEngine, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        open_engine(**{option: value})


def test_url_options_through_open(tmp_path: Path) -> None:
    target = f"rocksdb://{tmp_path / 'store'}?compression=lz4&write_buffer_size=2097152"
    with raftstore.open(target) as store:
        store.store_logs([Log(1, 1, data=b"x")])
    written = "\n".join(p.read_text() for p in (tmp_path / "store" / "data").glob("OPTIONS-*"))
    assert "write_buffer_size=2097152" in written
    assert "compression=kLZ4Compression" in written
