"""Records no store wrote, big entries and dropped handles: never a raw error, a blow-up or a leak.

Issue 11 cases 5, 7, 8 and 9: a forged record with a valid checksum is
decoded into a `CorruptionError` with a short message in bounded time and
memory; a large entry costs one copy more than the engine itself needs; a
store dropped without ``close`` releases its lock with a `ResourceWarning`.
"""

from __future__ import annotations

import gc
import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import cbor2
import msgpack
import pytest

import raftstore
from raftstore import CorruptionError, Log, LogType
from raftstore._records import record_format
from raftstore.engines.base import LOGS, WriteBatch
from raftstore.registry import create_codec

CODECS = ["msgpack", "pickle", "cbor"]


def _nested_pickle(depth: int) -> bytes:
    return b"\x80\x05" + b"(" * depth + b"t" * depth + b"."


def _shared_pickle(levels: int, width: int) -> bytes:
    """A tuple of *width* references to the tuple below it, *levels* deep: a tiny record
    whose repr would be width**levels long."""
    out = bytearray(b"\x80\x05(t\x94")  # () memoised as 0
    for level in range(levels):
        out += b"(" + (b"j" + level.to_bytes(4, "little")) * width + b"t\x94"
    return bytes(out) + b"."


def _shared_cbor(levels: int, width: int) -> bytes:
    value: object = []
    for _ in range(levels):
        value = [value] * width
    return cbor2.dumps(value, value_sharing=True)


FORGED: list[object] = [
    pytest.param("pickle", _nested_pickle(200_000), id="pickle-deeply-nested"),
    pytest.param("pickle", _shared_pickle(40, 30), id="pickle-shared-references"),
    pytest.param("cbor", _shared_cbor(40, 30), id="cbor-shared-references"),
    pytest.param("cbor", b"\x81" * 100_000 + b"\x00", id="cbor-deeply-nested"),
    pytest.param("cbor", cbor2.dumps((2**70, 1, 0, b"", b"", 0)), id="cbor-bignum-index"),
    pytest.param("cbor", cbor2.dumps((5, 2**64, 0, b"", b"", 0)), id="cbor-term-above-uint64"),
    pytest.param("cbor", cbor2.dumps((5, 1, 0, b"", b"", 2**63)), id="cbor-time-above-int64"),
    pytest.param("cbor", cbor2.dumps((5, 1, 0, b"", b"", -(2**70))), id="cbor-bignum-time"),
    pytest.param("msgpack", msgpack.packb([[[[]] * 50] * 50] * 50), id="msgpack-wide"),
    pytest.param("msgpack", b"\x91" * 100_000 + b"\xc0", id="msgpack-deeply-nested"),
    pytest.param(
        "pickle", pickle.dumps((5, 1, 0, b"", b"", 2**64), protocol=5), id="pickle-big-time"
    ),
]


@pytest.mark.parametrize(("codec", "payload"), FORGED)
def test_a_forged_record_is_corruption_with_a_short_message(
    codec: str, payload: bytes, tmp_path: Path
) -> None:
    with raftstore.open(tmp_path / "db", codec=codec) as store:
        key = (5).to_bytes(8, "big")
        record = record_format(store.format_version).frame(LOGS, key, payload)
        store.kv.write(WriteBatch(puts=[(LOGS, key, record)]))
        with pytest.raises(CorruptionError, match="log 5") as caught:
            store.get_log(5)
        assert len(str(caught.value)) < 500
        with pytest.raises(CorruptionError):
            list(store.iter_logs())


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("size", [0, 1, 23, 24, 255, 256, 65535, 65536, 1 << 20, (1 << 20) + 3])
def test_encode_parts_is_encode_in_pieces(codec: str, size: int) -> None:
    encoder = create_codec(codec)
    for log in (
        Log(1, 0, data=b"x" * size),
        Log(2**64 - 1, 2**64 - 1, LogType.CONFIGURATION, b"y" * size, b"e" * 300, -(2**63)),
    ):
        parts = encoder.encode_parts(log)  # type: ignore[attr-defined]
        assert b"".join(parts) == encoder.encode(log)
        # Pickle frames small bytes objects; large ones it hands over as they are.
        if size >= (1 << 16 if codec == "pickle" else 1):
            assert any(part is log.data for part in parts)


@pytest.mark.parametrize("codec", CODECS)
def test_large_entries_round_trip_through_the_parts_path(codec: str, tmp_path: Path) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB
    with raftstore.open(tmp_path / "db", codec=codec) as store:
        store.store_log(Log(1, 1, data=big, extensions=b"ext"))
        store.store_logs([Log(2, 1, data=big), Log(3, 1, data=b"small")])
    with raftstore.open(tmp_path / "db") as store:
        assert store.get_log(1) == Log(1, 1, data=big, extensions=b"ext")
        assert store.get_log(2).data == big
        assert store.get_log(3).data == b"small"


_PEAK = """
import json, os, resource, sys
import raftstore
from raftstore import Log
data = os.urandom(64 << 20)
with raftstore.open(sys.argv[1], engine=sys.argv[2], codec=sys.argv[3]) as store:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store.store_logs([Log(1, 1, data=data)])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth": (peak - base) * 1024 / len(data)}))
"""


@pytest.mark.parametrize("codec", CODECS)
def test_storing_a_large_entry_copies_its_data_once_beyond_the_engine(
    codec: str, tmp_path: Path
) -> None:
    # LMDB's write transaction holds one copy (its dirty pages); raftstore
    # adds the record, and nothing else: peak growth is 2x the entry.
    result = subprocess.run(
        [sys.executable, "-c", _PEAK, str(tmp_path / "db"), "lmdb", codec],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    growth = json.loads(result.stdout)["growth"]
    assert growth < 2.5, f"peak RSS grew by {growth:.2f}x the entry"


# -- a store dropped without close ----------------------------------------------------


@pytest.mark.parametrize("engine", ["lmdb", "rocksdb", "leveldb"])
def test_a_store_dropped_without_close_releases_its_lock(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = raftstore.open(path, engine=engine)
    store.set_uint64(b"CurrentTerm", 4)
    with pytest.warns(ResourceWarning, match="unclosed store"):
        del store  # the last reference: the finaliser runs here
    with raftstore.open(path) as again:
        assert again.get_uint64(b"CurrentTerm") == 4


def test_a_failed_open_leaves_nothing_for_a_finaliser(tmp_path: Path) -> None:
    path = tmp_path / "db"
    raftstore.open(path).close()
    (path / "data").rename(tmp_path / "elsewhere")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CorruptionError):
            raftstore.open(path)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    (tmp_path / "elsewhere").rename(path / "data")
    with raftstore.open(path) as store:  # and nothing of it still holds the lock
        assert store.last_index() == 0
