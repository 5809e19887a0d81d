"""Record checksums: damaged stored bytes raise `CorruptionError`, never wrong data.

Every test damages records through the engine's raw key-value interface
(``store.kv``: ``get``/``write``/``scan``), below the store's checks, the
way a bad disk or a buggy tool would, and then reads through the public
API. The tests know nothing of the record layout: to forge a record whose
checksum is valid, they let the store frame the payload as a stable value
and copy those bytes.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import raftstore
from raftstore import CorruptionError, Log, LogType, RaftStore
from raftstore._records import record_format
from raftstore.engines.base import LOGS, META, STABLE, WriteBatch
from raftstore.testing.faults import FaultPlan, register_faulty_engine

ENGINES = ["memory", "lmdb", "rocksdb", "leveldb"]
DISK_ENGINES = ["lmdb", "rocksdb", "leveldb"]
META_KEY = b"raftstore"
SEED = 20261126

OpenStore = Callable[[], RaftStore]


def _usable(engine: str) -> str:
    for info in raftstore.available_engines():
        if info.name == engine and not info.available:
            pytest.skip(f"engine {engine!r} is not usable here: {info.error}")
    return engine


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Every engine (skipped with the reason when its binding is missing)."""
    return _usable(str(request.param))


@pytest.fixture
def open_store(engine: str, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens the test's store; for memory, the same handle every time (it cannot reopen)."""
    handles: list[RaftStore] = []

    def opener() -> RaftStore:
        if engine == "memory":
            if not handles:
                handles.append(raftstore.open("memory://"))
            return handles[0]
        handles.append(raftstore.open(tmp_path / "db", engine=engine))
        return handles[-1]

    yield opener
    for handle in handles:
        handle.close()


def entry(index: int, term: int = 1) -> Log:
    """A typical entry: 128 bytes of data that name the index."""
    data = (f"entry {index} term {term} ".encode() * 16)[:128]
    return Log(index, term, LogType.COMMAND, data, b"", 1_700_000_000_000_000_000 + index)


def key_of(index: int) -> bytes:
    return index.to_bytes(8, "big")


def raw_record(store: RaftStore, index: int) -> bytes:
    raw = store.kv.get(LOGS, key_of(index))
    assert raw is not None
    return bytes(raw)


def put_raw(store: RaftStore, namespace: str, key: bytes, value: bytes) -> None:
    store.kv.write(WriteBatch(puts=[(namespace, key, value)]))


def forge(store: RaftStore, namespace: str, key: bytes, payload: bytes) -> bytes:
    """A record holding *payload* under *key* with a valid checksum, in the store's format."""
    return record_format(store.format_version).frame(namespace, key, payload)


def names(index: int) -> str:
    """A pattern matching an error message that names log *index* (not 10 for 1)."""
    return rf"\blog {index}\b"


def flip(raw: bytes, bit: int) -> bytes:
    damaged = bytearray(raw)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


def assert_log_corrupt(store: RaftStore, index: int) -> None:
    """*index* reads as CorruptionError naming it; its neighbours still read correctly."""
    with pytest.raises(CorruptionError, match=names(index)):
        store.get_log(index)
    with pytest.raises(CorruptionError, match=names(index)):
        list(store.iter_logs())
    for neighbour in (index - 1, index + 1):
        if store.first_index() <= neighbour <= store.last_index():
            assert store.get_log(neighbour) == entry(neighbour)


def _filled(open_store: OpenStore, count: int = 20) -> RaftStore:
    store = open_store()
    store.store_logs([entry(i) for i in range(1, count + 1)])
    store.set(b"key", b"stable value")
    store.set_uint64(b"CurrentTerm", 7)
    return store


# -- log records -----------------------------------------------------------------


def test_every_single_bit_flip_of_a_log_record_is_caught(open_store: OpenStore) -> None:
    store = _filled(open_store)
    original = raw_record(store, 10)
    bits = list(range(len(original) * 8))
    if store.engine != "memory":  # every bit on memory; a seeded sample on disk
        bits = sorted([*random.Random(SEED).sample(bits, 48), 0, 7, len(original) * 8 - 1])
    for bit in bits:
        put_raw(store, LOGS, key_of(10), flip(original, bit))
        with pytest.raises(CorruptionError, match=names(10)):
            store.get_log(10)
    assert_log_corrupt(store, 10)
    put_raw(store, LOGS, key_of(10), original)
    assert store.get_log(10) == entry(10)


def test_every_truncation_and_extension_of_a_log_record_is_caught(open_store: OpenStore) -> None:
    store = _filled(open_store)
    original = raw_record(store, 1)
    lengths = list(range(len(original)))
    if store.engine != "memory":
        lengths = sorted(
            {0, 1, 3, 4, 5, len(original) - 1, *random.Random(SEED).sample(lengths, 12)}
        )
    for length in lengths:
        put_raw(store, LOGS, key_of(1), original[:length])
        with pytest.raises(CorruptionError, match=names(1)):
            store.get_log(1)
    for tail in (b"\x00", b"\xff" * 4, original):
        put_raw(store, LOGS, key_of(1), original + tail)
        with pytest.raises(CorruptionError, match=names(1)):
            store.get_log(1)
    assert_log_corrupt(store, 1)


def test_damage_survives_reopen_and_storing_the_entry_again_repairs_it(
    engine: str, open_store: OpenStore
) -> None:
    if engine == "memory":
        pytest.skip("an in-memory store cannot be reopened")
    store = _filled(open_store)
    put_raw(store, LOGS, key_of(20), flip(raw_record(store, 20), 77))
    store.close()
    store = open_store()
    assert (store.first_index(), store.last_index()) == (1, 20)  # keys are intact
    assert_log_corrupt(store, 20)
    store.store_log(entry(20, term=2))
    assert store.get_log(20) == entry(20, term=2)
    assert [log.index for log in store.iter_logs()] == list(range(1, 21))


def test_a_record_moved_to_another_index_is_caught(open_store: OpenStore) -> None:
    store = _filled(open_store)
    put_raw(store, LOGS, key_of(6), raw_record(store, 5))
    with pytest.raises(CorruptionError, match=names(6)) as caught:
        store.get_log(6)
    # Format 2 checksums cover the key: the moved record fails its checksum.
    assert "checksum" in str(caught.value)
    assert store.get_log(5) == entry(5)


_UNDECODABLE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x00", id="zero-byte"),
    pytest.param(b"\xff" * 40, id="0xff-run"),
    pytest.param(b"\x96\x01\x01\x00\xc4\x01x\xc4\x00", id="msgpack-5-fields"),
    pytest.param(b"\x96\xa1x\x01\x00\xc4\x00\xc4\x00\x00", id="msgpack-str-index"),
    pytest.param(b"\x96\x00\x01\x00\xc4\x00\xc4\x00\x00", id="msgpack-index-0"),
    pytest.param(b"\x96\x01\x01\x09\xc4\x00\xc4\x00\x00", id="msgpack-type-9"),
    pytest.param(json.dumps([1, 1, 0, "", "", 0]).encode(), id="json"),
    pytest.param(b"\x80\x05\x95\x00", id="truncated-pickle"),
    pytest.param(bytes(random.Random(SEED).randbytes(300)), id="random-300"),
]


@pytest.mark.parametrize("payload", _UNDECODABLE)
def test_an_undecodable_record_with_a_valid_checksum_raises_corruption(
    open_store: OpenStore, payload: bytes
) -> None:
    """Damage the checksum did not catch still reaches the caller as CorruptionError."""
    store = _filled(open_store)
    put_raw(store, LOGS, key_of(3), forge(store, LOGS, key_of(3), payload))
    with pytest.raises(CorruptionError):
        store.get_log(3)
    with pytest.raises(CorruptionError):
        list(store.iter_logs())
    assert store.get_log(4) == entry(4)


@pytest.mark.parametrize("codec", ["msgpack", "pickle", "cbor"])
def test_an_undecodable_record_names_its_index(codec: str) -> None:
    """The codec's CorruptionError says which entry it could not decode."""
    with raftstore.open("memory://", codec=codec) as store:
        store.store_logs([entry(i) for i in range(1, 6)])
        unnamed = []
        for param in _UNDECODABLE:
            payload = param.values[0]
            assert isinstance(payload, bytes)
            put_raw(store, LOGS, key_of(3), forge(store, LOGS, key_of(3), payload))
            with pytest.raises(CorruptionError) as caught:
                store.get_log(3)
            if not re.search(names(3), str(caught.value)):
                unnamed.append(f"{param.id}: {caught.value}")
        assert not unnamed, "CorruptionError without the index:\n" + "\n".join(unnamed)


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    start=st.integers(min_value=0, max_value=10_000),
    pattern=st.integers(min_value=1, max_value=2**32 - 1),
)
def test_every_burst_of_up_to_32_bits_is_caught(start: int, pattern: int) -> None:
    """CRC-32 detects every error burst of 32 bits or fewer, wherever it lands."""
    with raftstore.open("memory://") as store:
        store.store_log(entry(9))
        original = raw_record(store, 9)
        start_bit = start % (len(original) * 8 - 32)
        as_int = int.from_bytes(original, "big") ^ (pattern << (len(original) * 8 - 32 - start_bit))
        put_raw(store, LOGS, key_of(9), as_int.to_bytes(len(original), "big"))
        with pytest.raises(CorruptionError, match=names(9)):
            store.get_log(9)


def test_a_log_key_of_the_wrong_length_is_reported_not_misread(engine: str, tmp_path: Path) -> None:
    _usable(engine)
    if engine == "memory":
        pytest.skip("an in-memory store cannot be reopened")
    with raftstore.open(tmp_path / "db", engine=engine) as store:
        store.store_logs([entry(i) for i in range(1, 4)])
        put_raw(store, LOGS, b"\xff" * 9, raw_record(store, 3))
    with pytest.raises(CorruptionError, match="not 8 bytes"):
        raftstore.open(tmp_path / "db", engine=engine)


# -- stable values -----------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip-first", "flip-last", "truncate", "extend", "empty"])
def test_a_damaged_stable_value_raises_corruption_naming_the_key(
    open_store: OpenStore, damage: str
) -> None:
    store = _filled(open_store)
    for key in (b"key", b"CurrentTerm"):
        raw = store.kv.get(STABLE, key)
        assert raw is not None
        damaged = {
            "flip-first": flip(raw, 0),
            "flip-last": flip(raw, len(raw) * 8 - 1),
            "truncate": raw[:-1],
            "extend": raw + b"\x00",
            "empty": b"",
        }[damage]
        put_raw(store, STABLE, key, damaged)
        with pytest.raises(CorruptionError, match=re.escape(repr(key))):
            store.get(key)
        with pytest.raises(CorruptionError, match=re.escape(repr(key))):
            store.get_uint64(key)
        with pytest.raises(CorruptionError, match=re.escape(repr(key))):
            list(store.iter_stable())
        put_raw(store, STABLE, key, raw)
    assert store.get(b"key") == b"stable value"
    assert store.get_uint64(b"CurrentTerm") == 7


def test_a_uint64_of_the_wrong_length_with_a_valid_checksum_is_corruption(
    open_store: OpenStore,
) -> None:
    store = _filled(open_store)
    put_raw(store, STABLE, b"CurrentTerm", forge(store, STABLE, b"CurrentTerm", b"\x00" * 7))
    with pytest.raises(CorruptionError, match="CurrentTerm"):
        store.get_uint64(b"CurrentTerm")
    assert store.get(b"CurrentTerm") == b"\x00" * 7


# -- the meta record -----------------------------------------------------------------


def _damage_meta(
    tmp_path: Path, engine: str, make: Callable[[RaftStore, bytes], bytes | None]
) -> Path:
    """Create a store, replace its meta record by ``make(store, raw)`` (None deletes it)."""
    path = tmp_path / "db"
    with raftstore.open(path, engine=engine) as store:
        store.store_logs([entry(i) for i in range(1, 4)])
        raw = store.kv.get(META, META_KEY)
        assert raw is not None
        replacement = make(store, bytes(raw))
        if replacement is None:
            store.kv.write(WriteBatch(deletes=[(META, META_KEY, META_KEY)]))
        else:
            put_raw(store, META, META_KEY, replacement)
    return path


def _meta_json(store: RaftStore, **changes: object) -> bytes:
    record: dict[str, object] = {
        "format": store.format_version,
        "engine": store.engine,
        "codec": store.codec,
    }
    record.update(changes)
    return forge(store, META, META_KEY, json.dumps(record).encode())


_META_DAMAGE: list[object] = [
    pytest.param(lambda s, raw: flip(raw, 3), CorruptionError, "meta record", id="flip-bit-3"),
    pytest.param(
        lambda s, raw: flip(raw, len(raw) * 4), CorruptionError, "meta record", id="flip-middle"
    ),
    pytest.param(lambda s, raw: raw[:-2], CorruptionError, "meta record", id="truncated"),
    pytest.param(lambda s, raw: b"", CorruptionError, "meta record", id="empty"),
    pytest.param(lambda s, raw: None, CorruptionError, "no meta record", id="deleted"),
    pytest.param(
        lambda s, raw: forge(s, META, META_KEY, b"{not json"),
        CorruptionError,
        "not JSON",
        id="not-json",
    ),
    pytest.param(
        lambda s, raw: forge(s, META, META_KEY, b"[1, 2]"),
        CorruptionError,
        "wrong shape",
        id="json-list",
    ),
    pytest.param(
        lambda s, raw: _meta_json(s, format="1"), CorruptionError, "wrong shape", id="format-str"
    ),
    pytest.param(
        lambda s, raw: _meta_json(s, engine="memory"), CorruptionError, "engine", id="other-engine"
    ),
    pytest.param(
        lambda s, raw: _meta_json(s, format=99),
        raftstore.UnsupportedFormatError,
        "format version 99",
        id="future-format",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), _META_DAMAGE)
def test_a_damaged_meta_record_refuses_to_open_with_a_clear_error(
    tmp_path: Path,
    make: Callable[[RaftStore, bytes], bytes | None],
    error: type[Exception],
    message: str,
) -> None:
    for engine in DISK_ENGINES:
        _usable(engine)
        base = tmp_path / engine
        base.mkdir()
        path = _damage_meta(base, engine, make)
        with pytest.raises(error, match=message):
            raftstore.open(path, engine=engine)
        # The failed open released the lock: a second attempt fails the same way.
        with pytest.raises(error, match=message):
            raftstore.open(path)


# -- a disk that returns damaged bytes -------------------------------------------------


def test_reads_damaged_on_the_way_from_the_disk_are_caught(engine: str, tmp_path: Path) -> None:
    plan = FaultPlan()
    name = register_faulty_engine(engine, plan)
    target = f"{name}://" if engine == "memory" else str(tmp_path / "db")
    with raftstore.open(target, engine=None if engine == "memory" else name) as store:
        store.store_logs([entry(i) for i in range(1, 11)])
        store.set(b"key", b"value")
        plan.corrupt("get", namespace=LOGS)
        with pytest.raises(CorruptionError, match=names(4)):
            store.get_log(4)
        plan.corrupt("scan", namespace=LOGS)
        with pytest.raises(CorruptionError, match=names(1)):
            list(store.iter_logs())
        plan.corrupt("get", namespace=STABLE)
        with pytest.raises(CorruptionError, match="key"):
            store.get(b"key")
        assert plan.fired == 3
        plan.clear()
        # Nothing stored was damaged: the next reads are right.
        assert store.get_log(4) == entry(4)
        assert [log.index for log in store.iter_logs()] == list(range(1, 11))
        assert store.get(b"key") == b"value"
    if engine != "memory":
        plan.corrupt("get", namespace=META)
        with pytest.raises(CorruptionError, match="meta record"):
            raftstore.open(tmp_path / "db", engine=name)
        plan.reset()
        with raftstore.open(tmp_path / "db", engine=name) as store:
            assert store.last_index() == 10
