"""`raftstore.aio`: the async store, its worker thread, group commit, ordering, cancellation.

Plain ``asyncio.run`` (no plugin); every wait is bounded. Engine calls are
observed by wrapping `RaftStore` methods at class level, so the store that
`raftstore.aio.open` makes is the one watched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import raftstore
import raftstore.aio
from raftstore import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidLogError,
    Log,
    LogNotFoundError,
    RaftStore,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    UnknownEngineError,
)
from raftstore.aio import AsyncStore
from raftstore.log import MAX_UINT64
from raftstore.protocols import Capabilities
from raftstore.testing import OpenStore, RaftStoreConformance

_T = TypeVar("_T")

#: Upper bound of every test's wait (a hang fails the test rather than the run).
TIMEOUT = 60.0

ENGINES = ["memory", "lmdb", "rocksdb"]


def run(coro: Coroutine[Any, Any, _T], timeout: float = TIMEOUT) -> _T:
    """Run *coro* with ``asyncio.run``, failing with TimeoutError past *timeout*."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def target(engine: str, tmp_path: Path) -> str:
    if engine == "rocksdb":
        pytest.importorskip("rocksdict", reason="the rocksdb engine needs raftstore[rocksdb]")
    return "memory://" if engine == "memory" else f"{engine}://{tmp_path}/db"


def logs(first: int, last: int, term: int = 1) -> list[Log]:
    return [Log(i, term, data=b"%d/%d" % (i, term)) for i in range(first, last + 1)]


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop until *condition* holds (bounded by the caller's wait_for)."""
    while not condition():
        await asyncio.sleep(0.001)
    assert condition(), what


class Watch:
    """Wraps `RaftStore` methods: records threads and syncs, and can hold or fail calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: set[int] = set()
        self.syncs = 0
        self.applied: list[bytes] = []
        self.durable: set[bytes] = set()
        #: The next sync with this key applied but not yet durable fails.
        self.fail_sync_with: bytes | None = None
        self.fail_set: set[bytes] = set()
        #: ``set`` of these keys waits for `release` (after setting `entered`).
        self.hold: set[bytes] = set()
        self.entered = threading.Event()
        self.release = threading.Event()
        for name in (
            "first_index",
            "last_index",
            "get_log",
            "store_log",
            "store_logs",
            "delete_range",
            "get",
            "get_uint64",
            "set_uint64",
            "iter_logs",
            "close",
        ):
            monkeypatch.setattr(RaftStore, name, self._recording(getattr(RaftStore, name)))
        original_set, original_sync = RaftStore.set, RaftStore.sync

        def watched_set(store: RaftStore, key: bytes, value: Any) -> None:
            self.threads.add(threading.get_ident())
            if key in self.hold:
                self.entered.set()
                assert self.release.wait(TIMEOUT)
            if key in self.fail_set:
                raise StorageError(f"planned failure of set({key!r}); nothing written")
            original_set(store, key, value)
            self.applied.append(key)

        def watched_sync(store: RaftStore) -> None:
            self.threads.add(threading.get_ident())
            pending = set(self.applied) - self.durable
            if self.fail_sync_with is not None and self.fail_sync_with in pending:
                self.fail_sync_with = None
                raise StorageError("planned sync failure")
            original_sync(store)
            self.syncs += 1
            self.durable.update(self.applied)

        monkeypatch.setattr(RaftStore, "set", watched_set)
        monkeypatch.setattr(RaftStore, "sync", watched_sync)
        original_open = raftstore.open

        def watched_open(*args: Any, **kwargs: Any) -> RaftStore:
            self.threads.add(threading.get_ident())
            return original_open(*args, **kwargs)

        monkeypatch.setattr(raftstore, "open", watched_open)

    def _recording(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.threads.add(threading.get_ident())
            return method(*args, **kwargs)

        return recorded


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Watch:
    return Watch(monkeypatch)


# -- the contract on every engine -----------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_contract(engine: str, tmp_path: Path) -> None:
    where = target(engine, tmp_path)

    async def scenario() -> None:
        store = await raftstore.aio.open(where)
        assert isinstance(store, AsyncStore)
        assert (store.engine, store.codec) == (engine, "msgpack")
        assert store.path == (None if engine == "memory" else tmp_path / "db")
        assert store.sync_writes is True
        assert store.group_commit is True
        assert store.is_monotonic is False
        assert store.read_only is False
        assert isinstance(store.capabilities, Capabilities)
        assert (await store.first_index(), await store.last_index()) == (0, 0)
        with pytest.raises(LogNotFoundError):
            await store.get_log(1)
        await store.store_logs(logs(1, 10))
        await store.store_log(Log(11, 2, data=b"eleven"))
        assert (await store.first_index(), await store.last_index()) == (1, 11)
        assert await store.get_log(11) == Log(11, 2, data=b"eleven")
        await store.delete_range(1, 3)
        assert await store.first_index() == 4
        assert [log.index async for log in store.iter_logs(5, 8)] == [5, 6, 7, 8]
        assert [log async for log in store.iter_logs()] == [
            *logs(4, 10),
            Log(11, 2, data=b"eleven"),
        ]
        with pytest.raises(InvalidLogError):
            await store.store_logs([Log(12, 1), Log(0, 1)])
        with pytest.raises(InvalidArgumentError):
            await store.store_logs(None)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await store.get_log(-1)
        assert await store.last_index() == 11
        assert await store.get(b"vote") is None
        await store.set(b"vote", bytearray(b"node-2"))
        assert await store.get(b"vote") == b"node-2"
        assert await store.get_uint64(b"CurrentTerm") == 0
        await store.set_uint64(b"CurrentTerm", MAX_UINT64)
        assert await store.get_uint64(b"CurrentTerm") == MAX_UINT64
        assert dict([pair async for pair in store.iter_stable()]) == {
            b"vote": b"node-2",
            b"CurrentTerm": MAX_UINT64.to_bytes(8, "big"),
        }
        await store.stage_commit_index(9)
        await store.store_log(Log(12, 2))
        assert await store.get_commit_index() == 9
        await store.sync()
        await store.compact()
        assert await store.disk_usage() >= 0
        await store.close()
        await store.close()
        assert store.closed
        with pytest.raises(StoreClosedError):
            await store.get_log(4)
        with pytest.raises(StoreClosedError):
            await store.set(b"k", b"v")
        with pytest.raises(StoreClosedError):
            store.iter_logs()
        if engine != "memory":
            async with await raftstore.aio.open(where) as again:
                assert await again.last_index() == 12
                assert await again.get(b"vote") == b"node-2"
            assert again.closed

    run(scenario())


def test_iter_logs_in_many_chunks_and_stopped_early(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await raftstore.aio.open(f"lmdb://{tmp_path}/db") as store:
            await store.store_logs(logs(1, 2000))
            assert [log.index async for log in store.iter_logs()] == list(range(1, 2001))
            iterator = store.iter_logs(100)
            assert (await iterator.__anext__()).index == 100
            close: Callable[[], Awaitable[None]] = iterator.aclose  # type: ignore[attr-defined]
            await close()
            with pytest.raises(StopAsyncIteration):
                await iterator.__anext__()
            with pytest.raises(InvalidArgumentError):
                async for _ in store.iter_logs(-1):
                    pass

    run(scenario())


def test_open_errors_are_raftstore_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(UnknownEngineError):
            await raftstore.aio.open("nosuch://x")
        with pytest.raises(ConfigurationError):
            await raftstore.aio.open(f"lmdb://{tmp_path}/db?sync=true", sync=False)
        with pytest.raises(ConfigurationError):
            await raftstore.aio.open(f"lmdb://{tmp_path}/db", sync="yes")  # type: ignore[arg-type]
        async with await raftstore.aio.open(f"lmdb://{tmp_path}/db?sync=true") as store:
            assert store.group_commit
            with pytest.raises(StoreLockedError):
                await raftstore.aio.open(tmp_path / "db")
            await store.set(b"k", b"v")
        async with await raftstore.aio.open(tmp_path / "db", read_only=True) as reader:
            assert await reader.get(b"k") == b"v"
            with pytest.raises(ReadOnlyError):
                await reader.set(b"k", b"w")
        async with await raftstore.aio.open(f"lmdb://{tmp_path}/db?sync=false") as unsynced:
            assert not unsynced.group_commit
            assert not unsynced.sync_writes

    run(scenario())


# -- where engine calls run -----------------------------------------------------------------------


def test_engine_calls_never_run_on_the_loop_thread(watch: Watch, tmp_path: Path) -> None:
    loop_thread = threading.get_ident()

    async def scenario() -> int:
        store = await raftstore.aio.open(f"lmdb://{tmp_path}/db")
        await store.store_logs(logs(1, 5))
        await asyncio.gather(store.get_log(3), store.first_index(), store.last_index())
        await store.set(b"k", b"v")
        await store.get(b"k")
        await store.get_uint64(b"n")
        await store.set_uint64(b"n", 1)
        await store.delete_range(1, 2)
        assert [log.index async for log in store.iter_logs()] == [3, 4, 5]
        ident = store.worker_thread.ident
        await store.close()
        assert ident is not None
        return ident

    worker = run(scenario())
    assert watch.syncs > 0
    assert loop_thread not in watch.threads
    assert watch.threads == {worker}


# -- group commit ---------------------------------------------------------------------------------


async def _hold_worker(store: AsyncStore, watch: Watch) -> asyncio.Task[None]:
    """Occupy the worker with a held ``set(b"gate")`` until ``watch.release`` is set."""
    watch.hold.add(b"gate")
    gate = asyncio.ensure_future(store.set(b"gate", b"open"))
    await eventually(watch.entered.is_set, "the worker took the gate")
    return gate


def test_concurrent_writes_share_one_sync(watch: Watch, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await raftstore.aio.open(f"lmdb://{tmp_path}/db") as store:
            gate = await _hold_worker(store, watch)
            syncs_before = watch.syncs
            keys = [b"key-%d" % i for i in range(50)]

            async def write(key: bytes) -> None:
                await store.set(key, key)
                # Resumed only once the sync after its write returned.
                assert key in watch.durable

            writers = [asyncio.ensure_future(write(key)) for key in keys]
            await asyncio.sleep(0)  # every writer has queued its call
            watch.release.set()
            await asyncio.gather(gate, *writers)
            syncs = watch.syncs - syncs_before
            # One sync for the gate's group, then one for the group of all 50 writes.
            assert syncs == 2, f"{syncs} syncs for 50 concurrent writes"
            assert [await store.get(key) for key in keys] == keys

    run(scenario())


def test_unsynced_store_never_syncs_per_group(watch: Watch) -> None:
    async def scenario() -> None:
        store = await raftstore.aio.open("memory://", sync=False)
        await asyncio.gather(*(store.set(b"k%d" % i, b"v") for i in range(20)))
        assert watch.syncs == 0
        await store.close()

    run(scenario())


def test_a_failing_write_fails_only_its_caller(watch: Watch, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await raftstore.aio.open(f"lmdb://{tmp_path}/db") as store:
            gate = await _hold_worker(store, watch)
            watch.fail_set.add(b"broken")
            calls = [
                store.set(b"a", b"1"),
                store.store_logs([Log(1, 1), Log(0, 1)]),  # invalid: nothing stored
                store.store_logs(logs(1, 3)),
                store.set(b"broken", b"x"),  # the engine fails it
                store.store_log(Log(4, 1)),
                store.set(b"b", b"2"),
            ]
            futures = [asyncio.ensure_future(call) for call in calls]
            await asyncio.sleep(0)
            syncs_before = watch.syncs
            watch.release.set()
            results = await asyncio.gather(*futures, return_exceptions=True)
            await gate
            assert [type(result) for result in results] == [
                type(None),
                InvalidLogError,
                type(None),
                StorageError,
                type(None),
                type(None),
            ]
            # One sync for the gate's group, one for the six calls.
            assert watch.syncs - syncs_before == 2
            assert [log async for log in store.iter_logs()] == [*logs(1, 3), Log(4, 1)]
            assert (await store.get(b"a"), await store.get(b"b")) == (b"1", b"2")
            assert await store.get(b"broken") is None

    run(scenario())


def test_a_failed_group_sync_fails_every_caller_and_later_writes(
    watch: Watch, tmp_path: Path
) -> None:
    async def scenario() -> None:
        store = await raftstore.aio.open(f"lmdb://{tmp_path}/db")
        await store.set(b"before", b"1")
        gate = await _hold_worker(store, watch)
        futures = [asyncio.ensure_future(store.set(b"k%d" % i, b"v")) for i in range(5)]
        reader = asyncio.ensure_future(store.get(b"before"))
        await asyncio.sleep(0)
        watch.fail_sync_with = b"k0"
        watch.release.set()
        results = await asyncio.gather(*futures, reader, return_exceptions=True)
        await gate
        assert all(isinstance(result, StorageError) for result in results), results
        # Applied (reads show them) but of unknown durability; writes are refused now.
        assert await store.get(b"k0") == b"v"
        with pytest.raises(StorageError, match="earlier group sync failed"):
            await store.set(b"after", b"1")
        assert await store.get(b"after") is None
        await store.close()
        assert store.closed

    run(scenario())


# -- ordering -------------------------------------------------------------------------------------


def test_calls_apply_in_submission_order() -> None:
    async def scenario() -> None:
        async with await raftstore.aio.open("memory://") as store:
            results = await asyncio.gather(
                store.set(b"k", b"1"),
                store.get(b"k"),
                store.set(b"k", b"2"),
                store.get(b"k"),
                store.store_logs(logs(1, 5)),
                store.last_index(),
                store.delete_range(3, 5),
                store.last_index(),
                store.get_log(4),
                return_exceptions=True,
            )
            assert results[:8] == [None, b"1", None, b"2", None, 5, None, 2]
            assert isinstance(results[8], LogNotFoundError)

    run(scenario())


def test_random_concurrent_operations_match_a_sequential_store() -> None:
    """Many calls started at once return what the same calls return one by one, in order."""
    import random

    chooser = random.Random(16)
    operations: list[tuple[str, tuple[Any, ...]]] = []
    for _ in range(400):
        kind = chooser.choice(["store_logs", "delete_range", "get_log", "last_index", "set", "get"])
        if kind == "store_logs":
            first = chooser.randint(1, 30)
            operations.append((kind, (logs(first, first + chooser.randint(0, 4), 2),)))
        elif kind == "delete_range":
            operations.append((kind, (chooser.randint(0, 35), chooser.randint(0, 35))))
        elif kind == "get_log":
            operations.append((kind, (chooser.randint(1, 35),)))
        elif kind in ("set", "get"):
            key = b"k%d" % chooser.randint(0, 3)
            operations.append(
                (kind, (key, b"%d" % chooser.randint(0, 9)) if kind == "set" else (key,))
            )
        else:
            operations.append((kind, ()))

    expected: list[object] = []
    with raftstore.open("memory://") as plain:
        for name, args in operations:
            try:
                expected.append(getattr(plain, name)(*args))
            except LogNotFoundError:
                expected.append(LogNotFoundError)

    async def scenario() -> list[object]:
        async with await raftstore.aio.open("memory://") as store:
            results = await asyncio.gather(
                *(getattr(store, name)(*args) for name, args in operations),
                return_exceptions=True,
            )
        return [LogNotFoundError if isinstance(r, LogNotFoundError) else r for r in results]

    assert run(scenario()) == expected


# -- cancellation ---------------------------------------------------------------------------------


def test_cancelling_a_queued_write_withdraws_it(watch: Watch, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await raftstore.aio.open(f"lmdb://{tmp_path}/db") as store:
            gate = await _hold_worker(store, watch)
            queued = asyncio.ensure_future(store.set(b"queued", b"never"))
            later = asyncio.ensure_future(store.set(b"later", b"yes"))
            await asyncio.sleep(0)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            watch.release.set()
            await asyncio.gather(gate, later)
            assert await store.get(b"queued") is None  # withdrawn: never applied
            assert await store.get(b"later") == b"yes"
            assert b"queued" not in watch.applied

    run(scenario())


@pytest.mark.parametrize("fails", [False, True], ids=["write-succeeds", "write-fails"])
def test_cancelling_a_write_in_progress_waits_for_its_outcome(
    watch: Watch, tmp_path: Path, fails: bool
) -> None:
    async def scenario() -> None:
        async with await raftstore.aio.open(f"lmdb://{tmp_path}/db") as store:
            await store.set(b"key", b"old")
            watch.hold.add(b"key")
            if fails:
                watch.fail_set.add(b"key")
            task = asyncio.ensure_future(store.set(b"key", b"new"))
            await eventually(watch.entered.is_set, "the worker is inside the write")
            task.cancel()
            for _ in range(20):
                await asyncio.sleep(0)
            # The write is in progress: the cancelled await has not returned.
            assert not task.done()
            watch.release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Settled when the await returned: applied entirely, or (failed) not at all.
            assert await store.get(b"key") == (b"old" if fails else b"new")
            if not fails:
                assert b"key" in watch.durable

    run(scenario())


def test_shield_keeps_the_outcome_of_a_cancelled_write(watch: Watch) -> None:
    async def scenario() -> None:
        async with await raftstore.aio.open("memory://") as store:
            gate = await _hold_worker(store, watch)
            write = asyncio.ensure_future(store.store_logs(logs(1, 3)))
            caller = asyncio.ensure_future(asyncio.shield(write))
            await asyncio.sleep(0)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            watch.release.set()
            await gate
            await write  # the write's own outcome: stored (it would raise had it failed)
            assert write.exception() is None
            assert await store.last_index() == 3

    run(scenario())


def test_cancelled_open_leaves_nothing_open(tmp_path: Path) -> None:
    async def scenario() -> None:
        opening = asyncio.ensure_future(raftstore.aio.open(f"lmdb://{tmp_path}/db"))
        await asyncio.sleep(0)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        # Whether the open had begun or not, the store is not left locked.
        async with await raftstore.aio.open(f"lmdb://{tmp_path}/db") as store:
            assert await store.last_index() == 0

    run(scenario())


# -- close ----------------------------------------------------------------------------------------


def test_close_drains_pending_calls_then_stops(tmp_path: Path) -> None:
    holder: list[AsyncStore] = []

    async def scenario() -> list[Any]:
        store = await raftstore.aio.open(f"lmdb://{tmp_path}/db")
        holder.append(store)
        pending = [asyncio.ensure_future(store.store_log(Log(i, 1))) for i in range(1, 101)]
        pending.append(asyncio.ensure_future(store.set(b"last", b"yes")))
        await asyncio.sleep(0)  # all queued
        await store.close()
        assert all(task.done() for task in pending)
        return [task.result() for task in pending]

    assert run(scenario()) == [None] * 101
    holder[0].worker_thread.join(TIMEOUT)
    assert not holder[0].worker_thread.is_alive()
    with raftstore.open(tmp_path / "db") as store:
        assert store.last_index() == 100
        assert store.get(b"last") == b"yes"


def test_wrap_runs_any_store_on_its_worker(tmp_path: Path) -> None:
    cache = raftstore.LogCache(raftstore.open(f"lmdb://{tmp_path}/db", sync=False), 64)

    async def scenario() -> None:
        async with raftstore.aio.wrap(cache, group_commit=True) as store:
            assert store.sync_writes
            await store.store_logs(logs(1, 10))
            assert await store.get_log(10) == logs(10, 10)[0]

    run(scenario())
    assert cache.closed


def test_a_dropped_store_warns_and_closes_on_its_worker(tmp_path: Path) -> None:
    threads: list[threading.Thread] = []

    async def scenario() -> None:
        store = await raftstore.aio.open(f"lmdb://{tmp_path}/db")
        await store.set(b"k", b"v")
        threads.append(store.worker_thread)
        with pytest.warns(ResourceWarning, match="unclosed async store"):
            del store  # the last reference: finalised at once

    run(scenario())
    threads[0].join(TIMEOUT)
    assert not threads[0].is_alive()
    with raftstore.open(tmp_path / "db") as reopened:  # the lock was released
        assert reopened.get(b"k") == b"v"


# -- the whole conformance suite through the async store ------------------------------------------


class _LoopThread:
    """An event loop on its own thread, for driving async stores from blocking code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


class BlockingFacade:
    """A blocking store over an `AsyncStore`: every call is a coroutine run on the loop thread."""

    def __init__(self, runner: _LoopThread, store: AsyncStore) -> None:
        self._runner = runner
        self._store = store

    engine = property(lambda self: self._store.engine)
    codec = property(lambda self: self._store.codec)
    path = property(lambda self: self._store.path)
    closed = property(lambda self: self._store.closed)
    read_only = property(lambda self: self._store.read_only)
    is_monotonic = property(lambda self: self._store.is_monotonic)
    capabilities = property(lambda self: self._store.capabilities)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)
        return lambda *args: self._runner.run(method(*args))

    def iter_logs(self, low: int = 1, high: int = MAX_UINT64) -> Iterator[Log]:
        iterator = self._store.iter_logs(low, high)
        while True:
            try:
                yield self._runner.run(iterator.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return

    def __enter__(self) -> BlockingFacade:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._runner.run(self._store.close())


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[_LoopThread]:
    runner = _LoopThread()
    yield runner
    runner.stop()


def async_opener(runner: _LoopThread, where: str | Path, **defaults: Any) -> OpenStore:
    def open_store(**options: Any) -> Any:
        store = runner.run(raftstore.aio.open(where, **{**defaults, **options}))
        return BlockingFacade(runner, store)

    return open_store


class TestAsyncMemory(RaftStoreConformance):
    """The conformance suite through `raftstore.aio` on ``memory://``."""

    @pytest.fixture
    def open_store(self, loop_thread: _LoopThread) -> OpenStore:
        return async_opener(loop_thread, "memory://")


class TestAsyncLmdb(RaftStoreConformance):
    """The conformance suite through `raftstore.aio` on ``lmdb://`` (group commit)."""

    @pytest.fixture
    def open_store(self, loop_thread: _LoopThread, tmp_path: Path) -> OpenStore:
        return async_opener(loop_thread, tmp_path / "db", engine="lmdb")


class TestAsyncRocksDB(RaftStoreConformance):
    """The conformance suite through `raftstore.aio` on ``rocksdb://`` (group commit)."""

    @pytest.fixture
    def open_store(self, loop_thread: _LoopThread, tmp_path: Path) -> OpenStore:
        pytest.importorskip("rocksdict", reason="the rocksdb engine needs raftstore[rocksdb]")
        return async_opener(loop_thread, tmp_path / "db", engine="rocksdb")
