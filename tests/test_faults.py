"""Fault injection: a failed engine call never changes the store, and the store recovers.

Three layers of faults:

- Injected (``raftstore.testing.faults``): every store operation is run
  once per engine call it makes, with that call failing (EIO or ENOSPC);
  after each failure the store must hold exactly what it held before, the
  error must be a `StorageError` carrying the errno and naming the failed
  engine call, and once the fault clears the operation must succeed. Also
  open, meta-record creation, close, unsynced ``sync()`` and faults that
  persist until cleared.
- LMDB's map-full path: a map that may not grow any further.
- A real full disk: a small tmpfs per disk engine (root only; otherwise
  skipped with the reason).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from store_state import State, state_of

import raftstore
from raftstore import Log, LogType, RaftStore, StorageError
from raftstore.testing.faults import FaultPlan, register_faulty_engine

ENGINES = ["memory", "lmdb", "rocksdb", "leveldb"]
DISK_ENGINES = ["lmdb", "rocksdb", "leveldb"]
MAX = 2**64 - 1
#: Bound on the engine calls one store operation may make (each is failed in turn).
MAX_ENGINE_CALLS = 50


def _usable(engine: str) -> str:
    for info in raftstore.available_engines():
        if info.name == engine and not info.available:
            pytest.skip(f"engine {engine!r} is not usable here: {info.error}")
    return engine


@dataclass
class Faulty:
    """A fault-injecting wrapper of one engine, and how to open a store on it."""

    engine: str
    name: str
    plan: FaultPlan
    path: Path | None

    @property
    def persistent(self) -> bool:
        return self.path is not None

    def open(self, **options: Any) -> RaftStore:
        if self.path is None:
            return raftstore.open(f"{self.name}://", **options)
        return raftstore.open(self.path, engine=self.name, **options)


@pytest.fixture(params=ENGINES)
def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Faulty]:
    """A wrapper of each engine with its own `FaultPlan`, registered as ``faulty-<engine>``."""
    engine = _usable(str(request.param))
    plan = FaultPlan()
    name = register_faulty_engine(engine, plan)
    yield Faulty(engine, name, plan, None if engine == "memory" else tmp_path / "db")
    plan.reset()


def entry(index: int, term: int = 1) -> Log:
    """A log whose data names its index and term, so a mix-up shows."""
    return Log(
        index,
        term,
        LogType.COMMAND,
        data=f"{index}/{term}".encode() * 8,
        extensions=b"x" if index % 3 == 0 else b"",
        appended_at=1_700_000_000_000_000_000 + index,
    )


def fill(store: RaftStore) -> None:
    """The state every scenario starts from: logs 1..50, two stable keys."""
    store.store_logs([entry(i) for i in range(1, 51)])
    store.set(b"key", b"value-1")
    store.set_uint64(b"CurrentTerm", 3)


#: Store operations, each a call on a filled store (results are discarded).
OPERATIONS: dict[str, Callable[[RaftStore], object]] = {
    "store_logs-append": lambda s: s.store_logs([entry(i) for i in range(51, 81)]),
    "store_logs-overwrite": lambda s: s.store_logs([entry(i, 2) for i in range(40, 61)]),
    "store_log": lambda s: s.store_log(entry(51)),
    "delete_range-prefix": lambda s: s.delete_range(0, 10),
    "delete_range-suffix": lambda s: s.delete_range(45, MAX),
    "delete_range-middle": lambda s: s.delete_range(20, 30),
    "delete_range-all": lambda s: s.delete_range(0, MAX),
    "set": lambda s: s.set(b"key", b"value-2"),
    "set-new": lambda s: s.set(b"other", b""),
    "set_uint64": lambda s: s.set_uint64(b"CurrentTerm", 4),
    "get_log": lambda s: s.get_log(7),
    "get": lambda s: s.get(b"key"),
    "get_uint64": lambda s: s.get_uint64(b"CurrentTerm"),
    "iter_logs": lambda s: list(s.iter_logs()),
    "iter_stable": lambda s: list(s.iter_stable()),
    "sync": lambda s: s.sync(),
    "compact": lambda s: s.compact(),
}


def _storage_error(call: Callable[[Any], object], argument: Any) -> StorageError | None:
    """Run ``call(argument)``; return the `StorageError` it raised, or None."""
    try:
        call(argument)
    except StorageError as exc:
        return exc
    return None


def _expected_after(operation: str) -> State:
    """The state after *operation* succeeds, computed on a plain in-memory store."""
    with raftstore.open("memory://") as reference:
        fill(reference)
        OPERATIONS[operation](reference)
        return state_of(reference)


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_each_engine_call_of_an_operation_can_fail_without_changing_the_store(
    faulty: Faulty, operation: str
) -> None:
    """Fail the 1st, 2nd, ... engine call of *operation* until it makes no more calls."""
    call = OPERATIONS[operation]
    store = faulty.open()
    try:
        fill(store)
        before = state_of(store)
        failures = 0
        for position in range(MAX_ENGINE_CALLS):
            code = errno.ENOSPC if position % 2 else errno.EIO
            faulty.plan.reset()
            fault = faulty.plan.inject("any", code, after=position)
            exc = _storage_error(call, store)
            if exc is not None:
                assert fault.fired == 1, f"{operation}: {exc!r} but no fault was injected"
                failed_call = next(r for r in faulty.plan.history if r.fault is fault).operation
                assert exc.errno == code, f"{operation}: {exc!r} lost the errno"
                assert "injected fault" in str(exc), str(exc)
                assert failed_call in str(exc), str(exc)
                assert isinstance(exc.__cause__, OSError)
                faulty.plan.clear()
                after_fault = state_of(store)
                assert after_fault == before, (
                    f"{operation} on {faulty.engine}: engine call {position + 1}"
                    f" ({failed_call}) failed with {errno.errorcode[code]}, the call raised,"
                    f" and yet the store changed: first/last {before.first}/{before.last}"
                    f" -> {after_fault.first}/{after_fault.last}, entries"
                    f" {len(before.logs)} -> {len(after_fault.logs)}"
                )
                failures += 1
                continue
            assert fault.fired == 0, f"{operation} swallowed an injected fault"
            break
        else:
            pytest.fail(f"{operation} still failed after {MAX_ENGINE_CALLS} injected faults")
        faulty.plan.clear()
        assert failures > 0, f"{operation} made no engine call to fail"
        expected = _expected_after(operation)
        assert state_of(store) == expected, f"{operation} did not work once the faults cleared"
    finally:
        faulty.plan.reset()
        store.close()
    if faulty.persistent:
        with faulty.open() as reopened:
            assert state_of(reopened) == expected, f"{operation}: wrong state after reopen"


@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_each_engine_call_of_open_can_fail_and_open_works_once_it_clears(
    faulty: Faulty, existing: bool
) -> None:
    if existing:
        if not faulty.persistent:
            pytest.skip("an in-memory store does not exist before it is opened")
        with faulty.open() as store:
            fill(store)
    for position in range(MAX_ENGINE_CALLS):
        faulty.plan.reset()
        fault = faulty.plan.inject("any", errno.EIO, after=position)
        opened: list[RaftStore] = []
        exc = _storage_error(lambda into: into.append(faulty.open()), opened)
        if exc is not None:
            assert fault.fired == 1, repr(exc)
            assert "injected fault" in str(exc)
            continue
        assert fault.fired == 0
        store = opened[0]
        break
    else:
        pytest.fail(f"open still failed after {MAX_ENGINE_CALLS} injected faults")
    faulty.plan.reset()
    try:
        # The last open succeeded; every failed one released what it held.
        assert position > 2, f"open made only {position} engine calls"
        if existing:
            assert store.last_index() == 50
            assert store.get(b"key") == b"value-1"
        else:
            fill(store)
    finally:
        store.close()
    with faulty.open() as again:
        assert again.last_index() == (50 if faulty.persistent else 0)


def test_a_failed_meta_write_at_creation_leaves_a_store_that_opens(faulty: Faulty) -> None:
    fault = faulty.plan.inject("write", errno.ENOSPC, namespace="meta")
    with pytest.raises(StorageError, match=r"write.*No space left on device"):
        faulty.open()
    assert fault.fired == 1
    faulty.plan.reset()
    with faulty.open(codec="cbor") as store:
        assert store.codec == "cbor"
        fill(store)
    if faulty.persistent:
        with faulty.open() as store:
            assert store.codec == "cbor"
            assert store.last_index() == 50


def test_a_failed_close_still_closes_and_releases_the_store(faulty: Faulty) -> None:
    store = faulty.open()
    fill(store)
    fault = faulty.plan.inject("close", errno.EIO)
    with pytest.raises(StorageError, match=r"close.*injected fault"):
        store.close()
    assert fault.fired == 1
    assert store.closed
    with pytest.raises(raftstore.StoreClosedError):
        store.last_index()
    store.close()  # idempotent, even after a failed close
    if faulty.persistent:
        with faulty.open() as reopened:
            assert reopened.last_index() == 50
            assert reopened.get_uint64(b"CurrentTerm") == 3


def test_unsynced_writes_survive_a_failed_sync(faulty: Faulty) -> None:
    store = faulty.open(sync=False)
    try:
        fill(store)
        before = state_of(store)
        fault = faulty.plan.inject("sync", errno.EIO, times=2)
        for _ in range(2):
            with pytest.raises(StorageError, match=r"sync.*Input/output error"):
                store.sync()
        assert fault.fired == 2
        assert state_of(store) == before
        faulty.plan.clear()
        store.sync()
        store.store_log(entry(51))
        store.sync()
    finally:
        store.close()
    if faulty.persistent:
        with faulty.open() as reopened:
            assert reopened.last_index() == 51


def test_a_persistent_fault_fails_every_write_until_it_clears(faulty: Faulty) -> None:
    store = faulty.open()
    try:
        fill(store)
        before = state_of(store)
        fault = faulty.plan.inject("write", errno.ENOSPC, times=None)
        writes: list[Callable[[RaftStore], object]] = [
            lambda s: s.store_logs([entry(i) for i in range(51, 60)]),
            lambda s: s.store_logs([entry(i, 2) for i in range(10, 60)]),
            lambda s: s.delete_range(0, 25),
            lambda s: s.delete_range(25, MAX),
            lambda s: s.set(b"key", b"value-2"),
            lambda s: s.set_uint64(b"CurrentTerm", 4),
        ]
        for write in writes * 3:
            with pytest.raises(StorageError, match="No space left on device"):
                write(store)
            assert (store.first_index(), store.last_index()) == (1, 50)
            assert store.get_log(50) == entry(50)
        assert fault.fired == len(writes) * 3
        assert state_of(store) == before
        faulty.plan.clear()
        for write in writes:
            write(store)
        assert (store.first_index(), store.last_index()) == (0, 0)
        assert store.get(b"key") == b"value-2"
        assert store.get_uint64(b"CurrentTerm") == 4
    finally:
        store.close()


def test_faults_in_one_namespace_spare_the_others(faulty: Faulty) -> None:
    with faulty.open() as store:
        fill(store)
        faulty.plan.inject("write", errno.EIO, namespace="stable", times=None)
        store.store_log(entry(51))
        store.delete_range(0, 5)
        with pytest.raises(StorageError):
            store.set_uint64(b"CurrentTerm", 9)
        faulty.plan.clear()
        assert store.get_uint64(b"CurrentTerm") == 3
        assert (store.first_index(), store.last_index()) == (6, 51)


# -- LMDB's map-full path ------------------------------------------------------

_MIB = 1024 * 1024


def _lmdb(tmp_path: Path, max_map_size: int) -> RaftStore:
    _usable("lmdb")
    return raftstore.open(tmp_path / "db", engine="lmdb", map_size=_MIB, max_map_size=max_map_size)


def test_lmdb_map_full_leaves_the_store_as_it_was_and_recovers(tmp_path: Path) -> None:
    store = _lmdb(tmp_path, _MIB)
    try:
        store.set_uint64(b"CurrentTerm", 1)
        next_index = 1
        full: StorageError | None = None
        for _ in range(1000):
            before = state_of(store)
            batch = [
                Log(i, 1, data=bytes([i % 251]) * 512) for i in range(next_index, next_index + 64)
            ]
            try:
                store.store_logs(batch)
            except StorageError as exc:
                full = exc
                break
            next_index += 64
            store.set_uint64(b"CurrentTerm", next_index)
        assert full is not None, "a 1 MiB map that may not grow never filled up"
        assert "map is full" in str(full), str(full)
        assert "max_map_size" in str(full), str(full)
        assert state_of(store) == before
        # A stable write that does not fit fails the same way.
        with pytest.raises(StorageError, match="map is full"):
            store.set(b"big", b"x" * 400_000)
        assert state_of(store) == before
        # Compaction frees pages and the write that failed then fits. LMDB
        # reuses the pages a transaction freed only after a later one has
        # committed: in Raft's flow that is the stable write after compaction.
        store.delete_range(0, next_index // 2)
        store.set_uint64(b"CurrentTerm", next_index)
        store.store_logs(batch)
        assert store.last_index() == next_index + 63
        assert store.get_log(next_index) == batch[0]
    finally:
        store.close()
    # Reopening with room to grow also clears the condition.
    with _lmdb(tmp_path, 64 * _MIB) as grown:
        grown.store_logs(
            [Log(i, 2, data=b"y" * 1024) for i in range(next_index + 64, next_index + 3000)]
        )
        assert grown.last_index() == next_index + 2999
        assert grown.get_uint64(b"CurrentTerm") == next_index
        assert grown.first_index() == next_index // 2 + 1


def test_lmdb_batch_larger_than_the_whole_map_is_refused_whole(tmp_path: Path) -> None:
    with _lmdb(tmp_path, 2 * _MIB) as store:
        fill(store)
        before = state_of(store)
        huge = [Log(i, 1, data=b"z" * 4096) for i in range(51, 51 + 1024)]  # 4 MiB
        with pytest.raises(StorageError, match="map is full"):
            store.store_logs(huge)
        assert state_of(store) == before
        store.store_logs(huge[:64])
        assert store.last_index() == 51 + 63


# -- a real full disk ------------------------------------------------------------
#
# The engine work runs in a child process with a hard timeout: a full run once
# hung here for over 12 minutes (RocksDB on a full tmpfs, every thread waiting
# on a futex), and no in-process timeout can interrupt a native call. A stuck
# child dumps its Python stacks (faulthandler), is killed, and fails this test.

_TMPFS_SIZE = 8 * _MIB
_BALLAST = 3 * _MIB
#: The child normally takes a few seconds; past this it dumps its stacks and exits.
_DISK_FULL_SECONDS = 120
#: ... and past this the parent SIGKILLs it.
_DISK_FULL_KILL_SECONDS = _DISK_FULL_SECONDS + 30
_MOUNT_SECONDS = 60


def _unmount(mount_point: Path) -> None:
    """Unmount (bounded), lazily when the normal unmount fails or hangs."""
    try:
        done = subprocess.run(
            ["umount", str(mount_point)], capture_output=True, check=False, timeout=_MOUNT_SECONDS
        )
        failed = done.returncode != 0
    except subprocess.TimeoutExpired:
        failed = True
    if failed:
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                ["umount", "-l", str(mount_point)],
                capture_output=True,
                check=False,
                timeout=_MOUNT_SECONDS,
            )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted under tmp_path (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the disk-full test cannot run")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={_TMPFS_SIZE}", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
            timeout=_MOUNT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        _unmount(mount_point)
        pytest.fail(f"mounting a tmpfs did not finish in {_MOUNT_SECONDS} s")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield mount_point
    finally:
        _unmount(mount_point)


_SMALL_DISK_OPTIONS: dict[str, dict[str, Any]] = {
    "lmdb": {"map_size": _MIB, "max_map_size": 64 * _MIB},
    "rocksdb": {"write_buffer_size": _MIB},
    "leveldb": {"write_buffer_size": _MIB},
}


def _fill_the_disk_then_recover(engine: str, small_disk: Path) -> None:
    """The disk-full scenario; run in a child process by the test below."""
    options = _SMALL_DISK_OPTIONS[engine]
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * _BALLAST)
    path = small_disk / "db"
    store = raftstore.open(path, engine=engine, **options)
    next_index, acknowledged = 1, 0
    written: dict[int, bytes] = {}
    try:
        full: StorageError | None = None
        for _ in range(10_000):
            batch = [Log(i, 1, data=os.urandom(1024)) for i in range(next_index, next_index + 64)]
            written.update((log.index, log.data) for log in batch)
            try:
                store.store_logs(batch)
                next_index += 64
                store.set_uint64(b"acknowledged", next_index - 1)
                acknowledged = next_index - 1
            except StorageError as exc:
                full = exc
                break
        assert full is not None, "the 8 MiB disk never filled up"
        assert "write" in str(full), str(full)
        assert acknowledged > 0
        # Reads still work on the full disk and show exactly what was acknowledged
        # (the failed call may have been the batch or the set_uint64 after it).
        assert store.first_index() == 1
        assert store.last_index() in (acknowledged, acknowledged + 64), store.last_index()
        assert store.get_log(acknowledged).data == written[acknowledged]
        ballast.unlink()
        try:
            store.set_uint64(b"after", 1)
            same_handle_recovered = True
        except StorageError:
            # RocksDB and LevelDB stop writing after a failed write until reopened.
            same_handle_recovered = False
        assert same_handle_recovered or engine != "lmdb"
    finally:
        # RocksDB's close reports the earlier write error; the lock is released anyway.
        with contextlib.suppress(StorageError):
            store.close()
    with raftstore.open(path, engine=engine, **options) as reopened:
        last = reopened.last_index()
        assert last in (acknowledged, acknowledged + 64), (last, acknowledged)
        assert reopened.get_uint64(b"acknowledged") == acknowledged
        logs = list(reopened.iter_logs())
        assert [log.index for log in logs] == list(range(1, last + 1))
        assert all(log.data == written[log.index] for log in logs)
        reopened.delete_range(0, last // 2)
        reopened.store_logs([Log(i, 2, data=b"again") for i in range(last + 1, last + 65)])
        reopened.sync()
        assert reopened.last_index() == last + 64
        assert reopened.get_log(last + 64).data == b"again"


_DISK_FULL_CHILD = f"""
import ctypes, faulthandler, signal, sys
from pathlib import Path
try:  # die with the test process (PR_SET_PDEATHSIG)
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
faulthandler.dump_traceback_later({_DISK_FULL_SECONDS}, exit=True)
sys.path.insert(0, sys.argv[1])
from test_faults import _fill_the_disk_then_recover
_fill_the_disk_then_recover(sys.argv[2], Path(sys.argv[3]))
print("done")
"""


@pytest.mark.parametrize("engine", DISK_ENGINES)
def test_real_disk_full_loses_nothing_and_recovers_after_space_is_freed(
    engine: str, small_disk: Path
) -> None:
    _usable(engine)
    command = [
        sys.executable, "-c", _DISK_FULL_CHILD, str(Path(__file__).parent), engine, str(small_disk)
    ]  # fmt: skip
    child = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = child.communicate(timeout=_DISK_FULL_KILL_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        stdout, stderr = child.communicate(timeout=60)
        pytest.fail(
            f"{engine}: the disk-full scenario hung for {_DISK_FULL_KILL_SECONDS} s and was"
            f" killed:\n{stderr[-4000:]}"
        )
    finally:
        if child.poll() is None:
            child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=60)
    assert child.returncode != 1 or "Timeout (" not in stderr, (
        f"{engine}: the disk-full scenario hung for {_DISK_FULL_SECONDS} s; its stacks:\n"
        f"{stderr[-4000:]}"
    )
    assert child.returncode == 0, (
        f"{engine}: the disk-full scenario failed (exit {child.returncode}):\n{stderr[-4000:]}"
    )
    assert stdout.strip() == "done", stdout
