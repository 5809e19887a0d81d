"""The small key-value interface every key-value engine implements.

Raft semantics (key layout, first/last index, validation, checksums, guards)
live once in `raftstore.store.RaftStore`; an engine only stores bytes under
bytes keys in a few namespaces, atomically and in key order.

To add an engine, subclass `Engine`, fill in the class attributes and the
abstract methods, register it (`raftstore.register_engine` or the
``raftstore.engines`` entry-point group) and run
`raftstore.testing.RaftStoreConformance` against it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "LOGS",
    "META",
    "NAMESPACES",
    "STABLE",
    "Engine",
    "EngineOption",
    "WriteBatch",
    "between",
    "one_of",
]

#: Namespace of log records: 8-byte big-endian index -> record.
LOGS = "logs"
#: Namespace of the stable store: caller's key -> record.
STABLE = "stable"
#: Namespace of the store's own meta record.
META = "meta"
NAMESPACES: tuple[str, ...] = (LOGS, STABLE, META)


@dataclass(frozen=True, slots=True)
class EngineOption:
    """One option an engine accepts, with its type and default.

    Values given as strings (URL query) are coerced to ``type``; ``check``,
    when given, returns an error message for a bad value or None.
    """

    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None


def between(minimum: int, maximum: int, unit: str = "") -> Callable[[Any], str | None]:
    """An `EngineOption` check accepting ``minimum <= value <= maximum``."""
    suffix = f" {unit}" if unit else ""

    def check(value: Any) -> str | None:
        if minimum <= value <= maximum:
            return None
        return f"must be {minimum} to {maximum}{suffix}"

    return check


def one_of(*choices: object) -> Callable[[Any], str | None]:
    """An `EngineOption` check accepting only *choices*."""

    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"must be one of {', '.join(map(str, choices))}"

    return check


@dataclass(slots=True)
class WriteBatch:
    """Changes an engine applies atomically, in this order: clears, deletes, puts.

    - ``clears``: namespaces to empty entirely.
    - ``deletes``: ``(namespace, low_key, high_key)`` ranges, both ends inclusive.
    - ``puts``: ``(namespace, key, value)``; a later put of the same key wins.
    """

    clears: list[str] = field(default_factory=list)
    deletes: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    puts: list[tuple[str, bytes, bytes]] = field(default_factory=list)


class Engine(abc.ABC):
    """An ordered key-value store with namespaces, as raftstore needs it.

    The store calls every method under its own lock, one call at a time, so
    an engine need not be thread-safe itself. Keys are compared as unsigned
    bytes (lexicographic). Every method raises only raftstore errors: wrap
    the binding's exceptions (`raftstore.errors.StorageError` for I/O
    failures) and keep the original as ``__cause__``.

    Capabilities are plain class attributes, read by the store, by the
    conformance suite and by ``raftstore engines``.
    """

    #: Registry name, e.g. ``"lmdb"``.
    name: ClassVar[str] = ""
    #: Data survives close and reopen (and process exit).
    persistent: ClassVar[bool] = True
    #: Read-only handles may be open while a writer has the store (the store
    #: then takes no lock for them). When False, ``read_only=True`` still
    #: works: the store takes its exclusive lock, refuses every write, and the
    #: engine may open its files as it normally does (it must not create any).
    supports_read_only: ClassVar[bool] = False
    #: Logs only grow at the tail and shrink at either end (hashicorp
    #: ``MonotonicLogStore``): the store then refuses gaps, overwrites and
    #: deletes in the middle before the engine sees them, so the engine may
    #: rely on every log put continuing the log, and every log delete
    #: starting at its first or ending at its last index.
    monotonic: ClassVar[bool] = False
    #: Options accepted by ``raftstore.open(..., **options)`` / the URL query.
    options: ClassVar[Mapping[str, EngineOption]] = {}

    def __init__(
        self,
        path: Path | None,
        *,
        sync: bool,
        read_only: bool,
        options: Mapping[str, Any],
        create: bool = True,
    ) -> None:
        """Open the engine's data in *path*, creating it only when *create* is true.

        *path* is a directory owned by the engine (None for in-memory
        engines); *options* holds every declared option, already coerced and
        defaulted. With ``sync=True`` every `write` is on stable storage
        before it returns; with ``sync=False`` only `sync` guarantees that.

        ``create=False`` (always so with ``read_only=True``) means the store
        exists and its engine files must be there: the engine must not
        create, replace or delete any file in *path*, and must raise
        `raftstore.errors.CorruptionError` naming what is missing or damaged
        rather than start empty or roll back. Never open with a recovery mode
        that silently drops acknowledged data.
        """
        self.path = path
        self.sync_writes = sync
        self.read_only = read_only
        self.create = create and not read_only

    @abc.abstractmethod
    def get(self, namespace: str, key: bytes) -> bytes | None:
        """Return the value under *key*, or None when absent."""

    @abc.abstractmethod
    def write(self, batch: WriteBatch) -> None:
        """Apply *batch* atomically: on any error nothing of it is visible."""

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        """Store one value atomically: the same as a `write` of a one-put batch.

        Override it when a single put is cheaper than a batch of one.
        """
        self.write(WriteBatch(puts=[(namespace, key, value)]))

    @abc.abstractmethod
    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Return up to *limit* ``(key, value)`` pairs with ``low <= key <= high`` in key order.

        ``high=None`` means no upper bound. No iterator outlives the call.
        """

    @abc.abstractmethod
    def first_key(self, namespace: str, low: bytes = b"") -> bytes | None:
        """Return the smallest key ``>= low`` in *namespace*, or None."""

    @abc.abstractmethod
    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        """Return the largest key ``<= high`` (any key when None) in *namespace*, or None."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Force every write made so far onto stable storage."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every resource; called once."""

    def compact(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Give disk space back after deletions, where the engine can."""

    def disk_usage(self) -> int:
        """Bytes the engine's files take on disk (0 for in-memory engines)."""
        if self.path is None:
            return 0
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
