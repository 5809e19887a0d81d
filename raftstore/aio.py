"""raftstore for asyncio: a store whose methods are coroutines, with group commit.

``await raftstore.aio.open(target, ...)`` takes the same arguments as
`raftstore.open` and returns an `AsyncStore`: the same methods, names and
errors, as coroutines; ``iter_logs`` and ``iter_stable`` as async iterators;
an async context manager.

Every engine call runs on the store's own worker thread (one per store), in
the order the calls were made; never on the event loop, never on the loop's
default executor. On a synced store (``sync=True``, the default) the store
underneath is opened with ``sync=False`` and the worker commits in groups:
it takes every call queued at that moment, applies the writes one by one
(each atomic on its own), calls ``sync()`` once, and only then resumes every
caller of the group. Each caller gets its own result or its own error.

Cancelling an awaited write never leaves it half-done: a write still queued
is withdrawn and never happens; a write the worker has taken runs to its end
(applied entirely, or failed and applied not at all), and the cancelled
await returns only once that is settled. ``docs/asyncio.md`` spells out
what each caller knows in every case.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
import warnings
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Generic, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlencode

import raftstore
from raftstore._wrapping import WrappedStoreAttributes
from raftstore.cache import read_batch
from raftstore.errors import ConfigurationError, StorageError, StoreClosedError
from raftstore.log import MAX_UINT64, Log
from raftstore.protocols import RaftStoreProtocol
from raftstore.registry import coerce_value
from raftstore.url import parse_target

__all__ = ["AsyncStore", "open", "wrap"]

_T = TypeVar("_T")
_Item = TypeVar("_Item")

#: Most calls the worker takes into one group (bounds a group's latency).
MAX_GROUP = 1024
#: Entries (or stable pairs) an async iterator fetches from the worker at a time.
ITER_CHUNK = 256

_QUEUED, _TAKEN, _WITHDRAWN = 0, 1, 2


class _Request:
    """One call handed to the worker, and how it ended."""

    __slots__ = (
        "args",
        "call",
        "error",
        "future",
        "loop",
        "settled",
        "state",
        "value",
        "waiter",
        "withdrawable",
        "write",
    )

    def __init__(
        self,
        call: Callable[..., Any],
        args: tuple[Any, ...],
        write: bool,
        loop: asyncio.AbstractEventLoop,
        withdrawable: bool = True,
    ) -> None:
        self.call = call
        self.args = args
        self.write = write
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.withdrawable = withdrawable
        self.state = _QUEUED
        # Written by the loop thread only (in `_settle_on_loop`).
        self.settled = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None


class _Close:
    """The worker's last request: drain, sync, close the store, stop."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()


_Outcome = tuple[_Request, BaseException | None, Any]


class _Worker:
    """The store's own thread: takes queued calls in groups and runs them in order."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Request | _Close] = queue.SimpleQueue()
        # Guards the QUEUED -> TAKEN / WITHDRAWN transitions of requests.
        self._state_lock = threading.Lock()
        self.store: RaftStoreProtocol | None = None
        self.group_commit = False
        self.owns_store = True
        #: The error of a group sync that failed; from then on writes are refused.
        self.sync_failure: BaseException | None = None
        self.close_request: _Close | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    # -- called from any thread --------------------------------------------------------

    def submit(self, request: _Request | _Close) -> None:
        self._queue.put(request)

    def withdraw(self, request: _Request) -> bool:
        """Take *request* back if the worker has not taken it yet; True when withdrawn."""
        with self._state_lock:
            if request.state == _QUEUED:
                request.state = _WITHDRAWN
                return True
            return False

    def close(self) -> _Close:
        """Ask the worker to drain, sync, close and stop (once); return the request."""
        with self._state_lock:
            if self.close_request is None:
                self.close_request = _Close()
                self._queue.put(self.close_request)
            return self.close_request

    # -- the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        get, get_nowait, lock = self._queue.get, self._queue.get_nowait, self._state_lock
        while True:
            group = [get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(get_nowait())
                except queue.Empty:
                    break
            with lock:
                taken: list[_Request | _Close] = []
                for item in group:
                    if type(item) is _Close:
                        taken.append(item)
                    elif item.state == _QUEUED:  # type: ignore[union-attr]
                        item.state = _TAKEN  # type: ignore[union-attr]
                        taken.append(item)
            if self._apply(taken):
                break
        self._refuse_stragglers()

    def _apply(self, group: list[_Request | _Close]) -> bool:
        """Run one group; True when it held the close request (the worker then stops)."""
        outcomes: list[_Outcome] = []
        append = outcomes.append
        wrote = False
        closing: _Close | None = None
        for item in group:
            if type(item) is _Close:
                closing = item
                continue
            assert isinstance(item, _Request)
            if closing is not None:
                append((item, _closed_error(), None))
                continue
            if item.write:
                if self.sync_failure is not None:
                    append((item, _refused_after_sync_failure(self.sync_failure), None))
                    continue
                wrote = True
            try:
                append((item, None, item.call(*item.args)))
            except Exception as exc:
                append((item, exc, None))
        if wrote and self.group_commit and self.store is not None:
            try:
                self.store.sync()
            except Exception as exc:
                self.sync_failure = exc
                outcomes = [(item, _group_sync_error(exc), None) for item, _, _ in outcomes]
        _settle(outcomes)
        if closing is None:
            return False
        try:
            self._close_store()
        except BaseException as exc:
            closing.done.set_exception(exc)
        else:
            closing.done.set_result(None)
        return True

    def _close_store(self) -> None:
        store = self.store
        if store is None or not self.owns_store:
            return
        try:
            if not store.closed and not store.read_only and self.sync_failure is None:
                store.sync()
        finally:
            store.close()

    def _refuse_stragglers(self) -> None:
        """Fail what was queued after the close request (another thread's late call)."""
        outcomes: list[_Outcome] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Close):
                item.done.set_result(None)
            else:
                outcomes.append((item, _closed_error(), None))
        _settle(outcomes)


def _closed_error() -> StoreClosedError:
    return StoreClosedError("the async store is closed; open it again with raftstore.aio.open()")


def _group_sync_error(exc: BaseException) -> StorageError:
    error = StorageError(
        f"the sync that makes this call's group of writes durable failed: {exc}. The writes of"
        " the group were applied and are visible to reads, but may or may not survive a crash;"
        " later writes are refused: close the store and open it again"
    )
    error.__cause__ = exc
    return error


def _refused_after_sync_failure(exc: BaseException) -> StorageError:
    error = StorageError(
        f"an earlier group sync failed ({exc}); this store refuses writes until it is closed"
        " and opened again"
    )
    error.__cause__ = exc
    return error


def _settle(outcomes: list[_Outcome]) -> None:
    """Resume the callers of *outcomes*: one callback per event loop, not one per call."""
    if not outcomes:
        return
    first = outcomes[0][0].loop
    if all(outcome[0].loop is first for outcome in outcomes):
        with contextlib.suppress(RuntimeError):
            first.call_soon_threadsafe(_settle_on_loop, outcomes)
        return
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        # A closed loop raises RuntimeError: nobody is waiting there any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_on_loop, items)


def _settle_on_loop(outcomes: list[_Outcome]) -> None:
    for request, error, value in outcomes:
        request.settled = True
        request.error = error
        request.value = value
        future = request.future
        if not future.done():
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
        waiter = request.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def _run(worker: _Worker, request: _Request) -> Any:
    """Hand *request* to *worker* and wait for its outcome (see the module docstring)."""
    worker.submit(request)
    try:
        return await request.future
    except asyncio.CancelledError:
        await _after_cancellation(worker, request)
        raise


async def _after_cancellation(worker: _Worker, request: _Request) -> None:
    """Withdraw *request* if still queued, else wait until the worker has finished it."""
    if not (request.withdrawable and worker.withdraw(request)):
        await _until_settled(request)


async def _until_settled(request: _Request) -> None:
    """Wait, through any number of cancellations, until the worker has finished *request*."""
    if request.settled:
        return
    waiter: asyncio.Future[None] = request.loop.create_future()
    request.waiter = waiter
    await _through_cancellation(waiter)


async def _through_cancellation(future: asyncio.Future[Any]) -> None:
    """Wait until *future* is done, whatever cancellations arrive; ignore its outcome.

    Only for cleanup paths whose caller re-raises its own error afterwards.
    """
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.shield(future)


class AsyncStore(WrappedStoreAttributes):
    """A raftstore store for asyncio: `raftstore.RaftStore`'s methods as coroutines.

    Returned by `open` (or `wrap`). Safe to use from any number of tasks; calls
    run on the store's worker thread in the order they were made, so a read
    made after a write (awaited or merely started) sees it. Close it with
    ``await store.close()`` or ``async with``.
    """

    def __init__(self, worker: _Worker, store: RaftStoreProtocol) -> None:
        """Use `open` or `wrap`, which start the worker this wraps."""
        self._worker = worker
        self._store = store
        self._closed = False
        self._finalizer = weakref.finalize(self, _abandon, worker, repr(store))

    # -- attributes (no engine call: read on the loop) ------------------------------------

    @property
    def group_commit(self) -> bool:
        """True when writes are acknowledged only after the sync of their group."""
        return self._worker.group_commit

    @property
    def sync_writes(self) -> bool:
        """True when every acknowledged write is on stable storage (``sync=True``)."""
        extra: Any = self._store
        return self._worker.group_commit or bool(getattr(extra, "sync_writes", False))

    @property
    def worker_thread(self) -> threading.Thread:
        """The thread every engine call of this store runs on."""
        return self._worker.thread

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        mode = " group-commit" if self._worker.group_commit else ""
        return f"<AsyncStore{mode} {self._store!r}{state}>"

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing --------------------------------------------------------------------------

    def _raise_closed(self) -> NoReturn:
        raise StoreClosedError(f"{self!r} is closed; open it again with raftstore.aio.open()")

    # _read and _write are `_run` inlined: one coroutine frame less per call.

    async def _read(self, call: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            self._raise_closed()
        request = _Request(call, args, False, asyncio.get_running_loop())
        self._worker.submit(request)
        try:
            result: _T = await request.future
        except asyncio.CancelledError:
            await _after_cancellation(self._worker, request)
            raise
        return result

    async def _write(self, call: Callable[..., None], *args: Any) -> None:
        if self._closed:
            self._raise_closed()
        request = _Request(call, args, True, asyncio.get_running_loop())
        self._worker.submit(request)
        try:
            await request.future
        except asyncio.CancelledError:
            await _after_cancellation(self._worker, request)
            raise

    # -- LogStore ---------------------------------------------------------------------------

    async def first_index(self) -> int:
        """Lowest stored index, 0 when empty."""
        return await self._read(self._store.first_index)

    async def last_index(self) -> int:
        """Highest stored index, 0 when empty."""
        return await self._read(self._store.last_index)

    async def get_log(self, index: int) -> Log:
        """The entry at *index*; raises `LogNotFoundError` when absent."""
        return await self._read(self._store.get_log, index)

    async def store_log(self, log: Log) -> None:
        """Store one entry (same as ``store_logs([log])``); durable when it returns if synced."""
        await self._write(self._store.store_log, log)

    async def store_logs(self, logs: Iterable[Log]) -> None:
        """Store every entry of *logs* atomically, or none; durable when it returns if synced.

        *logs* is read here, on the loop (a generator never runs on the
        worker thread); the store refuses what cannot be read, as ever.
        """
        await self._write(self._store.store_logs, read_batch(logs))

    async def delete_range(self, min_index: int, max_index: int) -> None:
        """Delete ``min_index..max_index``, inclusive, clamped to what is stored."""
        await self._write(self._store.delete_range, min_index, max_index)

    def iter_logs(self, low: int = 1, high: int = MAX_UINT64) -> AsyncIterator[Log]:
        """Iterate (``async for``) over the entries with ``low <= index <= high`` in order.

        Entries are fetched from the worker in chunks; entries written or
        deleted meanwhile may or may not be seen.
        """
        if self._closed:
            self._raise_closed()
        return _ChunkedIterator(self, lambda: self._store.iter_logs(low, high))

    # -- commit tracking --------------------------------------------------------------------

    async def stage_commit_index(self, index: int) -> None:
        """Stage *index*, persisted with the next ``store_logs`` (in call order)."""
        extra: Any = self._store
        await self._read(extra.stage_commit_index, index)

    async def get_commit_index(self) -> int:
        """The commit index last persisted with a ``store_logs``; 0 when none."""
        extra: Any = self._store
        result: int = await self._read(extra.get_commit_index)
        return result

    # -- StableStore ------------------------------------------------------------------------

    async def set(self, key: bytes, value: bytes | bytearray | memoryview) -> None:
        """Store a copy of *value* under *key* (the copy is taken now, on the loop)."""
        if isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        if isinstance(key, (bytearray, memoryview)):
            key = bytes(key)
        await self._write(self._store.set, key, value)

    async def get(self, key: bytes) -> bytes | None:
        """The value under *key*, None when absent."""
        return await self._read(self._store.get, key)

    async def set_uint64(self, key: bytes, value: int) -> None:
        """Store the unsigned 64-bit *value* under *key*."""
        await self._write(self._store.set_uint64, key, value)

    async def get_uint64(self, key: bytes) -> int:
        """The integer under *key*, 0 when absent."""
        return await self._read(self._store.get_uint64, key)

    def iter_stable(self) -> AsyncIterator[tuple[bytes, bytes]]:
        """Iterate (``async for``) over every stable ``(key, value)`` in key order."""
        if self._closed:
            self._raise_closed()
        extra: Any = self._store
        return _ChunkedIterator(self, extra.iter_stable)

    # -- lifecycle --------------------------------------------------------------------------

    async def sync(self) -> None:
        """Force everything written so far onto stable storage."""
        await self._read(self._store.sync)

    async def compact(self) -> None:
        """Ask the engine to give disk space back after deletions."""
        extra: Any = self._store
        await self._read(extra.compact)

    async def disk_usage(self) -> int:
        """Bytes the store's files take on disk (0 in memory)."""
        extra: Any = self._store
        result: int = await self._read(extra.disk_usage)
        return result

    async def stats(self) -> dict[str, Any]:
        """The store's `RaftStore.stats` snapshot, read on the worker thread."""
        extra: Any = self._store
        result: dict[str, Any] = await self._read(extra.stats)
        return result

    async def close(self) -> None:
        """Finish every call made before, sync, close the store and stop the worker; idempotent.

        Calls made after `close` raise `StoreClosedError`. Once asked, the
        close goes ahead even if this await is cancelled. Raises the final
        sync's error, if any (the store is closed all the same).
        """
        self._closed = True
        self._finalizer.detach()
        done = self._worker.close().done
        await asyncio.shield(asyncio.wrap_future(done))


class _ChunkedIterator(Generic[_Item]):
    """An async iterator over a store iterator that only ever runs on the worker."""

    def __init__(self, owner: AsyncStore, start: Callable[[], Iterator[_Item]]) -> None:
        self._owner = owner
        self._start = start
        self._source: Iterator[_Item] | None = None
        self._buffer: deque[_Item] = deque()
        self._exhausted = False

    def __aiter__(self) -> _ChunkedIterator[_Item]:
        return self

    async def __anext__(self) -> _Item:
        if not self._buffer:
            if self._exhausted:
                raise StopAsyncIteration
            chunk = await self._owner._read(self._next_chunk)
            if len(chunk) < ITER_CHUNK:
                self._exhausted = True
            if not chunk:
                raise StopAsyncIteration
            self._buffer.extend(chunk)
        return self._buffer.popleft()

    def _next_chunk(self) -> list[_Item]:
        """Runs on the worker thread."""
        if self._source is None:
            self._source = self._start()
        return list(islice(self._source, ITER_CHUNK))

    async def aclose(self) -> None:
        """Stop iterating; the store iterator is closed on the worker."""
        self._exhausted = True
        self._buffer.clear()
        source = self._source
        if source is not None and not self._owner.closed:
            close: Any = getattr(source, "close", None)
            if close is not None:
                await self._owner._read(close)


def _abandon(worker: _Worker, what: str) -> None:
    """An `AsyncStore` was dropped without ``close()``: close it on its worker anyway."""
    warnings.warn(
        f"unclosed async store over {what}; await store.close() (or use async with)",
        ResourceWarning,
        stacklevel=2,
    )
    worker.close()


# -- opening ----------------------------------------------------------------------------


async def open(
    target: str | os.PathLike[str],
    *,
    engine: str | None = None,
    codec: str | None = None,
    sync: bool = True,
    read_only: bool = False,
    create: bool = True,
    **options: Any,
) -> AsyncStore:
    """Open (or create) a store for asyncio: `raftstore.open`'s arguments and errors.

    The open itself runs on the new store's worker thread. With ``sync=True``
    (the default, also when given in the URL) the store is opened with
    ``sync=False`` and every write is acknowledged after the ``sync()`` of
    its group (group commit): the same durability, far fewer fsyncs.
    """
    opened_target, sync, group_commit = _plan_sync(target, sync, read_only)
    worker = _Worker(f"raftstore-aio {os.fspath(target)[:60]}")
    loop = asyncio.get_running_loop()

    def opening() -> RaftStoreProtocol:
        store = raftstore.open(
            opened_target,
            engine=engine,
            codec=codec,
            sync=sync,
            read_only=read_only,
            create=create,
            **options,
        )
        worker.store = store
        return store

    request = _Request(opening, (), False, loop)
    try:
        store: RaftStoreProtocol = await _run(worker, request)
    except BaseException:
        # A cancelled open that had already succeeded leaves nothing open,
        # and the lock is released before the cancellation goes on.
        await _through_cancellation(asyncio.wrap_future(worker.close().done))
        raise
    worker.group_commit = group_commit
    return AsyncStore(worker, store)


def wrap(store: RaftStoreProtocol, *, group_commit: bool, owns_store: bool = True) -> AsyncStore:
    """An `AsyncStore` over *store*, an open store (a `raftstore.LogCache`, say).

    From now on use *store* only through the returned object: its calls run
    on the new worker thread. ``group_commit=True`` syncs once per group of
    writes and acknowledges them after that sync: open *store* with
    ``sync=False`` for it to pay. With ``owns_store=False``, closing the
    async store leaves *store* open (and unsynced beyond what was acknowledged).
    """
    worker = _Worker(f"raftstore-aio {store!r:.60}")
    worker.store = store
    worker.group_commit = group_commit
    worker.owns_store = owns_store
    return AsyncStore(worker, store)


def _plan_sync(
    target: str | os.PathLike[str], sync: bool, read_only: bool
) -> tuple[str | os.PathLike[str], bool, bool]:
    """What to pass `raftstore.open` for group commit: (target, sync, group_commit).

    A ``sync`` option in the URL's query is read here (and removed), so that
    the engine can be opened with ``sync=False`` whichever way ``sync=True``
    was asked for; a contradiction raises `ConfigurationError` as
    `raftstore.open` would.
    """
    if type(sync) is not bool:
        raise ConfigurationError(f"sync must be a bool, got {sync!r}")
    if isinstance(target, str) and "?" in target:
        try:
            parsed = parse_target(target)
        except ConfigurationError:
            parsed = None  # raftstore.open reports it
        if parsed is not None and "sync" in parsed.options:
            in_url = coerce_value("sync", parsed.options["sync"], bool, "store")
            if sync is not True and sync != in_url:
                raise ConfigurationError(
                    f"option 'sync' is {in_url!r} in the URL but {sync!r} as an argument"
                )
            sync = in_url
            head, _, query = target.partition("?")
            rest = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "sync"]
            target = head + ("?" + urlencode(rest) if rest else "")
    if sync and not read_only:
        return target, False, True
    return target, sync, False
