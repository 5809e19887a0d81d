"""Damaged RocksDB and LevelDB files: a `CorruptionError` and untouched files, never a rollback.

Each case damages an LSM engine's files the way a bad disk, a crash or an
operator would, then opens the database the way the store opens an existing
one (``create=False``). Every native open and read runs in a child process
with a timeout, so a hang in native code fails the test instead of stalling
the run. A refused open must leave every file as it was (LevelDB's own info
log, ``LOG`` and ``LOG.old``, excepted: LevelDB rewrites it on every open).
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import raftstore

ENGINES = ["rocksdb", "leveldb"]
#: Hard limit of one child process; a hang in native code fails the test.
TIMEOUT = 60
#: Value bytes per log: a log record is well over the 50 bytes a torn tail cuts off.
VALUE = b"x" * 100

_CHILD = r"""
import gc, json, os, sys
from pathlib import Path
from raftstore.registry import coerce_options
from raftstore.engines.base import LOGS, WriteBatch
from raftstore.errors import RaftStoreError

name, path, action = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
args = json.loads(sys.argv[4])
if name == "rocksdb":
    from raftstore.engines.rocksdb import RocksDBEngine as Engine
else:
    from raftstore.engines.leveldb import LevelDBEngine as Engine
options = coerce_options(name, Engine.options, args.get("options", {}))

def index(n):
    return n.to_bytes(8, "big")

if action == "write":
    engine = Engine(path, sync=True, read_only=False, options=options, create=args["create"])
    sizes = args.get("sizes", {})
    for n in range(args["low"], args["high"] + 1):
        engine.write(WriteBatch(puts=[(LOGS, index(n), b"x" * sizes.get(str(n), 100))]))
    if args["close"]:
        engine.close()
    os._exit(0)  # without close: the writes stay in the engine's log

if action == "compact":
    engine = Engine(path, sync=True, read_only=False, options=options, create=False)
    engine.compact()
    engine.close()
    os._exit(0)

if action == "open":
    try:
        engine = Engine(path, sync=True, read_only=args["read_only"], options=options,
                        create=False)
        keys = [int.from_bytes(k, "big") for k, _ in engine.scan(LOGS, b"", None, 10**9)]
        values = {engine.get(LOGS, index(n)) for n in keys}
        engine.close()
        print(json.dumps({"keys": keys, "values_ok": values <= {b"x" * 100}}))
    except RaftStoreError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc),
                          "cause": exc.__cause__ is not None}))
    except Exception as exc:
        print(json.dumps({"native": repr(exc)}))

if action == "hold":
    engine = Engine(path, sync=True, read_only=args["read_only"], options=options, create=False)
    print("ready", flush=True)
    sys.stdin.readline()
    if not args["read_only"]:
        engine.write(WriteBatch(puts=[(LOGS, index(1000), b"x" * 100)]))
    engine.close()
    print(json.dumps({"held": True}))
    os._exit(0)

if action == "fork":
    engine = Engine(path, sync=True, read_only=False, options=options, create=False)
    engine.write(WriteBatch(puts=[(LOGS, index(1000), b"parent")]))
    engine.sync()
    before = sorted((p.name, p.stat().st_size) for p in path.iterdir())
    pid = os.fork()
    if pid == 0:
        if args["collect"]:
            del engine
            gc.collect()
        sys.exit(0)  # a normal interpreter exit: atexit, finalizers, module teardown
    _, status = os.waitpid(pid, 0)
    after = sorted((p.name, p.stat().st_size) for p in path.iterdir())
    engine.write(WriteBatch(puts=[(LOGS, index(1001), b"parent")]))
    engine.sync()
    result = {"status": os.waitstatus_to_exitcode(status), "before": before, "after": after,
              "parent_reads": engine.get(LOGS, index(1001)) == b"parent"}
    engine.close()
    print(json.dumps(result))
"""


def child(engine: str, path: Path, action: str, **args: Any) -> dict[str, Any]:
    """Run *action* on the *engine* database at *path* in a child process; return its report."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, engine, str(path), action, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(Path(raftstore.__file__).parent.parent)},
    )
    assert result.returncode == 0, f"{action} child failed: {result.stderr[-2000:]}"
    if action in ("write", "compact"):
        return {}
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def write(
    engine: str,
    path: Path,
    low: int,
    high: int,
    *,
    close: bool,
    create: bool = True,
    options: dict[str, Any] | None = None,
    sizes: dict[str, int] | None = None,
) -> None:
    """Write logs *low*..*high*, one synced batch each; *close* or leave them in the log.

    Each value is 100 bytes, or ``sizes[str(index)]`` bytes.
    """
    child(
        engine, path, "write", low=low, high=high, close=close, create=create,
        options=options or {}, sizes=sizes or {},
    )  # fmt: skip


def open_report(engine: str, path: Path, *, read_only: bool = False) -> dict[str, Any]:
    return child(engine, path, "open", read_only=read_only)


def snapshot(engine: str, path: Path) -> dict[str, bytes]:
    """Every file's bytes (LevelDB's info log excepted: every open rewrites it)."""
    skipped = {"LOG", "LOG.old"} if engine == "leveldb" else set()
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name not in skipped}


def assert_refused(engine: str, path: Path, *needles: str, read_only: bool = False) -> None:
    """Opening raises CorruptionError mentioning *needles* and the advice; no file changes."""
    before = snapshot(engine, path)
    report = open_report(engine, path, read_only=read_only)
    assert report.get("error") == "CorruptionError", report
    for needle in (*needles, "backup", "rejoin the cluster"):
        assert needle in report["message"], report
    assert snapshot(engine, path) == before


def logs_of(path: Path) -> list[Path]:
    return sorted(path.glob("*.log"))


def tables_of(path: Path) -> list[Path]:
    return sorted([*path.glob("*.sst"), *path.glob("*.ldb")])


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    for info in raftstore.available_engines():
        if info.name == name and not info.available:
            pytest.skip(f"engine {name!r} is not usable here: {info.error}")
    return name


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


# -- issue 10 case 1: missing engine files never re-create the database -------------------


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_lost_current_is_refused_and_nothing_is_deleted(
    engine: str, data: Path, damage: str
) -> None:
    write(engine, data, 1, 20, close=True)
    write(engine, data, 21, 40, close=True, create=False)
    assert tables_of(data), "the test needs table files that a re-creation could delete"
    current = data / "CURRENT"
    if damage == "deleted":
        current.unlink()
    else:
        current.write_bytes(b"")
    assert_refused(engine, data, "CURRENT")
    assert_refused(engine, data, "CURRENT", read_only=engine == "rocksdb")


def test_missing_manifest_is_refused(engine: str, data: Path) -> None:
    write(engine, data, 1, 20, close=True)
    for manifest in data.glob("MANIFEST-*"):
        manifest.unlink()
    assert_refused(engine, data, "MANIFEST")


def test_missing_table_file_is_refused(engine: str, data: Path) -> None:
    write(engine, data, 1, 20, close=True)
    write(engine, data, 21, 40, close=True, create=False)
    tables = tables_of(data)
    assert tables
    tables[0].unlink()
    assert_refused(engine, data, tables[0].stem)


@pytest.mark.parametrize("missing", ["directory", "every file"])
def test_missing_database_is_refused_not_created(engine: str, data: Path, missing: str) -> None:
    if missing == "every file":
        data.mkdir()
    report = open_report(engine, data)
    assert report.get("error") == "CorruptionError", report
    assert "rejoin the cluster" in report["message"]
    assert data.exists() == (missing == "every file")
    if data.exists():
        assert list(data.iterdir()) == []


# -- issue 10 case 2: a damaged log record fails the open; a torn tail does not --------------


def test_damaged_log_record_is_refused_and_the_log_kept(engine: str, data: Path) -> None:
    write(engine, data, 1, 100, close=False)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    damaged = bytearray(log.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    log.write_bytes(bytes(damaged))
    assert_refused(engine, data)
    assert log.read_bytes() == bytes(damaged)  # still there for `raftstore verify`


def test_damaged_last_acknowledged_record_is_refused(engine: str, data: Path) -> None:
    write(engine, data, 1, 100, close=False)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    damaged = bytearray(log.read_bytes())
    damaged[-1] ^= 0x01  # the record is whole: it was acknowledged, not torn
    log.write_bytes(bytes(damaged))
    assert_refused(engine, data)


def test_torn_final_record_opens_with_every_earlier_write(engine: str, data: Path) -> None:
    write(engine, data, 1, 100, close=False)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    os.truncate(log, log.stat().st_size - 50)  # the last write never finished
    report = open_report(engine, data)
    assert report.get("keys") == list(range(1, 100)), report
    assert report["values_ok"]


# -- a deleted or zeroed live log: the last writes are gone, never silently -----------------


def test_deleted_live_log_is_refused(engine: str, data: Path) -> None:
    # The last writes are only in the live log; without it the engine would open rolled back.
    write(engine, data, 1, 20, close=True)
    write(engine, data, 21, 40, close=False, create=False)
    logs = logs_of(data)
    assert logs
    for log in logs:
        log.unlink()
    assert_refused(engine, data, "log")
    assert_refused(engine, data, "log", read_only=True)


def test_deleted_empty_live_log_is_refused(engine: str, data: Path) -> None:
    # Even when it held nothing: the MANIFEST names it, and the engine never deletes it.
    write(engine, data, 1, 20, close=True)
    child(engine, data, "compact")  # flushes the memtable: the live log is a new, empty one
    log = max(logs_of(data), key=lambda p: int(p.stem))
    assert log.stat().st_size == 0
    log.unlink()
    assert_refused(engine, data, "log")


#: A put of a 100-byte value is a 131-byte log record (7 header, 12 batch header, 1 type,
#: 1 + 9 key, 1 + 100 value): 249 of them and one of 149 bytes fill the first 32 KiB block.
_FILL_FIRST_BLOCK = {"250": 118}


def test_zeroed_log_region_before_later_records_is_refused(engine: str, data: Path) -> None:
    # Zeros at a record boundary up to a block's end: LevelDB skips the rest of the block and
    # reads on at the next (a fresh record): writes after the hole would come back without it.
    write(engine, data, 1, 400, close=False, sizes=_FILL_FIRST_BLOCK)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    from raftstore.engines._lsm_records import _log_records

    whole = bytearray(log.read_bytes())
    records = list(_log_records(whole))
    starts = [pos for pos, _, _ in records]
    assert 32768 in starts, "the first block is full"
    assert records[starts.index(32768)][1] == 1, "block 2 starts with a whole record"
    zero_from = starts[200]
    whole[zero_from:32768] = bytes(32768 - zero_from)
    log.write_bytes(bytes(whole))
    assert_refused(engine, data, "missing")


def test_zeroed_first_page_of_the_live_log_is_refused(engine: str, data: Path) -> None:
    # The engines skip the rest of a block after a zero header: every write in the log's
    # first block would be gone. The records after the zeros (found by their checksums)
    # start past the MANIFEST's last sequence number: writes before them are missing.
    write(engine, data, 1, 20, close=True)
    write(engine, data, 21, 120, close=False, create=False)
    log = max(logs_of(data), key=lambda p: int(p.stem))
    whole = bytearray(log.read_bytes())
    assert 8192 < len(whole) < 32768
    whole[:4096] = bytes(4096)
    log.write_bytes(bytes(whole))
    assert_refused(engine, data, "sequence")


# -- issue 10 case 3: a truncated RocksDB MANIFEST is not a shorter valid one ---------------


def _record_ends(path: Path) -> list[int]:
    """Offsets just after each physical record of a RocksDB log-format file."""
    from raftstore.engines._lsm_records import _log_records

    data = path.read_bytes()
    return [
        pos + 7 + length for pos, _, length in _log_records(data) if pos + 7 + length <= len(data)
    ]


def test_truncated_rocksdb_manifest_is_refused_not_rolled_back(tmp_path: Path) -> None:
    pytest.importorskip("rocksdict")
    original = tmp_path / "original"
    write("rocksdb", original, 1, 100, close=True)
    write("rocksdb", original, 101, 200, close=True, create=False)
    (manifest,) = original.glob("MANIFEST-*")
    outcomes = []
    for cut in [*_record_ends(manifest)[:-1], manifest.stat().st_size // 2]:
        copy = tmp_path / f"cut{cut}"
        subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
        os.truncate(copy / manifest.name, cut)
        before = snapshot("rocksdb", copy)
        report = open_report("rocksdb", copy)
        if "keys" in report:
            # An open that succeeds holds every acknowledged write.
            assert report["keys"] == list(range(1, 201)), (cut, report)
            outcomes.append("whole")
        else:
            assert report.get("error") == "CorruptionError", (cut, report)
            assert snapshot("rocksdb", copy) == before, cut
            outcomes.append("refused")
            if "table file" in report["message"]:
                outcomes.append("unlisted table")
    # Some cut leaves a valid but older MANIFEST: the case RocksDB alone rolls back.
    assert "unlisted table" in outcomes, outcomes


def test_truncated_rocksdb_manifest_with_later_writes_in_the_wal_is_refused(
    tmp_path: Path,
) -> None:
    # Flushes during the run, then acknowledged writes left in the WAL: a cut that loses a
    # flush record (its WAL deleted since) leaves the WAL starting past the MANIFEST's end.
    pytest.importorskip("rocksdict")
    original = tmp_path / "original"
    write("rocksdb", original, 1, 1500, close=False, options={"write_buffer_size": 65536})
    (manifest,) = original.glob("MANIFEST-*")
    outcomes = []
    for cut in _record_ends(manifest)[:-1]:
        copy = tmp_path / f"cut{cut}"
        subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
        os.truncate(copy / manifest.name, cut)
        before = snapshot("rocksdb", copy)
        report = open_report("rocksdb", copy)
        if "keys" in report:
            assert report["keys"] == list(range(1, 1501)), (cut, report)
            outcomes.append("whole")
        else:
            assert report.get("error") == "CorruptionError", (cut, report)
            assert snapshot("rocksdb", copy) == before, cut
            outcomes.append("truncated" if "truncated" in report["message"] else "refused")
    assert "truncated" in outcomes, outcomes


# -- what a power cut leaves: opens with every write that reached the disk ----------------


def test_obsolete_compaction_inputs_left_behind_open_with_every_write(data: Path) -> None:
    # A compaction's inputs are unlinked after its MANIFEST record is synced; a power cut can
    # lose the unlink. The output's sequence numbers are zeroed (bottommost level), so the
    # inputs look newer than every listed table: yet the MANIFEST records them as deleted.
    pytest.importorskip("rocksdict")
    write("rocksdb", data, 1, 100, close=True)
    write("rocksdb", data, 101, 200, close=True, create=False)
    inputs = {p.name: p.read_bytes() for p in tables_of(data)}
    assert len(inputs) >= 2
    child("rocksdb", data, "compact")
    assert not set(inputs) & {p.name for p in tables_of(data)}, "the inputs were deleted"
    for name, content in inputs.items():
        (data / name).write_bytes(content)  # the unlinks did not persist
    report = open_report("rocksdb", data)
    assert report.get("keys") == list(range(1, 201)), report
    write("rocksdb", data, 201, 201, close=True, create=False)  # a write opens in place
    assert not set(inputs) & {p.name for p in tables_of(data)}


def test_flush_whose_record_and_unsynced_wal_tail_were_lost_opens(tmp_path: Path) -> None:
    # A flush wrote and synced its table file, then power failed before its MANIFEST record
    # was synced, and the end of the WAL (writes never synced, never acknowledged) was lost:
    # the table holds writes past what the WAL keeps. RocksDB recovers the WAL's prefix.
    pytest.importorskip("rocksdict")
    crashed, flushed = tmp_path / "crashed", tmp_path / "flushed"
    write("rocksdb", crashed, 1, 50, close=False)
    subprocess.run(["cp", "-a", str(crashed), str(flushed)], check=True)
    write("rocksdb", flushed, 51, 51, close=True, create=False)  # its open flushes the WAL
    (log,) = logs_of(crashed)
    new_tables = [p for p in tables_of(flushed) if not (crashed / p.name).exists()]
    assert new_tables
    for table in new_tables:
        (crashed / table.name).write_bytes(table.read_bytes())
    ends = _record_ends(log)
    os.truncate(log, ends[29] + 20)  # 30 whole records and a torn one
    report = open_report("rocksdb", crashed)
    assert "keys" in report, report
    assert report["keys"] == list(range(1, len(report["keys"]) + 1)), report
    assert 30 <= len(report["keys"]) < 50, report


def test_rocksdb_wal_with_a_hole_before_later_writes_is_refused(data: Path) -> None:
    # Unsynced writes reach the disk in any order: an older WAL can lose its tail while a
    # newer one keeps later writes. RocksDB would recover the later writes after a hole.
    pytest.importorskip("rocksdict")
    write("rocksdb", data, 1, 50, close=False)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    whole = log.read_bytes()
    ends = _record_ends(log)
    numbers = [p.name.split(".")[0].split("-")[-1] for p in data.iterdir()]
    newest = max(int(number) for number in numbers if number.isdigit())
    later = data / f"{newest + 1:06d}.log"
    later.write_bytes(whole[ends[39] : ends[49]])  # writes 41..50, in a newer WAL
    os.truncate(log, ends[29])  # writes 31..50 lost from the older one
    assert_refused("rocksdb", data, "missing between", log.name, later.name)


# -- issue 11 case 2: no open hangs on garbage in a WAL ------------------------------------


@pytest.mark.parametrize("kind", [5, 6, 7, 8, 11])
def test_recyclable_record_in_wal_is_refused_without_hanging(tmp_path: Path, kind: int) -> None:
    pytest.importorskip("rocksdict")
    data = tmp_path / "data"
    write("rocksdb", data, 1, 50, close=False)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    with open(log, "ab") as file:  # RocksDB's reader loops forever on this record
        file.write(struct.pack("<IHB", 0x12345678, 10, kind) + bytes(100))
    assert_refused("rocksdb", data, log.name, read_only=True)
    assert_refused("rocksdb", data, log.name)


def test_recyclable_type_inside_a_wal_is_refused_without_hanging(tmp_path: Path) -> None:
    pytest.importorskip("rocksdict")
    data = tmp_path / "data"
    write("rocksdb", data, 1, 50, close=False)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    damaged = bytearray(log.read_bytes())
    damaged[6] = 7  # the first record's type byte
    log.write_bytes(bytes(damaged))
    assert_refused("rocksdb", data, read_only=True)


@pytest.mark.parametrize("seed", range(12))
def test_garbage_appended_to_a_log_never_hangs_or_loses_writes(
    engine: str, data: Path, seed: int
) -> None:
    write(engine, data, 1, 50, close=False)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    rng = random.Random(seed)
    with open(log, "ab") as file:
        file.write(rng.randbytes(rng.randint(1, 3000)))
    before = snapshot(engine, data)
    for read_only in [True, False] if engine == "rocksdb" else [False]:
        report = open_report(engine, data, read_only=read_only)
        if "keys" in report:
            assert report["keys"] == list(range(1, 51)), report
        else:
            assert report.get("error") == "CorruptionError", report
            assert snapshot(engine, data) == before


# -- issue 11 case 3: a forked child never touches the parent's files -----------------------


@pytest.mark.parametrize("collect", [False, True], ids=["exit", "collect-then-exit"])
def test_forked_child_exiting_normally_leaves_the_parents_files(
    engine: str, data: Path, collect: bool
) -> None:
    write(engine, data, 1, 20, close=True)
    report = child(engine, data, "fork", collect=collect)
    assert report["status"] == 0
    assert report["after"] == report["before"]
    assert report["parent_reads"]


# -- siblings: damaged table files, stray files -----------------------------------------------


def test_flipped_byte_in_a_table_file_is_corruption_on_read(engine: str, data: Path) -> None:
    write(engine, data, 1, 200, close=True)
    write(engine, data, 201, 202, close=True, create=False)
    table = max(tables_of(data), key=lambda p: p.stat().st_size)
    damaged = bytearray(table.read_bytes())
    damaged[100] ^= 0x40  # inside the first data block
    table.write_bytes(bytes(damaged))
    report = open_report(engine, data)
    assert report.get("error") == "CorruptionError", report
    assert report["cause"]


@pytest.mark.parametrize("stray", ["garbage OPTIONS", "no IDENTITY", "no LOCK", "empty LOCK"])
def test_damaged_side_files_open_with_every_write(engine: str, data: Path, stray: str) -> None:
    write(engine, data, 1, 30, close=True)
    write(engine, data, 31, 40, close=False, create=False)
    if stray == "garbage OPTIONS":
        for options in data.glob("OPTIONS-*"):
            options.write_bytes(b"\x00garbage")
    elif stray == "no IDENTITY":
        (data / "IDENTITY").unlink(missing_ok=True)
    elif stray == "no LOCK":
        (data / "LOCK").unlink()
    else:
        (data / "LOCK").write_bytes(b"")
    report = open_report(engine, data)
    assert report.get("keys") == list(range(1, 41)), report


def test_rocksdb_read_only_open_writes_no_file(tmp_path: Path) -> None:
    pytest.importorskip("rocksdict")
    data = tmp_path / "data"
    write("rocksdb", data, 1, 30, close=True)
    write("rocksdb", data, 31, 40, close=False, create=False)  # a WAL to replay
    before = snapshot("rocksdb", data)
    report = open_report("rocksdb", data, read_only=True)
    assert report.get("keys") == list(range(1, 41)), report
    assert snapshot("rocksdb", data) == before


# -- LevelDB: a read-only open and a refused open change no byte and no name -----------------


def every_file(path: Path) -> dict[str, bytes]:
    """Every file's bytes under *path*, LevelDB's info log included."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_leveldb_read_only_open_changes_no_file(data: Path) -> None:
    # LevelDB has no read-only mode: opened in place it replays the log into a table file,
    # writes a MANIFEST, changes CURRENT and deletes the log. The engine opens a snapshot.
    pytest.importorskip("plyvel")
    write("leveldb", data, 1, 30, close=True)
    write("leveldb", data, 31, 40, close=False, create=False)  # a log to replay
    before = every_file(data)
    report = open_report("leveldb", data, read_only=True)
    assert report.get("keys") == list(range(1, 41)), report
    assert every_file(data) == before
    assert sorted(p.name for p in data.parent.iterdir()) == ["data"], "the snapshot is removed"


def test_read_write_open_that_only_reads_changes_no_file(engine: str, data: Path) -> None:
    # The store reads its meta record and the log's edges at open and may refuse them: until
    # the first write the engine reads from a read-only open (RocksDB) or a snapshot (LevelDB).
    write(engine, data, 1, 40, close=False)
    before = every_file(data)
    report = open_report(engine, data)
    assert report.get("keys") == list(range(1, 41)), report
    assert every_file(data) == before
    write(engine, data, 41, 41, close=True, create=False)  # the first write opens in place
    assert open_report(engine, data).get("keys") == list(range(1, 42))
    assert not list(data.parent.glob(".leveldb-readonly-*"))


def test_leveldb_refused_open_changes_no_file_not_even_the_info_log(data: Path) -> None:
    pytest.importorskip("plyvel")
    write("leveldb", data, 1, 100, close=False)
    (log,) = [p for p in logs_of(data) if p.stat().st_size]
    damaged = bytearray(log.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    log.write_bytes(bytes(damaged))
    before = every_file(data)
    for read_only in (False, True):
        report = open_report("leveldb", data, read_only=read_only)
        assert report.get("error") == "CorruptionError", report
        assert every_file(data) == before
    assert sorted(p.name for p in data.parent.iterdir()) == ["data"]


def test_leveldb_stale_snapshot_of_a_dead_process_is_removed(data: Path) -> None:
    pytest.importorskip("plyvel")
    write("leveldb", data, 1, 10, close=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = data.parent / f".leveldb-readonly-{dead}-abc"
    stale.mkdir()
    (stale / "CURRENT").write_bytes(b"x")
    assert open_report("leveldb", data).get("keys") == list(range(1, 11))
    assert not stale.exists()


def _store_files(store: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()
    }


def test_leveldb_store_verify_and_read_only_open_change_no_file(tmp_path: Path) -> None:
    pytest.importorskip("plyvel")
    store = tmp_path / "store"
    script = (
        "import sys, raftstore\n"
        "from raftstore import Log\n"
        "s = raftstore.open(sys.argv[1], engine='leveldb')\n"
        "s.store_logs([Log(index=i, term=1, data=b'x' * 100) for i in range(1, 51)])\n"
        "s.set_uint64(b'CurrentTerm', 3)\n"
        "s.close()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(store)], check=True, timeout=TIMEOUT)
    before = _store_files(store)
    names = sorted(p.name for p in store.rglob("*"))
    result = subprocess.run(
        [sys.executable, "-m", "raftstore", "verify", str(store)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    reader = (
        "import sys, raftstore\n"
        "s = raftstore.open(sys.argv[1], read_only=True)\n"
        "assert s.last_index() == 50 and s.get_uint64(b'CurrentTerm') == 3\n"
        "s.close()\n"
    )
    subprocess.run([sys.executable, "-c", reader, str(store)], check=True, timeout=TIMEOUT)
    assert sorted(p.name for p in store.rglob("*")) == names
    after = _store_files(store)
    # raftstore.lock is raftstore's own, not an engine file; every engine file is as it was.
    assert {k: v for k, v in after.items() if k.startswith("data")} == {
        k: v for k, v in before.items() if k.startswith("data")
    }


@pytest.mark.parametrize("holder", ["read-write", "read-only"])
def test_open_handle_keeps_a_writer_of_another_process_out(
    engine: str, data: Path, holder: str
) -> None:
    # Before its first write a read-write handle reads from a read-only open (RocksDB) or a
    # snapshot (LevelDB), and a LevelDB read-only handle always does: each still holds LOCK.
    if holder == "read-only" and engine == "rocksdb":
        pytest.skip("a RocksDB read-only handle runs beside a writer by design")
    write(engine, data, 1, 10, close=True)
    held = subprocess.Popen(
        [sys.executable, "-c", _CHILD, engine, str(data), "hold",
         json.dumps({"read_only": holder == "read-only"})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(raftstore.__file__).parent.parent)},
    )  # fmt: skip
    try:
        assert held.stdout is not None
        assert held.stdin is not None
        assert held.stdout.readline().strip() == "ready"
        report = open_report(engine, data)
        assert report.get("error") == "StoreLockedError", report
        held.stdin.write("\n")
        held.stdin.flush()
        out, _ = held.communicate(timeout=TIMEOUT)
        assert '"held": true' in out
    finally:
        if held.poll() is None:
            held.kill()
            held.wait(timeout=TIMEOUT)
    expected = list(range(1, 11)) + ([1000] if holder == "read-write" else [])
    assert open_report(engine, data).get("keys") == expected


def test_log_hole_rule_refuses_holes_inside_a_log_not_a_lost_older_tail() -> None:
    from raftstore.engines._lsm_records import batch_gap

    # An older log whose unsynced tail a power cut lost, a newer one whose writes landed:
    # nothing acknowledged is missing, so the store must open (LevelDB recovers the rest).
    assert (
        batch_gap([("5.log", [(11, 1, False), (12, 1, False)]), ("7.log", [(20, 1, False)])], 10)
        is None
    )
    # ... and the live log lost every unsynced write while the next one kept some.
    assert batch_gap([("5.log", []), ("7.log", [(20, 1, False)])], 10) is None
    # Inside one log: between two batches, after a zeroed region, at the live log's head.
    assert batch_gap([("5.log", [(11, 1, False), (15, 1, False)])], 10) is not None
    assert batch_gap([("5.log", [(11, 1, False)]), ("7.log", [(20, 1, True)])], 10) is not None
    assert batch_gap([("5.log", [(14, 1, False)])], 10) is not None
    assert batch_gap([("5.log", [(11, 2, False), (13, 0, False), (13, 1, False)])], 10) is None
