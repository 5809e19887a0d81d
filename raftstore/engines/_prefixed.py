"""Key layout of engines that keep every namespace in one ordered keyspace.

The rocksdb and leveldb engines store each namespace under a one-byte key
prefix (``b"l"`` logs, ``b"m"`` meta, ``b"s"`` stable) in a single keyspace,
so one native write batch covers every namespace and the keys of a namespace
are bounded by ``[prefix, next byte)`` whatever their length.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from raftstore.engines.base import LOGS, META, NAMESPACES, STABLE
from raftstore.errors import InvalidArgumentError

__all__ = ["NAMESPACE_PREFIXES", "namespace_bounds", "namespace_prefix", "successor"]

#: Namespace -> the one byte that starts every key of that namespace.
NAMESPACE_PREFIXES: Mapping[str, bytes] = MappingProxyType({LOGS: b"l", META: b"m", STABLE: b"s"})

if set(NAMESPACE_PREFIXES) != set(NAMESPACES):  # pragma: no cover - guards future namespaces
    raise AssertionError("every namespace needs a key prefix")


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
