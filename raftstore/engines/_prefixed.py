"""The shared layer of engines that keep every namespace in one ordered keyspace.

The rocksdb and leveldb engines store each namespace under a one-byte key
prefix (``b"l"`` logs, ``b"m"`` meta, ``b"s"`` stable) in a single keyspace,
so one native write batch covers every namespace and the keys of a namespace
are bounded by ``[prefix, next byte)`` whatever their length.

Besides that key layout, both engines take from here their base class
`PrefixedEngine` (path checks, closed and read-only guards, how a binding's
failure becomes a raftstore error, ``get`` and ``close``), the key ranges a
write batch deletes, and the declarations of their byte-size and
compression options.
"""

from __future__ import annotations

import abc
import ctypes
import errno
import fcntl
import os
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, NoReturn, TypeVar

from raftstore.engines.base import (
    LOGS,
    META,
    NAMESPACES,
    STABLE,
    Engine,
    EngineOption,
    WriteBatch,
    between,
    one_of,
)
from raftstore.errors import (
    ConfigurationError,
    CorruptionError,
    InvalidArgumentError,
    RaftStoreError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StoreNotFoundError,
)

__all__ = [
    "GIB",
    "KIB",
    "MIB",
    "NAMESPACE_PREFIXES",
    "RECOVERY_ADVICE",
    "TIB",
    "PrefixedEngine",
    "byte_size_option",
    "compression_option",
    "delete_ranges",
    "fsync_directory",
    "fsync_file",
    "key_bounds",
    "lock_native_lock_file",
    "namespace_bounds",
    "namespace_prefix",
    "successor",
]

#: Namespace -> the one byte that starts every key of that namespace.
NAMESPACE_PREFIXES: Mapping[str, bytes] = MappingProxyType({LOGS: b"l", META: b"m", STABLE: b"s"})

if set(NAMESPACE_PREFIXES) != set(NAMESPACES):  # pragma: no cover - guards future namespaces
    raise AssertionError("every namespace needs a key prefix")

#: What to do about a store whose engine files are missing or damaged.
RECOVERY_ADVICE = (
    "restore the store's files from a backup, or remove the store and rejoin the cluster "
    "as a new node"
)

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB


def byte_size_option(default: int, help: str, *, minimum: int, maximum: int) -> EngineOption:
    """Declare an option counted in bytes, refused outside ``minimum..maximum`` (inclusive)."""
    return EngineOption(int, default, help, check=between(minimum, maximum, "bytes"))


def compression_option(names: Iterable[str], compressed: str) -> EngineOption:
    """Declare the ``compression`` option: one of *names*, ``"snappy"`` by default.

    Its help reads "*compressed* compression: " and then the names.
    """
    choices = tuple(names)
    return EngineOption(
        str, "snappy", f"{compressed} compression: {', '.join(choices)}", check=one_of(*choices)
    )


def namespace_prefix(namespace: str) -> bytes:
    """Return the key prefix of *namespace*; raise InvalidArgumentError for an unknown one."""
    try:
        return NAMESPACE_PREFIXES[namespace]
    except KeyError:
        raise unknown_namespace(namespace) from None


def unknown_namespace(namespace: object) -> InvalidArgumentError:
    """Return the error for a namespace that is not one of `NAMESPACES`."""
    return InvalidArgumentError(
        f"unknown namespace {namespace!r}; the namespaces are {', '.join(NAMESPACES)}"
    )


def namespace_bounds(namespace: str) -> tuple[bytes, bytes]:
    """Return ``(lowest, end)``: every key of *namespace* is ``>= lowest`` and ``< end``."""
    prefix = namespace_prefix(namespace)
    return prefix, bytes((prefix[0] + 1,))


def successor(key: bytes) -> bytes:
    """Return the smallest key greater than *key*.

    Turns an inclusive high end into the exclusive end native range deletes
    and iterator upper bounds take, without overflow: the successor of
    ``b"\\xff" * 8`` is ``b"\\xff" * 8 + b"\\x00"``.
    """
    return key + b"\x00"


def key_bounds(namespace: str, high: bytes | None) -> tuple[bytes, bytes]:
    """Return ``(prefix, end)``: the keys of *namespace* up to *high* inclusive are ``< end``.

    ``high=None`` means no upper bound: *end* is then the namespace's end.
    """
    prefix, namespace_end = namespace_bounds(namespace)
    return prefix, namespace_end if high is None else successor(prefix + high)


def delete_ranges(batch: WriteBatch) -> Iterator[tuple[bytes, bytes]]:
    """Yield the ``[start, end)`` key ranges *batch* deletes: its clears, then its deletes.

    An inclusive delete whose low end is above its high end deletes nothing
    and yields no range. Raises InvalidArgumentError for an unknown namespace.
    """
    for namespace in batch.clears:
        yield namespace_bounds(namespace)
    for namespace, low, high in batch.deletes:
        prefix = namespace_prefix(namespace)
        if low <= high:
            yield prefix + low, successor(prefix + high)


def fsync_file(path: Path) -> bool:
    """Fsync the file at *path*; return False when it no longer exists."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def fsync_directory(path: Path) -> None:
    """Fsync the directory *path*, so the names created or removed in it survive power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- fork: a child never touches its parent's engine files -------------------------------

#: Every engine with an open native handle in this process.
_open_engines: weakref.WeakSet[PrefixedEngine[Any]] = weakref.WeakSet()
#: Native handles inherited across fork: never closed, never destroyed.
_abandoned: list[Any] = []


def _abandon_inherited_handles() -> None:
    """In a forked child: take every inherited native handle away from its engine, for good.

    Closing or destroying an inherited RocksDB or LevelDB handle in the child
    flushes, writes or deletes files in the parent's live directory and can
    hang on locks held by threads that did not survive the fork. Each handle
    gets an extra reference that is never released (so not even interpreter
    shutdown destroys it) and its engine is marked closed.
    """
    engines = list(_open_engines)
    _open_engines.clear()
    for engine in engines:
        db, engine._db = engine._db, None
        if db is None:
            continue
        _abandoned.append(db)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(db))
        engine._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_abandon_inherited_handles)


_Database = TypeVar("_Database")


class PrefixedEngine(Engine, Generic[_Database]):
    """The guards and error wrapping shared by engines that keep one prefixed keyspace on disk.

    A subclass opens its native database into ``_db`` (None once closed) and
    tells `_raise_native` how to read its binding's failures with
    `_native_text`, `_is_lock_error` and `_is_corruption`.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        sync: bool,
        read_only: bool,
        options: Mapping[str, Any],
        create: bool = True,
    ) -> None:
        """Check *path*; the subclass then opens its database into ``_db``.

        Raises `ConfigurationError` without a path. Without *create*, checks
        that the database's files are there (`_check_existing`).
        """
        super().__init__(path, sync=sync, read_only=read_only, options=options, create=create)
        if path is None:
            raise ConfigurationError(
                f"the {self.name} engine stores its data on disk: give it a path"
            )
        self._data_path = Path(path)
        self._db: _Database | None = None
        self._forked = False
        if not self.create:
            self._check_existing()

    def _opened(self, db: _Database) -> None:
        """Keep *db* as the open database (abandoned, never closed, in a forked child)."""
        self._db = db
        _open_engines.add(self)

    # -- an existing database -------------------------------------------------------------

    def _damaged(self, what: str) -> CorruptionError:
        """Return the error for a database whose files are missing or damaged (*what*)."""
        return CorruptionError(
            f"the {self.name} database at {self._data_path} is damaged: {what}; "
            f"opening it would lose acknowledged writes, so it is left as it is: {RECOVERY_ADVICE}"
        )

    def _check_existing(self) -> None:
        """Check, touching nothing, that an existing database's key files are there.

        A read-only open of a directory that does not exist or is empty raises
        `StoreNotFoundError`; otherwise a missing, empty or dangling
        ``CURRENT`` (or a missing directory, when not read-only) raises
        `CorruptionError`: the engine would otherwise start an empty database.
        """
        data = self._data_path
        try:
            names = os.listdir(data)
        except FileNotFoundError:
            names = None
        except NotADirectoryError as exc:
            raise self._damaged(f"{data} is not a directory") from exc
        except OSError as exc:
            raise StorageError(f"cannot list {self.name} database {data}: {exc}") from exc
        if not names:
            if self.read_only:
                raise StoreNotFoundError(f"no {self.name} database at {data}")
            raise self._damaged(
                "its directory is missing" if names is None else "its directory is empty"
            )
        current = data / "CURRENT"
        try:
            text = current.read_bytes()
        except FileNotFoundError:
            raise self._damaged("its CURRENT file is missing") from None
        except OSError as exc:
            raise self._damaged(f"its CURRENT file cannot be read ({exc})") from exc
        manifest = text[:-1].decode("ascii", "replace") if text.endswith(b"\n") else ""
        if not manifest.startswith("MANIFEST-") or "/" in manifest or len(text) > 64:
            raise self._damaged(f"its CURRENT file is empty or damaged ({text[:64]!r})")
        try:
            size = (data / manifest).stat().st_size
        except FileNotFoundError:
            raise self._damaged(f"CURRENT names {manifest}, which is missing") from None
        if size == 0:
            raise self._damaged(f"CURRENT names {manifest}, which is empty")

    # -- native failures ----------------------------------------------------------------

    @staticmethod
    def _native_text(exc: BaseException) -> str:
        """Return the binding's message in *exc*."""
        return str(exc)

    @staticmethod
    @abc.abstractmethod
    def _is_lock_error(exc: BaseException, text: str) -> bool:
        """Tell whether *exc* (message *text*) says another handle holds the database's LOCK."""

    @staticmethod
    @abc.abstractmethod
    def _is_corruption(exc: BaseException, text: str) -> bool:
        """Tell whether *exc* (message *text*) reports damaged data."""

    def _raise_native(self, exc: BaseException, doing: str) -> NoReturn:
        """Raise the raftstore error for a binding failure while *doing*, chained to it."""
        text = self._native_text(exc)
        error: RaftStoreError
        if self._is_lock_error(exc, text):
            error = StoreLockedError(
                f"the {self.name} database at {self._data_path} is in use by another handle or "
                f"process; close it first ({text})"
            )
        elif self._is_corruption(exc, text) or (not self.create and "No such file" in text):
            error = CorruptionError(
                f"{self.name} {doing} at {self._data_path} failed, its files are damaged or "
                f"missing: {text}; {RECOVERY_ADVICE}"
            )
        elif "does not exist" in text and "create_if_missing" in text:
            if not self.read_only:
                error = self._damaged(f"the engine found no database ({text})")
            else:
                error = StoreNotFoundError(f"no {self.name} database at {self._data_path}")
        else:
            error = StorageError(f"{self.name} {doing} at {self._data_path} failed: {text}")
        raise error from exc

    def _raise_write_error(self, exc: Exception) -> NoReturn:
        """Raise the raftstore error for *exc*, raised while a write batch was built or written.

        A KeyError is a put to an unknown namespace; raftstore errors pass as they are.
        """
        if isinstance(exc, KeyError):
            raise unknown_namespace(exc.args[0]) from exc
        if isinstance(exc, RaftStoreError):
            raise exc
        self._raise_native(exc, "write")

    # -- guards ---------------------------------------------------------------------------

    def _live(self) -> _Database:
        """Return the open database; raise StoreClosedError once closed."""
        db = self._db
        if db is None:
            if self._forked:
                raise StoreClosedError(
                    f"the {self.name} engine at {self._data_path} was opened before this "
                    "process was forked; open the store again in this process"
                )
            raise StoreClosedError(f"the {self.name} engine at {self._data_path} is closed")
        return db

    #: Return the open database, up to date for a read; override it where a
    #: read-only handle has to catch up first.
    _readable = _live

    def _read_only_error(self) -> ReadOnlyError:
        """Return the error for a write through a read-only handle."""
        return ReadOnlyError(f"the {self.name} engine at {self._data_path} is read-only")

    # -- the engine interface ---------------------------------------------------------------

    def get(self, namespace: str, key: bytes) -> bytes | None:
        """Return the value under *key* in *namespace*, or None when absent."""
        db: Any = self._readable()
        prefixed = namespace_prefix(namespace) + key
        try:
            value: bytes | None = db.get(prefixed)
        except Exception as exc:
            self._raise_native(exc, "read")
        return value

    def close(self) -> None:
        """Close the database and release its LOCK; a second call does nothing."""
        db: Any
        db, self._db = self._db, None
        if db is None:
            return
        _open_engines.discard(self)
        try:
            db.close()
        except Exception as exc:
            self._raise_native(exc, "close")


def lock_native_lock_file(engine: PrefixedEngine[Any], directory: Path) -> int | None:
    """Take the POSIX lock the engine itself takes on *directory*'s ``LOCK``; return its fd.

    None when there is no ``LOCK`` file (no writer can hold it: the engine
    creates it when it opens). Raises `StoreLockedError` when another
    process holds it. The caller closes the descriptor to release it.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(directory / "LOCK", flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        engine._raise_native(exc, "open")
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            raise StoreLockedError(
                f"the {engine.name} database at {engine._data_path} is in use by another "
                f"handle or process; close it first (IO error: LOCK: {exc})"
            ) from exc
        engine._raise_native(exc, "open")
    return fd
