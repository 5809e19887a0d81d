"""Bad input, everywhere: every public call refuses it with a clear error and changes nothing.

- Every method of an open store, given wrong types and out-of-range
  values, raises `InvalidArgumentError` (a `RaftStoreError` that is also a
  `ValueError` and a `TypeError`), `InvalidLogError` for bad items in a
  batch, `LogNotFoundError` for ``get_log(0)``, and the store still holds
  exactly what it held before (compared in full), on every engine.
- Batches that fail part-way (a bad item at the end, a generator that
  raises) store nothing.
- ``raftstore.open`` refuses bad targets, engines, codecs and options with
  `ConfigurationError` (or the registry's lookup errors).
- Hypothesis fuzzes the codecs' decoders (arbitrary bytes give a `Log` or
  `CorruptionError`), the store's read path (forged records with a valid
  checksum), target parsing, and URL options (`ConfigurationError` or a
  working store). Examples are bounded and derandomized.
"""

from __future__ import annotations

import decimal
import fractions
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_state import state_of

import raftstore
from raftstore import (
    ConfigurationError,
    CorruptionError,
    InvalidArgumentError,
    InvalidLogError,
    Log,
    LogNotFoundError,
    LogType,
    RaftStore,
    RaftStoreError,
)
from raftstore.engines.base import LOGS, STABLE, WriteBatch
from raftstore.registry import create_codec
from raftstore.url import parse_target

ENGINES = ["memory", "lmdb", "rocksdb", "leveldb"]
CODECS = ["msgpack", "pickle", "cbor"]
#: Codecs fuzzed in this process. Pickle is fuzzed in a child with bounded
#: memory: a damaged pickle can make the C unpickler allocate gigabytes
#: (see test_the_pickle_decoder_does_not_allocate_gigabytes_for_a_tiny_record).
IN_PROCESS_CODECS = ["msgpack", "cbor"]
MAX = 2**64 - 1

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _usable(engine: str) -> str:
    for info in raftstore.available_engines():
        if info.name == engine and not info.available:
            pytest.skip(f"engine {engine!r} is not usable here: {info.error}")
    return engine


@pytest.fixture(scope="module", params=ENGINES)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RaftStore]:
    """One filled store per engine, shared by the module: no bad call may change it."""
    engine = _usable(str(request.param))
    if engine == "memory":
        handle = raftstore.open("memory://")
    else:
        handle = raftstore.open(tmp_path_factory.mktemp(engine) / "db", engine=engine)
    handle.store_logs([Log(i, 1, data=b"%d" % i) for i in range(1, 21)])
    handle.set(b"key", b"value")
    handle.set(b"empty", b"")
    handle.set_uint64(b"CurrentTerm", 5)
    yield handle
    handle.close()


class _Weird:
    """An object no method should accept."""

    def __repr__(self) -> str:
        return "<weird>"


class _IndexLike:
    """Has ``__index__`` (like numpy integers): still not an int to the store."""

    def __index__(self) -> int:
        return 3


#: Values that are not a uint64, by name.
BAD_UINT64: dict[str, object] = {
    "-1": -1,
    "-2**63": -(2**63),
    "2**64": 2**64,
    "2**100": 2**100,
    "str": "1",
    "bytes": b"\x01",
    "float": 1.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "decimal": decimal.Decimal(1),
    "fraction": fractions.Fraction(1, 1),
    "complex": 1j,
    "bool": True,
    "none": None,
    "list": [1],
    "index-like": _IndexLike(),
    "object": _Weird(),
}
#: Values that are not a stable key, by name.
BAD_KEYS: dict[str, object] = {
    "str": "key",
    "none": None,
    "int": 1,
    "empty": b"",
    "512-bytes": b"k" * 512,
    "list": [107],
    "object": _Weird(),
    "memoryview-empty": memoryview(b""),
}
#: Values that are not a stable value, by name.
BAD_VALUES: dict[str, object] = {
    "str": "value",
    "none": None,
    "int": 5,
    "list": [1, 2],
    "float": 1.5,
    "object": _Weird(),
}


def _bad_calls() -> Iterator[Any]:
    for name, value in BAD_UINT64.items():
        yield pytest.param(lambda s, v=value: s.get_log(v), id=f"get_log-{name}")
        yield pytest.param(lambda s, v=value: s.delete_range(v, 5), id=f"delete_range-min-{name}")
        yield pytest.param(lambda s, v=value: s.delete_range(1, v), id=f"delete_range-max-{name}")
        yield pytest.param(lambda s, v=value: list(s.iter_logs(v)), id=f"iter_logs-low-{name}")
        yield pytest.param(lambda s, v=value: list(s.iter_logs(1, v)), id=f"iter_logs-high-{name}")
        yield pytest.param(
            lambda s, v=value: s.set_uint64(b"CurrentTerm", v), id=f"set_uint64-{name}"
        )
    for name, key in BAD_KEYS.items():
        yield pytest.param(lambda s, k=key: s.set(k, b"v"), id=f"set-key-{name}")
        yield pytest.param(lambda s, k=key: s.get(k), id=f"get-key-{name}")
        yield pytest.param(lambda s, k=key: s.set_uint64(k, 1), id=f"set_uint64-key-{name}")
        yield pytest.param(lambda s, k=key: s.get_uint64(k), id=f"get_uint64-key-{name}")
    for name, value in BAD_VALUES.items():
        yield pytest.param(lambda s, v=value: s.set(b"key", v), id=f"set-value-{name}")


@pytest.mark.parametrize("call", list(_bad_calls()))
def test_a_bad_argument_raises_invalid_argument_and_changes_nothing(
    store: RaftStore, call: Callable[[RaftStore], object]
) -> None:
    before = state_of(store)
    with pytest.raises(InvalidArgumentError) as caught:
        call(store)
    error = caught.value
    assert isinstance(error, RaftStoreError)
    assert isinstance(error, ValueError)
    assert isinstance(error, TypeError)
    assert str(error), "the error says nothing"
    assert not store.closed
    assert state_of(store) == before


def _unchecked(*fields: Any, **named: Any) -> Log:
    return Log(*fields, **named)


class _LogSubclass(Log):
    pass


#: Items store_log / store_logs must refuse with InvalidLogError, by name.
BAD_ITEMS: dict[str, object] = {
    "none": None,
    "int": 21,
    "tuple": (21, 1),
    "dict": {"index": 21, "term": 1},
    "str": "log",
    "index-0": Log(0, 1),
    "index--1": Log(-1, 1),
    "index-2**64": Log(2**64, 1),
    "index-float": _unchecked(21.0, 1),
    "index-str": _unchecked("21", 1),
    "index-none": _unchecked(None, 1),
    "index-bool": _unchecked(True, 1),
    "term--1": Log(21, -1),
    "term-2**64": Log(21, 2**64),
    "term-none": _unchecked(21, None),
    "type-6": _unchecked(21, 1, type=6),
    "type--1": _unchecked(21, 1, type=-1),
    "type-str": _unchecked(21, 1, type="COMMAND"),
    "data-str": _unchecked(21, 1, data="x"),
    "data-none": _unchecked(21, 1, data=None),
    "data-bytearray": _unchecked(21, 1, data=bytearray(b"x")),
    "data-memoryview": _unchecked(21, 1, data=memoryview(b"x")),
    "data-list": _unchecked(21, 1, data=[1]),
    "extensions-str": _unchecked(21, 1, extensions="x"),
    "extensions-none": _unchecked(21, 1, extensions=None),
    "appended_at-2**63": Log(21, 1, appended_at=2**63),
    "appended_at-float": _unchecked(21, 1, appended_at=1.5),
    "appended_at-none": _unchecked(21, 1, appended_at=None),
}


@pytest.mark.parametrize("item", list(BAD_ITEMS.values()), ids=list(BAD_ITEMS))
def test_a_bad_log_is_refused_alone_or_anywhere_in_a_batch(store: RaftStore, item: object) -> None:
    before = state_of(store)
    with pytest.raises(InvalidLogError):
        store.store_log(item)  # type: ignore[arg-type]
    good = [Log(i, 2, data=b"new") for i in range(15, 30)]
    for position in (0, 7, len(good)):
        batch: list[object] = [*good[:position], item, *good[position:]]
        with pytest.raises(InvalidLogError, match=f"batch position {position}"):
            store.store_logs(batch)  # type: ignore[arg-type]
    assert state_of(store) == before


def test_a_log_subclass_is_stored_as_a_plain_log(tmp_path: Path) -> None:
    with raftstore.open("memory://") as store:
        store.store_log(_LogSubclass(1, 1, data=b"x"))
        got = store.get_log(1)
        assert type(got) is Log
        assert got == Log(1, 1, data=b"x")


def test_get_log_0_is_not_found(store: RaftStore) -> None:
    with pytest.raises(LogNotFoundError):
        store.get_log(0)
    with pytest.raises(KeyError):
        store.get_log(0)


def _raising_after(count: int, error: BaseException) -> Iterator[Log]:
    for index in range(21, 21 + count):
        yield Log(index, 1)
    raise error


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(None, id="none"),
        pytest.param(21, id="int"),
        pytest.param(Log(21, 1), id="a-single-log"),
        pytest.param(_Weird(), id="object"),
    ],
)
def test_store_logs_needs_an_iterable_of_logs(store: RaftStore, batch: object) -> None:
    before = state_of(store)
    with pytest.raises(InvalidArgumentError):
        store.store_logs(batch)  # type: ignore[arg-type]
    assert state_of(store) == before


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param("abc", id="str"),
        pytest.param(b"ab", id="bytes"),
        pytest.param({Log(21, 1): 1}, id="dict-of-logs"),
        pytest.param([[Log(21, 1)]], id="nested-list"),
    ],
)
def test_an_iterable_of_non_logs_is_refused(store: RaftStore, batch: object) -> None:
    before = state_of(store)
    if isinstance(batch, dict):
        store.store_logs(batch)  # iterating a dict gives its keys: valid logs
        store.delete_range(21, 21)
    else:
        with pytest.raises(InvalidLogError, match="batch position 0"):
            store.store_logs(batch)  # type: ignore[arg-type]
    assert state_of(store) == before


@pytest.mark.parametrize("count", [0, 1, 500])
def test_a_generator_that_raises_part_way_stores_nothing(store: RaftStore, count: int) -> None:
    before = state_of(store)
    with pytest.raises(InvalidArgumentError, match="nothing was stored") as caught:
        store.store_logs(_raising_after(count, OSError("source went away")))
    assert isinstance(caught.value.__cause__, OSError)
    # A raftstore error from the source passes through unchanged.
    with pytest.raises(CorruptionError, match="from the source"):
        store.store_logs(_raising_after(count, CorruptionError("from the source")))
    # KeyboardInterrupt is not an error to wrap, and leaves the store usable.
    with pytest.raises(KeyboardInterrupt):
        store.store_logs(_raising_after(count, KeyboardInterrupt()))
    assert state_of(store) == before


def test_a_large_batch_with_one_bad_entry_at_the_end_stores_nothing(store: RaftStore) -> None:
    before = state_of(store)
    batch: list[object] = [Log(i, 3, data=b"x" * 100) for i in range(21, 5021)]
    batch.append(Log(5021, 3, data="not bytes"))  # type: ignore[arg-type]
    with pytest.raises(InvalidLogError, match="batch position 5000"):
        store.store_logs(batch)  # type: ignore[arg-type]
    assert state_of(store) == before


def test_mutating_inputs_after_a_call_changes_nothing_stored(store: RaftStore) -> None:
    value = bytearray(b"original")
    store.set(b"mutable", value)
    value[:] = b"changed!"
    assert store.get(b"mutable") == b"original"
    view_source = bytearray(b"view")
    store.set(b"mutable", memoryview(view_source))
    view_source[:] = b"VIEW"
    assert store.get(b"mutable") == b"view"
    key = bytearray(b"bytearray-key")
    store.set(key, b"x")  # type: ignore[arg-type]  # bytes-like is accepted
    key[:] = b"other-key-xxx"
    assert store.get(b"bytearray-key") == b"x"
    store.set(b"mutable", b"done")


def test_closed_store_refuses_bad_and_good_calls_alike(tmp_path: Path) -> None:
    store = raftstore.open("memory://")
    store.close()
    for call in (
        lambda: store.get_log(1),
        lambda: store.store_logs([Log(1, 1)]),
        lambda: store.set(b"k", b"v"),
        lambda: store.sync(),
    ):
        with pytest.raises(raftstore.StoreClosedError):
            call()


# -- open() ------------------------------------------------------------------------


def _lmdb(tmp: Path) -> str:
    return f"lmdb://{tmp}/lmdb"


_OPEN_CALLS: list[Any] = [
    pytest.param(
        lambda tmp: raftstore.open(None),  # type: ignore[arg-type]
        ConfigurationError,
        id="target-none",
    ),
    pytest.param(
        lambda tmp: raftstore.open(5),  # type: ignore[arg-type]
        ConfigurationError,
        id="target-int",
    ),
    pytest.param(
        lambda tmp: raftstore.open(b"/tmp/x"),  # type: ignore[arg-type]
        ConfigurationError,
        id="target-bytes",
    ),
    pytest.param(
        lambda tmp: raftstore.open(""),
        ConfigurationError,
        id="target-empty",
    ),
    pytest.param(
        lambda tmp: raftstore.open(f"{tmp}/a\x00b"),
        ConfigurationError,
        id="target-nul",
    ),
    pytest.param(
        lambda tmp: raftstore.open(f"nosuch://{tmp}/x"),
        raftstore.UnknownEngineError,
        id="unknown-engine",
    ),
    pytest.param(
        lambda tmp: raftstore.open(tmp / "x", engine="nosuch"),
        raftstore.UnknownEngineError,
        id="unknown-engine-kw",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), engine="memory"),
        ConfigurationError,
        id="engine-conflict",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), codec="nosuch"),
        raftstore.UnknownCodecError,
        id="unknown-codec",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), codec=5),  # type: ignore[arg-type]
        ConfigurationError,
        id="codec-int",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), sync="yes"),  # type: ignore[arg-type]
        ConfigurationError,
        id="sync-str",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), sync=1),  # type: ignore[arg-type]
        ConfigurationError,
        id="sync-int",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), read_only=None),  # type: ignore[arg-type]
        ConfigurationError,
        id="read_only-none",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), mapsize=1),
        ConfigurationError,
        id="unknown-option",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp) + "?mapsize=1"),
        ConfigurationError,
        id="unknown-url-option",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), map_size="big"),
        ConfigurationError,
        id="option-type",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp) + "?map_size=big"),
        ConfigurationError,
        id="option-url-type",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), map_size=-1),
        ConfigurationError,
        id="option-range",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp), map_size=True),
        ConfigurationError,
        id="option-bool",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp) + "?map_size=2000000&map_size=3000000"),
        ConfigurationError,
        id="option-twice",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp) + "?map_size=2000000", map_size=3000000),
        ConfigurationError,
        id="option-url-and-kw",
    ),
    pytest.param(
        lambda tmp: raftstore.open(_lmdb(tmp) + "?sync=maybe"),
        ConfigurationError,
        id="sync-url-bad",
    ),
    pytest.param(
        lambda tmp: raftstore.open(f"memory://{tmp}/m"),
        ConfigurationError,
        id="memory-with-path",
    ),
    pytest.param(
        lambda tmp: raftstore.open("memory://", read_only=True),
        ConfigurationError,
        id="memory-read-only",
    ),
    pytest.param(
        lambda tmp: raftstore.open("lmdb://"),
        ConfigurationError,
        id="lmdb-without-path",
    ),
    pytest.param(
        lambda tmp: raftstore.open(tmp / "file", engine="lmdb"),
        ConfigurationError,
        id="path-is-a-file",
    ),
    pytest.param(
        lambda tmp: raftstore.open(tmp / "foreign", engine="lmdb"),
        ConfigurationError,
        id="foreign-directory",
    ),
    pytest.param(
        lambda tmp: raftstore.open(tmp / "missing", read_only=True),
        raftstore.StoreNotFoundError,
        id="read-only-missing",
    ),
]


@pytest.mark.parametrize(("call", "error"), _OPEN_CALLS)
def test_open_refuses_bad_arguments_with_a_clear_error(
    call: Callable[[Path], object], error: type[Exception], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a store")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "something").write_text("not ours")
    with pytest.raises(error) as caught:
        call(tmp_path)
    assert isinstance(caught.value, RaftStoreError)
    assert str(caught.value)
    assert not (tmp_path / "missing").exists(), "a refused open created a store"


def test_unknown_option_error_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="map_size") as caught:
        raftstore.open(tmp_path / "db", engine="lmdb", mapsize=1)
    assert "max_readers" in str(caught.value)


def test_an_lmdb_map_size_beyond_the_address_space_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    # 2**60 bytes cannot be mapped on any machine: that is a bad option value,
    # not a storage failure (today: StorageError "Cannot allocate memory").
    with pytest.raises(ConfigurationError, match="map_size"):
        raftstore.open(tmp_path / "db", engine="lmdb", map_size=2**60, max_map_size=2**60)


def _limit_address_space() -> None:
    # 4 GiB of address space: thread stacks run out after a few hundred
    # threads, so the child fails fast instead of creating ~100k threads.
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))


def test_a_huge_rocksdb_background_job_count_is_refused_not_a_process_abort(
    tmp_path: Path,
) -> None:
    _usable("rocksdb")
    # Run in a child: today RocksDB fails to start that many threads and the
    # process aborts ("Rust cannot catch foreign exceptions").
    script = (
        "import sys, raftstore\n"
        "try:\n"
        f"    raftstore.open({str(tmp_path / 'db')!r}, engine='rocksdb',"
        " max_background_jobs=200000)\n"
        "except raftstore.ConfigurationError as exc:\n"
        "    print('refused:', exc); sys.exit(0)\n"
        "print('opened'); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limit_address_space,
    )
    assert result.returncode == 0, (
        f"exit {result.returncode}: {result.stdout.strip()} {result.stderr.strip()[-300:]}"
    )


# -- fuzzing -------------------------------------------------------------------------


@pytest.mark.parametrize("codec_name", IN_PROCESS_CODECS)
@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_decoder_gives_a_log_or_corruption(codec_name: str, data: bytes) -> None:
    codec = create_codec(codec_name)
    try:
        log = codec.decode(data)
    except CorruptionError:
        return
    assert type(log) is Log
    assert log.index >= 1
    assert isinstance(log.type, LogType)
    assert type(log.data) is bytes
    assert type(log.extensions) is bytes
    # Whatever decoded must be storable again.
    raftstore.log.validate_log(log)


_LOGS = st.builds(
    Log,
    st.integers(1, MAX),
    st.integers(0, MAX),
    st.sampled_from(LogType),
    st.binary(max_size=64),
    st.binary(max_size=16),
    st.integers(-(2**63), 2**63 - 1),
)


@pytest.mark.parametrize("codec_name", IN_PROCESS_CODECS)
@FUZZ
@given(log=_LOGS, cut=st.integers(0, 200), flip=st.integers(0, 2000))
def test_fuzz_decoder_on_damaged_encodings(codec_name: str, log: Log, cut: int, flip: int) -> None:
    """Truncated or bit-flipped real encodings decode to a Log or raise CorruptionError."""
    codec = create_codec(codec_name)
    encoded = codec.encode(log)
    assert codec.decode(encoded) == log
    damaged = bytearray(encoded[: max(0, len(encoded) - cut)] if cut % 2 else encoded)
    if damaged:
        damaged[flip % len(damaged)] ^= 1 << (flip % 8)
    try:
        result = codec.decode(bytes(damaged))
    except CorruptionError:
        return
    assert type(result) is Log


@pytest.mark.parametrize("codec_name", IN_PROCESS_CODECS)
@FUZZ
@given(payload=st.binary(max_size=200), index=st.integers(1, MAX))
def test_fuzz_store_read_path_with_valid_checksums(
    codec_name: str, payload: bytes, index: int
) -> None:
    """Bytes under a log key (valid checksum) read back as that index's Log or CorruptionError."""
    with raftstore.open("memory://", codec=codec_name) as store:
        store.set(b"forge", payload)
        framed = store.kv.get(STABLE, b"forge")
        assert framed is not None
        store.kv.write(WriteBatch(puts=[(LOGS, index.to_bytes(8, "big"), framed)]))
        try:
            log = store.get_log(index)
        except CorruptionError:
            return
        assert log.index == index


_PICKLE_FUZZ_CHILD = """
import sys
from hypothesis import given, settings, strategies as st
import raftstore
from raftstore import CorruptionError, Log, LogType
from raftstore.registry import create_codec

codec = create_codec("pickle")
MAX = 2**64 - 1
LOGS = st.builds(Log, st.integers(1, MAX), st.integers(0, MAX), st.sampled_from(LogType),
                 st.binary(max_size=64), st.binary(max_size=16), st.integers(-(2**63), 2**63 - 1))
FUZZ = settings(max_examples=200, derandomize=True, database=None, deadline=None)

def outcome(data):
    try:
        log = codec.decode(data)
    except CorruptionError:
        return
    assert type(log) is Log, repr(log)

@FUZZ
@given(data=st.binary(max_size=300))
def arbitrary(data):
    outcome(data)

@FUZZ
@given(log=LOGS, cut=st.integers(0, 200), flip=st.integers(0, 2000))
def damaged(log, cut, flip):
    encoded = codec.encode(log)
    assert codec.decode(encoded) == log
    data = bytearray(encoded[: max(0, len(encoded) - cut)] if cut % 2 else encoded)
    if data:
        data[flip % len(data)] ^= 1 << (flip % 8)
    outcome(bytes(data))

arbitrary()
damaged()
print("ok")
"""


def _limit_memory_to_1_gib() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


def test_fuzz_pickle_decoder_gives_a_log_or_corruption_with_bounded_memory() -> None:
    """The pickle codec's fuzz, in a child limited to 1 GiB so a huge allocation cannot hurt CI."""
    result = subprocess.run(
        [sys.executable, "-c", _PICKLE_FUZZ_CHILD],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=_limit_memory_to_1_gib,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


_PICKLE_MEMO_CHILD = """
import resource, sys
from raftstore import CorruptionError
from raftstore.registry import create_codec

codec = create_codec("pickle")
# PROTO 5, NONE, LONG_BINPUT 2**23, STOP: nine bytes that ask the C unpickler
# to grow its memo table to 2**24 entries (zero-filled: 128 MiB touched).
record = bytes.fromhex("8005") + b"N" + b"r" + (2**23).to_bytes(4, "little") + b"."
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    codec.decode(record)
except CorruptionError:
    pass
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown // 1024)
"""


def test_the_pickle_decoder_does_not_allocate_gigabytes_for_a_tiny_record() -> None:
    """A 9-byte damaged record must not cost 128 MiB (with 4 bytes changed: up to 64 GiB)."""
    result = subprocess.run(
        [sys.executable, "-c", _PICKLE_MEMO_CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    grown_mib = int(result.stdout.strip())
    assert grown_mib < 32, f"decoding a 9-byte pickle record grew the process by {grown_mib} MiB"


_TARGET_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scheme, path, query: f"{scheme}://{path}{query}",
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz+.-_0123456789ABC", min_size=1, max_size=10),
        st.text(max_size=20),
        st.one_of(st.just(""), st.text(max_size=30).map(lambda q: "?" + q)),
    ),
)


@FUZZ
@given(target=_TARGET_TEXT)
def test_fuzz_parse_target_gives_a_target_or_configuration_error(target: str) -> None:
    try:
        parsed = parse_target(target)
    except ConfigurationError:
        return
    assert parsed.engine is None or parsed.engine == parsed.engine.lower()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.options.items())


_OPTION_NAMES = [
    "map_size", "max_map_size", "max_readers", "write_buffer_size", "block_cache_size",
    "compression", "max_background_jobs", "block_size", "max_open_files",
    "compact_after_deletes", "codec", "sync", "read_only", "create", "bogus", "",
]  # fmt: skip
_OPTION_VALUES = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "true", "no", "1e6", "0x200000", "1_048_576",
                     "snappy", "zstd", "none", "lz4", "msgpack", "cbor", "pickle", "nosuch",
                     "4194304", "99999999999999999999", "\x00", "%20"]),
    st.integers(-(2**20), 2**24).map(str),
    st.text(max_size=8),
)  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
@settings(FUZZ, max_examples=60)
@given(options=st.dictionaries(st.sampled_from(_OPTION_NAMES), _OPTION_VALUES, max_size=3))
def test_fuzz_url_options_give_configuration_error_or_a_working_store(
    engine: str, options: dict[str, str]
) -> None:
    _usable(engine)
    from urllib.parse import urlencode

    query = urlencode(options)
    with tempfile.TemporaryDirectory() as tmp:
        path = "" if engine == "memory" else f"{tmp}/db"
        target = f"{engine}://{path}" + (f"?{query}" if query else "")
        try:
            store = raftstore.open(target)
        except (
            ConfigurationError,
            raftstore.UnknownCodecError,
            raftstore.StoreNotFoundError,
        ):
            return
        with store:
            store.store_logs([Log(1, 1, data=b"fuzz"), Log(2, 1)])
            assert store.get_log(1).data == b"fuzz"
            assert store.last_index() == 2
