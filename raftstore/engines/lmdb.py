"""The LMDB engine (py-lmdb), raftstore's embedded default.

One named LMDB database per namespace in one environment. Every write batch
is one LMDB write transaction: committed whole or aborted whole. With
``sync=True`` LMDB fsyncs the data and the meta page at every commit. With
``sync=False`` (``MDB_NOSYNC``) commits reach the page cache only, and
`sync` flushes them: a killed process loses nothing (the page cache
survives it), but a crash of the machine before a `sync` may lose the
latest commits and, as LMDB's own documentation warns, may corrupt the
database.

LMDB's map is a fixed-size window on the file; when a write does not fit,
the transaction aborts (nothing half-written), the map is doubled and the
write is retried, up to ``max_map_size``. The file never shrinks on its
own: `compact` rewrites it.

Never use LMDB's append mode here: it silently skips a key that is not
greater than the last one, which is exactly a Raft conflict rewrite.
"""

from __future__ import annotations

import contextlib
import operator
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, cast

import lmdb

from raftstore.engines.base import LOGS, NAMESPACES, Engine, EngineOption, WriteBatch, between
from raftstore.errors import StorageError, StoreLockedError, StoreNotFoundError

__all__ = ["LmdbEngine"]

_MIB = 1024 * 1024
_namespace_of = operator.itemgetter(0)
_key_value_of = operator.itemgetter(1, 2)


class _SharedEnv:
    """One LMDB environment shared by every handle on it in this process.

    LMDB must not open the same environment twice in one process (its
    locks are per process), so a read-only handle opened beside this
    process's writer reuses the writer's environment. ``lock`` keeps
    read-only handles' transactions apart from the writer's map resizing.
    """

    def __init__(
        self, env: lmdb.Environment, dbs: dict[str, lmdb._Database], read_only: bool
    ) -> None:
        self.env = env
        self.dbs = dbs
        self.read_only = read_only
        self.users = 1
        self.lock = threading.RLock()


_shared_envs: dict[str, _SharedEnv] = {}
_shared_envs_lock = threading.Lock()


class LmdbEngine(Engine):
    """LMDB through py-lmdb: memory-mapped B+tree, readers never block the writer."""

    name: ClassVar[str] = "lmdb"
    persistent: ClassVar[bool] = True
    supports_read_only: ClassVar[bool] = True
    options: ClassVar[Mapping[str, EngineOption]] = {
        "map_size": EngineOption(
            int,
            64 * _MIB,
            "initial map size in bytes; grown automatically",
            between(_MIB, 1 << 48, "bytes"),
        ),
        "max_map_size": EngineOption(
            int,
            1 << 40,
            "largest map size growth may reach, in bytes",
            between(_MIB, 1 << 48, "bytes"),
        ),
        "max_readers": EngineOption(
            int,
            126,
            "most concurrent read transactions (threads and processes)",
            between(1, 1 << 16),
        ),
    }

    def __init__(
        self,
        path: Path | None,
        *,
        sync: bool,
        read_only: bool,
        options: Mapping[str, Any],
        create: bool = True,
    ) -> None:
        super().__init__(path, sync=sync, read_only=read_only, options=options, create=create)
        if path is None:
            raise StorageError("the lmdb engine needs a directory")
        self._options = dict(options)
        self._max_map_size = max(options["max_map_size"], options["map_size"])
        if read_only and not (path / "data.mdb").exists():
            raise StoreNotFoundError(f"no LMDB data in {path}")
        self._key = os.path.realpath(path)
        with _shared_envs_lock:
            shared = _shared_envs.get(self._key)
            if shared is None:
                env, dbs = self._open(path, options["map_size"])
                shared = _shared_envs[self._key] = _SharedEnv(env, dbs, read_only)
            elif shared.read_only and not read_only:
                raise StoreLockedError(
                    f"store {path} is open read-only in this process; close those"
                    " handles before opening it for writing"
                )
            else:
                shared.users += 1
        self._shared = shared
        self._env, self._dbs = shared.env, shared.dbs
        # One read transaction reused between writes: beginning one per get
        # costs more than the get. A writer drops it before writing, so it
        # never pins old pages (which would make the file grow). Read-only
        # handles may see another process's writes, so they never reuse one.
        self._reader: lmdb.Transaction | None = None

    def _open(
        self, path: Path, map_size: int
    ) -> tuple[lmdb.Environment, dict[str, lmdb._Database]]:
        try:
            env = lmdb.open(
                str(path),
                map_size=map_size,
                subdir=True,
                readonly=self.read_only,
                create=not self.read_only,
                sync=self.sync_writes,
                metasync=self.sync_writes,
                max_dbs=len(NAMESPACES),
                max_readers=self._options["max_readers"],
                lock=True,
                readahead=False,
            )
        except lmdb.Error as exc:
            if "already open" in str(exc):
                raise StoreLockedError(
                    f"LMDB environment {path} is already open in this process;"
                    " close the other handle first"
                ) from exc
            raise StorageError(f"cannot open LMDB environment {path}: {exc}") from exc
        try:
            dbs = {
                namespace: env.open_db(namespace.encode(), create=not self.read_only)
                for namespace in NAMESPACES
            }
        except lmdb.Error as exc:
            env.close()
            raise StorageError(f"cannot open LMDB databases in {path}: {exc}") from exc
        return env, dbs

    def _read_txn(self) -> lmdb.Transaction:
        reader = self._reader
        if reader is not None:
            return reader
        if self.read_only:
            # Released by _done_reading; see _SharedEnv.
            self._shared.lock.acquire()
        try:
            logs = self._dbs[LOGS]
            try:
                reader = self._env.begin(db=logs, buffers=False)
            except lmdb.MapResizedError:
                # Another process grew the map: adopt its size and retry.
                self._env.set_mapsize(0)
                reader = self._env.begin(db=logs, buffers=False)
        except lmdb.Error as exc:
            if self.read_only:
                self._shared.lock.release()
            raise StorageError(f"LMDB cannot begin a read transaction: {exc}") from exc
        if not self.read_only:
            self._reader = reader
        return reader

    def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.abort()

    def _done_reading(self, txn: lmdb.Transaction) -> None:
        if txn is not self._reader:
            txn.abort()
            if self.read_only:
                self._shared.lock.release()

    def get(self, namespace: str, key: bytes) -> bytes | None:
        reader = self._reader
        if reader is not None:
            try:
                # The reader's default database is the logs': passing db=
                # costs a keyword parse and a dict lookup per get.
                if namespace == LOGS:
                    value: bytes | None = reader.get(key)  # type: ignore[assignment]
                else:
                    value = reader.get(key, db=self._dbs[namespace])  # type: ignore[assignment]
                return value
            except lmdb.Error as exc:
                self._drop_reader()
                raise StorageError(f"LMDB get failed: {exc}") from exc
        with self._reading("get") as txn:
            value = txn.get(key, db=self._dbs[namespace])  # type: ignore[assignment]
        return value

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        self._drop_reader()
        while True:
            try:
                with self._env.begin(write=True, db=self._dbs[namespace]) as txn:
                    txn.put(key, value, overwrite=True, append=False)
                return
            except lmdb.MapFullError:
                self._grow_map(WriteBatch(puts=[(namespace, key, value)]))
            except lmdb.Error as exc:
                raise StorageError(f"LMDB write failed, nothing was written: {exc}") from exc

    def write(self, batch: WriteBatch) -> None:
        self._drop_reader()
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    self._apply(txn, batch)
                return
            except lmdb.MapFullError:
                self._grow_map(batch)
            except lmdb.Error as exc:
                raise StorageError(f"LMDB write failed, nothing was written: {exc}") from exc

    def _apply(self, txn: lmdb.Transaction, batch: WriteBatch) -> None:
        dbs = self._dbs
        for namespace in batch.clears:
            txn.drop(dbs[namespace], delete=False)
        for namespace, low, high in batch.deletes:
            cursor = txn.cursor(dbs[namespace])
            if cursor.set_range(low):
                # delete() moves the cursor to the next record; an empty key
                # means it ran off the end (LMDB keys are never empty).
                key = cast(bytes, cursor.key())
                while key and key <= high:
                    cursor.delete()
                    key = cast(bytes, cursor.key())
        puts = batch.puts
        if not puts:
            return
        # itemgetter/map keep the per-entry work in C: a batch of logs is
        # the hot path, and it is always one namespace.
        namespaces = set(map(_namespace_of, puts))
        for namespace in namespaces:
            items = puts if len(namespaces) == 1 else [p for p in puts if p[0] == namespace]
            txn.cursor(dbs[namespace]).putmulti(
                map(_key_value_of, items), overwrite=True, append=False
            )

    def _grow_map(self, batch: WriteBatch) -> None:
        current = int(self._env.info()["map_size"])
        needed = 2 * sum(len(key) + len(value) + 64 for _, key, value in batch.puts)
        new_size = max(current * 2, current + needed)
        if current >= self._max_map_size:
            raise StorageError(
                f"LMDB map is full at {current} bytes (max_map_size); nothing was written."
                " Open the store with a larger max_map_size option"
            )
        new_size = min(new_size, self._max_map_size)
        try:
            with self._shared.lock:
                self._env.set_mapsize(new_size)
        except lmdb.Error as exc:
            raise StorageError(f"LMDB could not grow its map to {new_size}: {exc}") from exc

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[lmdb.Transaction]:
        """A read transaction for one call; LMDB errors become `StorageError`."""
        txn = self._read_txn()
        try:
            yield txn
        except lmdb.Error as exc:
            self._drop_reader()
            raise StorageError(f"LMDB {what} failed: {exc}") from exc
        finally:
            self._done_reading(txn)

    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        items: list[tuple[bytes, bytes]] = []
        with self._reading("scan") as txn, txn.cursor(self._dbs[namespace]) as cursor:
            if cursor.set_range(low):
                for key, value in cast("Iterator[tuple[bytes, bytes]]", iter(cursor)):
                    if (high is not None and key > high) or len(items) >= limit:
                        break
                    items.append((key, value))
        return items

    def first_key(self, namespace: str, low: bytes = b"") -> bytes | None:
        with self._reading("seek") as txn, txn.cursor(self._dbs[namespace]) as cursor:
            found = cursor.set_range(low) if low else cursor.first()
            return cast(bytes, cursor.key()) if found else None

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        with self._reading("seek") as txn, txn.cursor(self._dbs[namespace]) as cursor:
            if high is None:
                found = cursor.last()
            elif cursor.set_range(high):
                found = cursor.key() == high or cursor.prev()
            else:
                found = cursor.last()
            return cast(bytes, cursor.key()) if found else None

    def sync(self) -> None:
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise StorageError(f"LMDB sync failed: {exc}") from exc

    def close(self) -> None:
        self._drop_reader()
        with _shared_envs_lock:
            self._shared.users -= 1
            if self._shared.users == 0:
                del _shared_envs[self._key]
                with self._shared.lock:
                    try:
                        self._env.close()
                    except lmdb.Error as exc:
                        raise StorageError(f"LMDB close of {self.path} failed: {exc}") from exc

    def compact(self) -> None:
        """Rewrite the data file without its free pages (LMDB never shrinks it in place)."""
        assert self.path is not None
        if self._shared.users > 1:
            raise StoreLockedError(
                f"cannot compact {self.path} while read-only handles in this process use it"
            )
        self._drop_reader()
        map_size = int(self._env.info()["map_size"])
        tmp = self.path.with_name(self.path.name + ".compact")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            self._env.copy(str(tmp), compact=True)
            copied = tmp / "data.mdb"
            fd = os.open(copied, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except (OSError, lmdb.Error) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StorageError(f"LMDB compaction of {self.path} failed: {exc}") from exc
        # The copy is complete and synced; swapping it in needs the
        # environment closed. Whatever happens, reopen what is in place.
        self._env.close()
        try:
            os.replace(copied, self.path / "data.mdb")
        except OSError as exc:
            raise StorageError(f"LMDB compaction of {self.path} failed: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self._env, self._dbs = self._open(self.path, map_size)
            self._shared.env, self._shared.dbs = self._env, self._dbs
