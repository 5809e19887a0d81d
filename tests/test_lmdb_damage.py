"""LMDB on damaged files, beside other processes, and around compaction.

Issue 10 (a store never silently forgets) and issue 11 (no crash, no hang)
for the LMDB engine: a missing, truncated or zeroed ``data.mdb``, a flipped
bit in a meta page, compaction beside readers in other processes, reader
slots left by killed processes, and ``raftstore verify``/``inspect`` on a
file that makes LMDB abort.

Everything that could kill the interpreter (SIGBUS, an LMDB assertion) runs
in a child process with a timeout, so a crash fails the test instead of
killing pytest.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import raftstore
from raftstore import Log, _isolate
from raftstore.engines.base import LOGS, STABLE
from raftstore.engines.lmdb import LmdbEngine
from raftstore.errors import CorruptionError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

#: Where LMDB's meta fields sit in a meta page (64-bit layout, MDB_meta after
#: the 16-byte page header): mm_last_pg, then mm_txnid.
_META = struct.Struct("@IIPN" + "IHHNNNNN" * 2 + "NN")
_PAGE_HEADER_SIZE = struct.calcsize("@NHHHH")
_TXNID_OFFSET = _PAGE_HEADER_SIZE + _META.size - struct.calcsize("N")
CHILD_TIMEOUT = 120
OPTIONS = {name: option.default for name, option in LmdbEngine.options.items()}

#: A child that opens the store with create=False, reads everything and says what happened.
READ_ALL = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import raftstore
    from raftstore.engines.base import LOGS, STABLE
    from raftstore.engines.lmdb import LmdbEngine
    from raftstore.errors import RaftStoreError
    options = {name: option.default for name, option in LmdbEngine.options.items()}
    try:
        engine = LmdbEngine(Path(sys.argv[1]), sync=True, read_only=sys.argv[2] == "ro",
                            options=options, create=False)
        logs = engine.scan(LOGS, b"", None, 1 << 30)
        stable = engine.scan(STABLE, b"", None, 1 << 30)
        engine.close()
        print("OPENED", len(logs), len(stable))
    except RaftStoreError as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "-"
        print("ERROR", type(exc).__name__, cause, str(exc))
    """
)


def run_child(
    code: str, *args: str, timeout: float = CHILD_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a new interpreter; a crash shows as a negative return code."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_store(path: Path, count: int = 300, *, one_by_one: bool = False) -> Path:
    """A store with logs 1..count (128-byte payloads), CurrentTerm 7; returns its data dir."""
    with raftstore.open(path, engine="lmdb") as store:
        if one_by_one:
            for index in range(1, count + 1):
                store.store_log(Log(index, 1, data=b"x" * 128))
        else:
            store.store_logs([Log(index, 1, data=b"x" * 128) for index in range(1, count + 1)])
        store.set_uint64(b"CurrentTerm", 7)
    return path / "data"


def open_engine(data: Path, *, read_only: bool = False, create: bool = False) -> LmdbEngine:
    return LmdbEngine(data, sync=True, read_only=read_only, options=OPTIONS, create=create)


def read_all_in_child(data: Path, read_only: bool = False) -> list[str]:
    """Open *data* with create=False in a child; its one output line, split once per field."""
    result = run_child(READ_ALL, str(data), "ro" if read_only else "rw")
    assert result.returncode == 0, f"child died ({result.returncode}): {result.stderr[-2000:]}"
    return result.stdout.strip().split(" ", 3)


def page_size(data_file: Path) -> int:
    with data_file.open("rb") as f:
        head = f.read(_PAGE_HEADER_SIZE + _META.size)
    return int(_META.unpack_from(head, _PAGE_HEADER_SIZE)[4])  # FREE_DBI md_pad = mm_psize


def meta_txnids(data_file: Path) -> tuple[int, int]:
    psize = page_size(data_file)
    with data_file.open("rb") as f:
        head = f.read(2 * psize)
    first = _META.unpack_from(head, _PAGE_HEADER_SIZE)[-1]
    second = _META.unpack_from(head, psize + _PAGE_HEADER_SIZE)[-1]
    return int(first), int(second)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def data_files(directory: Path) -> dict[str, bytes]:
    """The files of *directory* that hold data (LMDB's lock file is not data)."""
    return {name: data for name, data in snapshot(directory).items() if name != "lock.mdb"}


# -- case 1: a missing or truncated data.mdb ------------------------------------------


def test_missing_data_file_is_corruption_and_nothing_is_created(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db")
    (data / "data.mdb").unlink()
    before = sorted(p.name for p in data.iterdir())
    for read_only in (False, True):
        with pytest.raises(CorruptionError, match=r"data\.mdb.*missing.*restore"):
            open_engine(data, read_only=read_only)
        assert sorted(p.name for p in data.iterdir()) == before


def test_missing_data_directory_is_corruption(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db")
    for child in data.iterdir():
        child.unlink()
    data.rmdir()
    with pytest.raises(CorruptionError, match="missing"):
        open_engine(data)
    assert not data.exists()


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
@pytest.mark.parametrize(
    "cut", ["empty", "one-byte", "one-page", "half", "page-fraction", "last-page"]
)
def test_truncated_data_file_is_corruption_never_sigbus(
    tmp_path: Path, cut: str, read_only: bool
) -> None:
    data = make_store(tmp_path / "db", 3000)
    data_file = data / "data.mdb"
    size = data_file.stat().st_size
    psize = page_size(data_file)
    new_size = {
        "empty": 0,
        "one-byte": 1,
        "one-page": psize,
        "half": (size // psize // 2) * psize,
        "page-fraction": size - psize // 2,
        "last-page": size - psize,
    }[cut]
    os.truncate(data_file, new_size)
    before = data_files(data)
    outcome = read_all_in_child(data, read_only)
    if cut == "last-page" and outcome[0] == "OPENED":
        # The last page may be a free one LMDB never wrote (it then need not
        # exist): opening is right only when every record is still there.
        assert outcome[1:] == ["3000", "1"], outcome
    else:
        assert outcome[:2] == ["ERROR", "CorruptionError"], outcome
        assert "restore" in outcome[3], outcome
        assert "rejoin" in outcome[3], outcome
    assert data_files(data) == before, "a failed open changed the data file"


def test_missing_lock_file_is_recreated_and_data_intact(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db")
    (data / "lock.mdb").unlink()
    engine = open_engine(data)
    try:
        assert len(engine.scan(LOGS, b"", None, 10_000)) == 300
    finally:
        engine.close()


def test_store_level_open_of_a_truncated_store_raises(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db", 3000)
    os.truncate(data / "data.mdb", 0)
    code = textwrap.dedent(
        """
        import sys, raftstore
        try:
            with raftstore.open(sys.argv[1]) as store:
                print("OPENED", store.last_index(), store.get_uint64(b"CurrentTerm"))
        except raftstore.RaftStoreError as exc:
            print("ERROR", type(exc).__name__)
        """
    )
    result = run_child(code, str(tmp_path / "db"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ERROR", "CorruptionError"], result.stdout
    assert (data / "data.mdb").stat().st_size == 0


# -- case 2: meta pages carry no checksum ------------------------------------------------


def flip_txnid_bit(data_file: Path, which: str, bit: int) -> None:
    first, second = meta_txnids(data_file)
    newest = 0 if first > second else 1
    page = newest if which == "newest" else 1 - newest
    offset = page * page_size(data_file) + _TXNID_OFFSET
    with data_file.open("r+b") as f:
        f.seek(offset)
        (value,) = struct.unpack("@N", f.read(8))
        f.seek(offset)
        f.write(struct.pack("@N", value ^ (1 << bit)))


@pytest.mark.parametrize("bit", [0, 1, 2, 3, 7, 20, 62])
@pytest.mark.parametrize("which", ["newest", "older"])
def test_flipped_meta_txnid_bit_is_corruption(tmp_path: Path, which: str, bit: int) -> None:
    data = make_store(tmp_path / "db", 40, one_by_one=True)
    flip_txnid_bit(data / "data.mdb", which, bit)
    before = data_files(data)
    outcome = read_all_in_child(data)
    assert outcome[:2] == ["ERROR", "CorruptionError"], (meta_txnids(data / "data.mdb"), outcome)
    assert "meta page" in outcome[3]
    assert data_files(data) == before


def test_flipped_txnid_would_otherwise_lose_the_last_write(tmp_path: Path) -> None:
    """What the check prevents: LMDB alone falls back to the older meta page silently."""
    data = make_store(tmp_path / "db", 40, one_by_one=True)
    newest = max(meta_txnids(data / "data.mdb"))
    # Clearing a set bit (other than the lowest) makes the newest page look older.
    bit = next(bit for bit in range(1, 64) if newest >> bit & 1)
    flip_txnid_bit(data / "data.mdb", "newest", bit)
    import lmdb

    env = lmdb.open(str(data), max_dbs=3, readonly=True, lock=False)
    try:
        stable = env.open_db(b"stable", create=False)
        with env.begin(db=stable) as txn:
            term = txn.get(b"CurrentTerm")
    finally:
        env.close()
    assert term is None  # the last acknowledged write (CurrentTerm 7) is gone
    with pytest.raises(CorruptionError, match="meta page"):
        open_engine(data)


@pytest.mark.parametrize("page", [0, 1])
def test_zeroed_meta_page_is_corruption(tmp_path: Path, page: int) -> None:
    data = make_store(tmp_path / "db")
    data_file = data / "data.mdb"
    psize = page_size(data_file)
    with data_file.open("r+b") as f:
        f.seek(page * psize)
        f.write(bytes(psize))
    outcome = read_all_in_child(data)
    assert outcome[:2] == ["ERROR", "CorruptionError"], outcome
    assert f"meta page {page}" in outcome[3]


def test_a_healthy_store_passes_the_checks_after_many_kinds_of_writes(tmp_path: Path) -> None:
    """No false alarm: deletes, overwrites, growth, compaction, a read-only open."""
    path = tmp_path / "db"
    with raftstore.open(path, engine="lmdb", map_size=1 << 20) as store:
        for round_ in range(30):
            store.store_logs(
                [Log(i, round_, data=os.urandom(64) * (round_ % 5 + 1)) for i in range(1, 400)]
            )
            store.delete_range(1, 200 + round_)
            store.set_uint64(b"CurrentTerm", round_)
            if round_ % 10 == 9:
                store.compact()
            store.delete_range(0, 2**64 - 1)
        store.store_logs([Log(i, 99) for i in range(1, 10)])
    for read_only in (False, True):
        engine = open_engine(path / "data", read_only=read_only)
        try:
            assert len(engine.scan(LOGS, b"", None, 100)) == 9
        finally:
            engine.close()


# -- case 3: compaction ------------------------------------------------------------------


def test_compact_fsyncs_the_data_directory_after_the_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_store(tmp_path / "db")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        real_replace(src, dst, **kw)
        events.append(("replace", os.fspath(dst)))

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to name the synced descriptors")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    engine = open_engine(data)
    try:
        engine.compact()
    finally:
        engine.close()
    replaced = events.index(("replace", str(data / "data.mdb")))
    assert ("fsync", str(data)) in events[replaced + 1 :], events


@pytest.mark.parametrize("planted", ["symlink-to-dir", "symlink-to-file", "file", "dir"])
def test_compact_never_follows_a_planted_temporary_name(tmp_path: Path, planted: str) -> None:
    data = make_store(tmp_path / "db")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.mdb").write_bytes(b"precious")
    (victim / "keep.txt").write_bytes(b"precious")
    tmp = data.with_name(data.name + ".compact")
    if planted == "symlink-to-dir":
        tmp.symlink_to(victim, target_is_directory=True)
    elif planted == "symlink-to-file":
        tmp.symlink_to(victim / "keep.txt")
    elif planted == "file":
        tmp.write_bytes(b"left over")
    else:
        tmp.mkdir()
        (tmp / "data.mdb").write_bytes(b"half a copy from a killed compact")
        (tmp / "link").symlink_to(victim / "keep.txt")
    engine = open_engine(data)
    try:
        engine.compact()
        assert len(engine.scan(LOGS, b"", None, 10_000)) == 300
    finally:
        engine.close()
    assert (victim / "data.mdb").read_bytes() == b"precious"
    assert (victim / "keep.txt").read_bytes() == b"precious"
    assert not os.path.lexists(tmp)


READER = textwrap.dedent(
    """
    import sys, raftstore
    store = raftstore.open(sys.argv[1], read_only=True)
    def report():
        print(store.last_index(), store.get_uint64(b"CurrentTerm"), flush=True)
    report()
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        report()
    store.close()
    """
)


def test_compact_does_not_strand_a_reader_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with raftstore.open(path, engine="lmdb") as store:
        store.store_logs([Log(i, 1, data=b"y" * 200) for i in range(1, 3001)])
        store.set_uint64(b"CurrentTerm", 1)
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert reader.stdout is not None
            assert reader.stdin is not None
            assert reader.stdout.readline().split() == ["3000", "1"]
            store.delete_range(1, 2000)
            store.compact()
            store.store_logs([Log(i, 6) for i in range(3001, 3601)])
            store.set_uint64(b"CurrentTerm", 6)
            reader.stdin.write("again\n")
            reader.stdin.flush()
            assert reader.stdout.readline().split() == ["3600", "6"]
            reader.stdin.write("quit\n")
            reader.stdin.flush()
            assert reader.wait(timeout=CHILD_TIMEOUT) == 0
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()


# -- case 4: stale reader slots ---------------------------------------------------------

HOLD_A_READ = textwrap.dedent(
    """
    import os, sys, time, raftstore
    store = raftstore.open(sys.argv[1], read_only=True)
    txn = store.kv._shared.env.begin()   # a read transaction, left open
    sum(1 for _ in txn.cursor())
    print(os.getpid(), flush=True)
    time.sleep(600)
    """
)


def kill_inside_a_read(path: Path) -> int:
    """Start a read-only process, let it begin a read, SIGKILL it; returns its pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_READ, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=CHILD_TIMEOUT)
    return pid


def reader_pids(engine: LmdbEngine) -> set[int]:
    text = engine._shared.env.readers()
    return {int(line.split()[0]) for line in text.splitlines()[1:] if line.split()}


def test_stale_reader_slot_is_cleared_by_compact(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db")
    engine = open_engine(data)
    try:
        dead = kill_inside_a_read(tmp_path / "db")
        assert dead in reader_pids(engine)
        engine.compact()
        assert dead not in reader_pids(engine)
        assert engine.stale_readers_cleared >= 1
    finally:
        engine.close()


def test_stale_reader_slot_is_cleared_periodically_while_writing(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db")
    engine = open_engine(data)
    try:
        dead = kill_inside_a_read(tmp_path / "db")
        assert dead in reader_pids(engine)
        for index in range(1000, 1000 + LmdbEngine.READER_CHECK_EVERY + 1):
            engine.put(LOGS, index.to_bytes(8, "big"), b"z")
        assert dead not in reader_pids(engine)
        assert engine.stale_readers_cleared >= 1
    finally:
        engine.close()


def test_stale_reader_slot_is_cleared_on_open_and_reported_by_inspect(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db")
    holder = open_engine(data)  # keeps the lock file in use, so LMDB does not reset it
    try:
        dead = kill_inside_a_read(tmp_path / "db")
        assert dead in reader_pids(holder)
        result = subprocess.run(
            [sys.executable, "-m", "raftstore", "inspect", str(tmp_path / "db"), "--json"],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["stale_readers_cleared"] >= 1
        assert dead not in reader_pids(holder)
        kill_inside_a_read(tmp_path / "db")
        text = subprocess.run(
            [sys.executable, "-m", "raftstore", "inspect", str(tmp_path / "db")],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        assert text.returncode == 0, text.stderr
        assert "stale readers" in text.stdout
    finally:
        holder.close()


# -- case 5: zeroed pages, and verify/inspect surviving an engine crash ------------------


def zero_page(data_file: Path, page: int) -> None:
    psize = page_size(data_file)
    with data_file.open("r+b") as f:
        f.seek(page * psize)
        f.write(bytes(psize))


def test_zeroed_root_page_is_corruption_in_the_library(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db", 3000)
    engine = open_engine(data)
    root = engine._newest_meta_root_of(LOGS)
    engine.close()
    zero_page(data / "data.mdb", root)
    outcome = read_all_in_child(data)
    assert outcome[:2] == ["ERROR", "CorruptionError"], outcome
    assert f"page {root}" in outcome[3]


def test_isolate_reports_a_crash_as_corruption() -> None:
    with pytest.raises(_isolate.EngineCrashedError, match="engine crashed reading this store"):
        _isolate.run_isolated(os.abort)
    assert issubclass(_isolate.EngineCrashedError, CorruptionError)


def test_isolate_returns_results_and_reraises_errors() -> None:
    assert _isolate.run_isolated(sorted, [3, 1, 2]) == [1, 2, 3]
    with pytest.raises(CorruptionError, match="bad"):
        _isolate.run_isolated(_raise_corruption, "bad")
    progress: list[tuple[int, int]] = []
    assert _isolate.run_isolated(_count, 3, progress=lambda d, t: progress.append((d, t))) == 3
    assert progress == [(1, 3), (2, 3), (3, 3)]


def test_isolate_times_out_a_stuck_child() -> None:
    with pytest.raises(_isolate.EngineCrashedError, match="did not finish"):
        _isolate.run_isolated(_sleep_forever, timeout=1)


def _raise_corruption(message: str) -> None:
    raise CorruptionError(message)


def _count(total: int, progress: Any) -> int:
    for done in range(1, total + 1):
        progress(done, total)
    return total


def _sleep_forever() -> None:
    import time

    while True:
        time.sleep(60)


def find_crashing_page(tmp_path: Path) -> Path:
    """A store with one zeroed page whose plain read makes LMDB abort (or kill) the process."""
    data = make_store(tmp_path / "db", 3000)
    data_file = data / "data.mdb"
    pages = data_file.stat().st_size // page_size(data_file)
    pristine = data_file.read_bytes()
    crash = textwrap.dedent(
        """
        import sys, lmdb
        env = lmdb.open(sys.argv[1], max_dbs=3, readonly=True, lock=False)
        for name in (b"logs", b"stable", b"meta"):
            db = env.open_db(name, create=False)
            with env.begin(db=db) as txn:
                for key, value in txn.cursor():
                    pass
        print("read")
        """
    )
    for page in range(2, pages):
        zero_page(data_file, page)
        result = run_child(crash, str(data))
        if result.returncode < 0:
            return tmp_path / "db"
        data_file.write_bytes(pristine)
    pytest.skip("no zeroed page made this LMDB build crash")


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_cli_survives_an_engine_crash(tmp_path: Path, command: str) -> None:
    path = find_crashing_page(tmp_path)
    before = data_files(path / "data")
    for extra in ([], ["--json"]):
        result = subprocess.run(
            [sys.executable, "-m", "raftstore", command, str(path), *extra],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
        crashed = "the engine crashed reading this store: the file is damaged"
        if command == "inspect":
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith("raftstore: error: ")
            assert crashed in lines[0]
        elif extra:
            report = json.loads(result.stdout)
            assert report["ok"] is False
            assert crashed in report["problems"][0]["problem"]
        else:
            assert crashed in result.stdout
            assert "FAILED" in result.stdout
    assert data_files(path / "data") == before


def test_verify_and_inspect_report_a_zeroed_root_with_exit_1_or_6(tmp_path: Path) -> None:
    data = make_store(tmp_path / "db", 3000)
    engine = open_engine(data)
    root = engine._newest_meta_root_of(STABLE)
    engine.close()
    zero_page(data / "data.mdb", root)
    verify = subprocess.run(
        [sys.executable, "-m", "raftstore", "verify", str(tmp_path / "db")],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert verify.returncode == 1, (verify.stdout, verify.stderr)
    assert f"page {root}" in verify.stdout


BUSY_WRITER = textwrap.dedent(
    """
    import sys, raftstore
    from raftstore import Log
    store = raftstore.open(sys.argv[1], sync=False)
    print("ready", flush=True)
    index = 0
    while True:
        index += 1
        store.store_logs([Log(index, 1, data=b"w" * 300)])
        if index % 500 == 0:
            store.delete_range(0, index - 200)
        if index % 1500 == 0:
            store.compact()
    """
)


def test_read_only_opens_beside_a_busy_writer_raise_no_false_alarm(tmp_path: Path) -> None:
    """The checks read pages a live writer changes: they retry, never cry damage."""
    path = tmp_path / "db"
    raftstore.open(path, engine="lmdb").close()
    writer = subprocess.Popen(
        [sys.executable, "-c", BUSY_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        for _ in range(1500):
            with raftstore.open(path, read_only=True) as store:
                store.last_index()
                store.get_uint64(b"CurrentTerm")
        assert writer.poll() is None, "the writer died"
    finally:
        writer.kill()
        writer.wait()


@pytest.mark.parametrize("parity", [0, 1])
def test_compact_beside_another_process_never_shows_an_empty_store(
    tmp_path: Path, parity: int
) -> None:
    """LMDB readers pick a meta page by the lock file's txnid, which outlives the old file."""
    data = make_store(tmp_path / "db")
    engine = open_engine(data)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path / "db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdin is not None
        assert reader.stdout.readline().split() == ["300", "7"]
        if int(engine._shared.env.info()["last_txnid"]) % 2 != parity:
            engine.put(STABLE, b"other", b"x")
        engine.compact()
        assert len(engine.scan(LOGS, b"", None, 10_000)) == 300
        reader.stdin.write("again\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["300", "7"]
        reader.stdin.write("quit\n")
        reader.stdin.flush()
        assert reader.wait(timeout=CHILD_TIMEOUT) == 0
    finally:
        engine.close()
        if reader.poll() is None:
            reader.kill()
            reader.wait()
