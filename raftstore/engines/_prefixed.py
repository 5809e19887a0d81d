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
    "TIB",
    "PrefixedEngine",
    "byte_size_option",
    "compression_option",
    "delete_ranges",
    "key_bounds",
    "namespace_bounds",
    "namespace_prefix",
    "successor",
]

#: Namespace -> the one byte that starts every key of that namespace.
NAMESPACE_PREFIXES: Mapping[str, bytes] = MappingProxyType({LOGS: b"l", META: b"m", STABLE: b"s"})

if set(NAMESPACE_PREFIXES) != set(NAMESPACES):  # pragma: no cover - guards future namespaces
    raise AssertionError("every namespace needs a key prefix")

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

        Raises `ConfigurationError` without a path and `StoreNotFoundError`
        for a read-only open of a missing database.
        """
        super().__init__(path, sync=sync, read_only=read_only, options=options, create=create)
        if path is None:
            raise ConfigurationError(
                f"the {self.name} engine stores its data on disk: give it a path"
            )
        self._data_path = Path(path)
        self._db: _Database | None = None
        if read_only and not (self._data_path / "CURRENT").is_file():
            raise StoreNotFoundError(f"no {self.name} database at {self._data_path}")

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
        elif self._is_corruption(exc, text):
            error = CorruptionError(f"{self.name} {doing} at {self._data_path} failed: {text}")
        elif "does not exist" in text and "create_if_missing" in text:
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
        try:
            db.close()
        except Exception as exc:
            self._raise_native(exc, "close")
