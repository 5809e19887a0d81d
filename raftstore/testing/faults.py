"""Fault injection: an `Engine` wrapper that makes chosen engine calls fail like a bad disk.

Wrap any registered engine and register the wrapper under its own name;
stores opened with that name run on the real engine until a fault is armed::

    from raftstore.testing.faults import FaultPlan, register_faulty_engine

    plan = FaultPlan()
    name = register_faulty_engine("lmdb", plan)          # "faulty-lmdb"
    store = raftstore.open(tmp_path / "db", engine=name)
    plan.inject("write", errno.ENOSPC)                   # the next write fails
    store.store_logs([...])                              # raises StorageError

A failed call raises `raftstore.StorageError` carrying the errno, chained to
the `OSError` a real disk would give, *before* the wrapped engine is called:
the engine contract says a failed write leaves nothing visible, and that is
what the wrapper models. (A failing ``close`` closes the wrapped engine
first, so no handle leaks.) Reads can also be made to return damaged bytes
(`FaultPlan.corrupt`), to prove the store's checksums catch what a disk
returns wrongly.

This module needs nothing beyond raftstore itself (importing it through the
``raftstore.testing`` package does load pytest and Hypothesis).
"""

from __future__ import annotations

import errno as errno_codes
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from raftstore.engines.base import Engine, WriteBatch
from raftstore.errors import ConfigurationError, StorageError
from raftstore.registry import get_engine_class, register_engine

__all__ = [
    "OPERATIONS",
    "Fault",
    "FaultPlan",
    "FaultyEngine",
    "faulty_engine",
    "register_faulty_engine",
]

#: Every engine call a fault can target; ``"any"`` matches each of them.
OPERATIONS: tuple[str, ...] = (
    "open",
    "get",
    "write",
    "scan",
    "first_key",
    "last_key",
    "sync",
    "compact",
    "close",
)
_READS = frozenset({"get", "scan"})


@dataclass
class Fault:
    """One armed fault: which calls it matches and what it does to them.

    It lets ``after`` matching calls through, then acts on the next
    ``times`` matching calls (``None``: every one until cleared).
    ``namespace`` restricts it to calls touching that namespace.
    ``kind="error"`` raises `StorageError` with ``errno``;
    ``kind="corrupt"`` (reads only) flips one bit of each value returned.
    """

    operation: str
    errno: int = errno_codes.EIO
    after: int = 0
    times: int | None = 1
    namespace: str | None = None
    kind: Literal["error", "corrupt"] = "error"
    #: How many calls this fault has acted on so far.
    fired: int = 0


@dataclass
class _Record:
    operation: str
    namespaces: tuple[str, ...]
    fault: Fault | None


@dataclass
class FaultPlan:
    """The faults armed for every engine created by one wrapper class, and its call log.

    Thread-safe. ``calls`` counts every engine call by operation (faulted
    or not); ``history`` lists them in order, so a test can count how many
    engine calls a store operation makes and fail each one in turn.
    """

    faults: list[Fault] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    history: list[_Record] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inject(
        self,
        operation: str = "any",
        errno: int = errno_codes.EIO,
        *,
        after: int = 0,
        times: int | None = 1,
        namespace: str | None = None,
    ) -> Fault:
        """Arm a fault: the matching call after *after* successes fails with *errno*.

        *operation* is one of `OPERATIONS` or ``"any"``. Returns the fault
        (its ``fired`` count tells whether it was reached).
        """
        return self._arm(Fault(operation, errno, after, times, namespace, "error"))

    def corrupt(
        self,
        operation: Literal["get", "scan", "any"] = "any",
        *,
        after: int = 0,
        times: int | None = 1,
        namespace: str | None = None,
    ) -> Fault:
        """Arm a read fault: values returned by matching reads come back with a bit flipped."""
        return self._arm(Fault(operation, 0, after, times, namespace, "corrupt"))

    def _arm(self, fault: Fault) -> Fault:
        if fault.operation != "any" and fault.operation not in OPERATIONS:
            raise ConfigurationError(
                f"unknown operation {fault.operation!r}; one of {', '.join(OPERATIONS)} or 'any'"
            )
        if fault.kind == "corrupt" and fault.operation not in _READS | {"any"}:
            raise ConfigurationError("only reads (get, scan) can return corrupt data")
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault (the call log is kept)."""
        with self._lock:
            self.faults.clear()

    def reset(self) -> None:
        """Disarm every fault and forget the call log."""
        with self._lock:
            self.faults.clear()
            self.calls.clear()
            self.history.clear()

    @property
    def fired(self) -> int:
        """How many calls the armed faults have acted on."""
        with self._lock:
            return sum(fault.fired for fault in self.faults)

    def _match(self, operation: str, namespaces: tuple[str, ...]) -> Fault | None:
        """Log the call and return the fault that acts on it, if any."""
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            chosen: Fault | None = None
            for fault in self.faults:
                if fault.operation not in ("any", operation):
                    continue
                if fault.kind == "corrupt" and operation not in _READS:
                    continue
                if fault.namespace is not None and fault.namespace not in namespaces:
                    continue
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.fired += 1
                chosen = fault
                break
            self.history.append(_Record(operation, namespaces, chosen))
            return chosen


def _flip(value: bytes) -> bytes:
    if not value:
        return b"\x00"  # an empty record grows a byte: still not what was stored
    damaged = bytearray(value)
    damaged[len(damaged) // 2] ^= 0x10
    return bytes(damaged)


class FaultyEngine(Engine):
    """Runs a wrapped engine and fails (or damages) the calls its `FaultPlan` picks.

    Subclassed per wrapped engine by `faulty_engine`, which sets the class
    attributes below and copies the wrapped engine's capabilities and options.
    """

    inner_class: ClassVar[type[Engine]]
    plan: ClassVar[FaultPlan]

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
        self._fail("open", ())
        self.inner = self.inner_class(
            path, sync=sync, read_only=read_only, options=options, create=create
        )

    def _fail(self, operation: str, namespaces: tuple[str, ...]) -> Fault | None:
        fault = self.plan._match(operation, namespaces)
        if fault is None or fault.kind == "corrupt":
            return fault
        cause = OSError(fault.errno, os.strerror(fault.errno))
        where = f" in namespace {namespaces[0]!r}" if len(namespaces) == 1 else ""
        raise StorageError(
            fault.errno,
            f"{self.inner_class.name} {operation}{where} failed (injected fault):"
            f" {os.strerror(fault.errno)}",
        ) from cause

    def get(self, namespace: str, key: bytes) -> bytes | None:
        fault = self._fail("get", (namespace,))
        value = self.inner.get(namespace, key)
        if fault is not None and value is not None:
            return _flip(value)
        return value

    def write(self, batch: WriteBatch) -> None:
        namespaces = tuple(
            dict.fromkeys(
                [*batch.clears, *(d[0] for d in batch.deletes), *(p[0] for p in batch.puts)]
            )
        )
        self._fail("write", namespaces)
        self.inner.write(batch)

    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        fault = self._fail("scan", (namespace,))
        items = self.inner.scan(namespace, low, high, limit)
        if fault is not None and items:
            key, value = items[0]
            items[0] = (key, _flip(value))
        return items

    def first_key(self, namespace: str, low: bytes = b"") -> bytes | None:
        self._fail("first_key", (namespace,))
        return self.inner.first_key(namespace, low)

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        self._fail("last_key", (namespace,))
        return self.inner.last_key(namespace, high)

    def sync(self) -> None:
        self._fail("sync", ())
        self.inner.sync()

    def compact(self) -> None:
        self._fail("compact", ())
        self.inner.compact()

    def disk_usage(self) -> int:
        return self.inner.disk_usage()

    def close(self) -> None:
        # A close that fails must still release the wrapped engine's files
        # and locks, as a real engine's failing close does.
        try:
            self.inner.close()
        finally:
            self._fail("close", ())


def faulty_engine(
    inner: type[Engine] | str, plan: FaultPlan, *, name: str | None = None
) -> type[FaultyEngine]:
    """A `FaultyEngine` subclass wrapping *inner* (a class or registered name), driven by *plan*.

    It has *inner*'s capabilities and options; its name defaults to
    ``"faulty-<inner name>"``.
    """
    inner_class = get_engine_class(inner) if isinstance(inner, str) else inner
    attributes: dict[str, Any] = {
        "name": name or f"faulty-{inner_class.name}",
        "persistent": inner_class.persistent,
        "supports_read_only": inner_class.supports_read_only,
        "options": inner_class.options,
        "inner_class": inner_class,
        "plan": plan,
        "__doc__": f"{inner_class.__name__} with injected faults.",
    }
    return type(f"Faulty{inner_class.__name__}", (FaultyEngine,), attributes)


def register_faulty_engine(inner: str, plan: FaultPlan, *, name: str | None = None) -> str:
    """Register a fault-injecting wrapper of engine *inner* driven by *plan*; return its name.

    Replaces an earlier registration of the same name, so each test can
    register its own plan. Raises what `raftstore.registry.get_engine_class`
    raises when *inner* is unknown or unavailable.
    """
    engine_class = faulty_engine(inner, plan, name=name)
    register_engine(
        engine_class.name,
        engine_class,
        description=f"{inner} with injected faults (raftstore.testing.faults)",
        replace=True,
    )
    return engine_class.name
