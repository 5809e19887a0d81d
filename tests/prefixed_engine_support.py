"""The engine-level tests every prefix-keyed engine (rocksdb, leveldb) passes alike.

`PrefixedEngineTests` is not collected here: each engine's test module
subclasses it (setting ``engine_class``) and adds the tests of what only that
engine does. The store contract is the conformance suite's.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import raftstore
from raftstore.engines._prefixed import PrefixedEngine
from raftstore.engines.base import LOGS, META, STABLE, Engine, WriteBatch
from raftstore.errors import (
    ConfigurationError,
    CorruptionError,
    InvalidArgumentError,
    RaftStoreError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StoreNotFoundError,
)
from raftstore.registry import coerce_options

MAX_KEY = b"\xff" * 8

#: ``open_engine(*, sync=False, read_only=False, path=None, **options)``.
OpenEngine = Callable[..., Any]


def index(number: int) -> bytes:
    return number.to_bytes(8, "big")


def put_logs(engine: PrefixedEngine[Any], numbers: range | list[int]) -> None:
    engine.write(WriteBatch(puts=[(LOGS, index(n), b"v%d" % n) for n in numbers]))


def log_keys(engine: PrefixedEngine[Any]) -> list[int]:
    return [int.from_bytes(key, "big") for key, _ in engine.scan(LOGS, b"", None, 10**9)]


class PrefixedEngineTests:
    """Tests of one prefix-keyed engine: subclass it in a test module and set ``engine_class``."""

    engine_class: ClassVar[type[PrefixedEngine[Any]]]

    @pytest.fixture
    def data_path(self, tmp_path: Path) -> Path:
        return tmp_path / "data"

    @pytest.fixture
    def open_engine(self, data_path: Path) -> Iterator[OpenEngine]:
        """Open engines on *data_path* (options as the store passes them); close them all after."""
        engine_class = self.engine_class
        engines: list[PrefixedEngine[Any]] = []

        def open_engine(
            *, sync: bool = False, read_only: bool = False, path: Path | None = None, **options: Any
        ) -> Any:
            engine = engine_class(
                data_path if path is None else path,
                sync=sync,
                read_only=read_only,
                options=coerce_options(engine_class.name, engine_class.options, options),
            )
            engines.append(engine)
            return engine

        yield open_engine
        for engine in engines:
            engine.close()

    @pytest.fixture
    def engine(self, open_engine: OpenEngine) -> Engine:
        engine: Engine = open_engine()
        return engine

    # -- reads and writes ----------------------------------------------------------

    def test_namespaces_are_separate(self, engine: Engine) -> None:
        engine.write(
            WriteBatch(
                puts=[
                    (LOGS, index(1), b"log"),
                    (STABLE, index(1), b"stable"),
                    (META, b"m", b"meta"),
                ]
            )
        )
        assert engine.get(LOGS, index(1)) == b"log"
        assert engine.get(STABLE, index(1)) == b"stable"
        assert engine.get(META, b"m") == b"meta"
        assert engine.get(META, index(1)) is None
        assert engine.first_key(LOGS) == engine.last_key(LOGS) == index(1)
        assert engine.scan(STABLE, b"", None, 10) == [(index(1), b"stable")]

    def test_empty_value_is_not_absent(self, engine: Engine) -> None:
        engine.write(WriteBatch(puts=[(STABLE, b"empty", b"")]))
        assert engine.get(STABLE, b"empty") == b""
        assert engine.get(STABLE, b"missing") is None

    def test_batch_applies_clears_then_deletes_then_puts(self, engine: Engine) -> None:
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

    def test_failed_batch_writes_nothing(self, engine: Engine) -> None:
        put_logs(engine, [1, 2, 3])
        bad_value: Any = 12345  # not bytes: the binding refuses it while building the batch
        with pytest.raises(StorageError) as caught:
            engine.write(
                WriteBatch(
                    deletes=[(LOGS, index(1), index(3))],
                    puts=[(LOGS, index(4), b"ok"), (LOGS, index(5), bad_value)],
                )
            )
        assert caught.value.__cause__ is not None
        assert log_keys(engine) == [1, 2, 3]

    def test_unknown_namespace_is_an_invalid_argument(self, engine: Engine) -> None:
        put_logs(engine, [1])
        with pytest.raises(InvalidArgumentError, match="unknown namespace 'nope'"):
            engine.write(WriteBatch(puts=[(LOGS, index(2), b"x"), ("nope", b"k", b"v")]))
        with pytest.raises(InvalidArgumentError):
            engine.get("nope", b"k")
        assert log_keys(engine) == [1]

    def test_large_batch_is_complete(self, engine: Engine) -> None:
        put_logs(engine, range(1, 50_001))
        assert engine.first_key(LOGS) == index(1)
        assert engine.last_key(LOGS) == index(50_000)
        assert len(engine.scan(LOGS, b"", None, 100_000)) == 50_000

    # -- inclusive range deletes -----------------------------------------------------

    def test_delete_range_is_inclusive_at_both_ends(self, engine: Engine) -> None:
        put_logs(engine, range(1, 11))
        engine.write(WriteBatch(deletes=[(LOGS, index(3), index(5))]))
        assert log_keys(engine) == [1, 2, 6, 7, 8, 9, 10]
        engine.write(WriteBatch(deletes=[(LOGS, index(7), index(7))]))
        assert log_keys(engine) == [1, 2, 6, 8, 9, 10]

    def test_delete_range_up_to_the_all_ff_key(self, engine: Engine) -> None:
        top = 2**64 - 1
        put_logs(engine, [1, 2**63, top - 1, top])
        engine.write(WriteBatch(deletes=[(LOGS, index(top - 1), MAX_KEY)]))
        assert log_keys(engine) == [1, 2**63]
        put_logs(engine, [top])
        engine.write(WriteBatch(deletes=[(LOGS, index(2), MAX_KEY)]))
        assert log_keys(engine) == [1]

    def test_delete_range_low_above_high_deletes_nothing(self, engine: Engine) -> None:
        put_logs(engine, range(1, 6))
        engine.write(WriteBatch(deletes=[(LOGS, index(4), index(2))]))
        assert log_keys(engine) == [1, 2, 3, 4, 5]

    def test_delete_range_spares_longer_keys_after_high(self, engine: Engine) -> None:
        keys = [b"a", b"a\x00", b"a\x00\x00", b"a\x01", b"b"]
        engine.write(WriteBatch(puts=[(STABLE, key, b"v") for key in keys]))
        engine.write(WriteBatch(deletes=[(STABLE, b"a", b"a\x00")]))
        assert [key for key, _ in engine.scan(STABLE, b"", None, 10)] == [
            b"a\x00\x00",
            b"a\x01",
            b"b",
        ]

    def test_clear_empties_only_its_namespace(self, engine: Engine) -> None:
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

    def test_first_and_last_key_respect_bounds(self, engine: Engine) -> None:
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

    def test_scan_bounds_and_limit(self, engine: Engine) -> None:
        put_logs(engine, range(1, 21))
        assert [n for n in range(3, 8)] == [
            int.from_bytes(k, "big") for k, _ in engine.scan(LOGS, index(3), index(7), 100)
        ]
        assert engine.scan(LOGS, index(3), index(7), 2) == [(index(3), b"v3"), (index(4), b"v4")]
        assert engine.scan(LOGS, index(3), index(7), 0) == []
        assert engine.scan(LOGS, index(8), index(7), 10) == []
        assert len(engine.scan(LOGS, index(15), None, 100)) == 6
        assert engine.scan(LOGS, index(20), MAX_KEY, 100) == [(index(20), b"v20")]

    def test_seeks_after_prefix_delete_and_reopen(self, open_engine: OpenEngine) -> None:
        engine = open_engine()
        put_logs(engine, range(1, 100_011))
        engine.write(WriteBatch(deletes=[(LOGS, index(1), index(100_000))]))
        engine.close()
        reopened = open_engine()
        assert reopened.first_key(LOGS) == index(100_001)
        assert reopened.last_key(LOGS) == index(100_010)

    # -- durability, compaction, disk usage --------------------------------------------

    @pytest.mark.parametrize("sync", [True, False])
    def test_writes_survive_close_and_reopen(self, open_engine: OpenEngine, sync: bool) -> None:
        engine = open_engine(sync=sync)
        put_logs(engine, range(1, 101))
        engine.write(WriteBatch(deletes=[(LOGS, index(1), index(10))]))
        engine.sync()
        engine.close()
        reopened = open_engine(sync=sync)
        assert log_keys(reopened) == list(range(11, 101))

    def test_compact_gives_space_back(self, engine: Engine) -> None:
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

    # -- read-only, locking and errors --------------------------------------------------

    def test_read_only_open_of_missing_database(
        self, open_engine: OpenEngine, data_path: Path
    ) -> None:
        with pytest.raises(StoreNotFoundError, match=str(data_path)):
            open_engine(read_only=True)
        assert not data_path.exists()

    def test_second_open_is_locked_and_close_releases(
        self, open_engine: OpenEngine, data_path: Path
    ) -> None:
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

    def test_open_held_by_another_process_is_locked(
        self, open_engine: OpenEngine, data_path: Path
    ) -> None:
        open_engine()
        name = self.engine_class.__name__
        script = (
            "import sys\n"
            "from pathlib import Path\n"
            f"from {self.engine_class.__module__} import {name}\n"
            "from raftstore.errors import StoreLockedError\n"
            f"options = {{name: option.default for name, option in {name}.options.items()}}\n"
            "try:\n"
            f"    {name}(Path(sys.argv[1]), sync=True, read_only=False, options=options)\n"
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

    def test_native_corruption_is_wrapped(self, open_engine: OpenEngine, data_path: Path) -> None:
        open_engine().close()
        (data_path / "CURRENT").write_bytes(b"garbage")
        with pytest.raises(CorruptionError, match=f"{self.engine_class.name} open") as caught:
            open_engine()
        assert caught.value.__cause__ is not None

    def test_native_io_error_is_wrapped(self, tmp_path: Path, open_engine: OpenEngine) -> None:
        blocker = tmp_path / "file"
        blocker.write_bytes(b"not a directory")
        with pytest.raises(StorageError) as caught:
            open_engine(path=blocker / "data")
        assert caught.value.__cause__ is not None

    def test_use_after_close_is_a_closed_error(self, engine: Engine) -> None:
        engine.close()
        engine.close()
        with pytest.raises(StoreClosedError):
            engine.get(LOGS, index(1))
        with pytest.raises(StoreClosedError):
            engine.write(WriteBatch(puts=[(LOGS, index(1), b"x")]))

    def test_needs_a_path(
        self,
    ) -> None:
        options = coerce_options(self.engine_class.name, self.engine_class.options, {})
        with pytest.raises(ConfigurationError, match="path"):
            self.engine_class(None, sync=True, read_only=False, options=options)

    # -- options -------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("write_buffer_size", 1024),
            ("write_buffer_size", "lots"),
            ("block_cache_size", 2**64),
            ("block_cache_size", -1),
            ("no_such_option", 1),
        ],
    )
    def test_bad_options_are_refused(
        self, open_engine: OpenEngine, option: str, value: object
    ) -> None:
        with pytest.raises(ConfigurationError, match=option):
            open_engine(**{option: value})
