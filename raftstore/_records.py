"""The record format and key layout: the one place they are written down.

Key layout, per namespace of the `raftstore.engines.base.Engine` interface:

- ``logs``: the index as 8-byte big-endian -> record of the codec's bytes
- ``stable``: the caller's key -> record of the caller's bytes
- ``meta``: ``b"raftstore"`` -> record of JSON
  ``{"format": 2, "engine": ..., "codec": ...}``; ``b"commit-index"`` ->
  record of the commit index staged with the last ``store_logs``, 8 bytes
  big-endian (absent until one is staged)

A record is its payload followed by a CRC-32, 4 bytes little-endian.

- Format 2 (written by this version): the CRC covers the namespace, the key
  and the payload, so a damaged key is caught as surely as a damaged value,
  and a record moved under another key or into another namespace fails.
  ``crc32(namespace_tag + key + payload)`` is computed without joining the
  bytes: the key's CRC is the starting value of the payload's.
- Format 1 (earlier stores, still read): the CRC covers the payload only.

With the CRC appended little-endian, the CRC-32 of an intact record,
continued from the same starting value, is a constant (the CRC "residue"),
so checking a record is one pass over its bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Mapping
from types import MappingProxyType

from raftstore.engines.base import LOGS, META, STABLE
from raftstore.errors import CorruptionError

__all__ = [
    "COMMIT_KEY",
    "FORMAT_VERSION",
    "META_KEY",
    "MIN_FORMAT_VERSION",
    "RecordFormat",
    "index_key",
    "key_index",
    "record_format",
]

#: Version of the on-disk layout this raftstore writes.
FORMAT_VERSION = 2
#: Oldest layout this raftstore still reads.
MIN_FORMAT_VERSION = 1
#: Key of the meta record in the ``meta`` namespace.
META_KEY = b"raftstore"
#: Key of the persisted commit index in the ``meta`` namespace (8 bytes big-endian).
COMMIT_KEY = b"commit-index"

_INDEX = struct.Struct(">Q")
#: CRC-32 of any intact record continued from its starting value.
CRC_RESIDUE = 0x2144DF1C
_crc32 = zlib.crc32

#: Namespace -> the CRC-32 of its one-byte tag: the starting value of a key's CRC.
_NAMESPACE_SEEDS: Mapping[str, int] = MappingProxyType(
    {LOGS: _crc32(b"L"), STABLE: _crc32(b"S"), META: _crc32(b"M")}
)


def index_key(index: int) -> bytes:
    """The key of log *index* in the ``logs`` namespace (8-byte big-endian)."""
    return _INDEX.pack(index)


def key_index(key: bytes) -> int:
    """The log index a ``logs`` key stands for; `CorruptionError` if it is not 8 bytes."""
    if len(key) != 8:
        raise CorruptionError(f"log key {key[:16]!r} is not 8 bytes but {len(key)}")
    index: int = _INDEX.unpack(key)[0]
    return index


class RecordFormat:
    """Framing and checking of records for one format version.

    ``seed(namespace)`` returns a function of the key giving the CRC's
    starting value; the hot paths bind it once.
    """

    __slots__ = ("_seeds", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        self._seeds: dict[str, Callable[[bytes], int]] = {}
        for namespace, start in _NAMESPACE_SEEDS.items():
            if version >= 2:
                self._seeds[namespace] = _keyed_seed(start)
            else:
                self._seeds[namespace] = _no_seed

    def start(self, namespace: str) -> int | None:
        """The key CRC's starting value in *namespace*: the record's CRC starts from
        ``crc32(key, start)``; None for format 1 (the CRC starts from 0)."""
        return _NAMESPACE_SEEDS[namespace] if self.version >= 2 else None

    def seed(self, namespace: str) -> Callable[[bytes], int]:
        """The function giving a record's CRC starting value from its key."""
        return self._seeds[namespace]

    def frame(self, namespace: str, key: bytes, payload: bytes) -> bytes:
        """The record of *payload* stored under *key* in *namespace*."""
        crc = _crc32(payload, self._seeds[namespace](key))
        return payload + crc.to_bytes(4, "little")

    def frame_parts(self, namespace: str, key: bytes, parts: list[bytes]) -> bytes:
        """The record of the payload ``b"".join(parts)``, built with one copy of it."""
        crc = self._seeds[namespace](key)
        for part in parts:
            crc = _crc32(part, crc)
        parts.append(crc.to_bytes(4, "little"))
        return b"".join(parts)

    def unframe(self, namespace: str, key: bytes, raw: bytes, what: str) -> bytes | memoryview:
        """The payload of a record after checking its checksum; raises `CorruptionError`."""
        if len(raw) < 4:
            raise CorruptionError(
                f"{what}: record is {len(raw)} bytes, too short to hold a checksum"
            )
        if _crc32(raw, self._seeds[namespace](key)) != CRC_RESIDUE:
            raise CorruptionError(f"{what}: checksum mismatch (the stored key or value is damaged)")
        # Slicing copies, but below a few KiB a copy is cheaper than a memoryview.
        return raw[:-4] if len(raw) < 4096 else memoryview(raw)[:-4]


def _keyed_seed(start: int) -> Callable[[bytes], int]:
    def seed(key: bytes) -> int:
        return _crc32(key, start)

    return seed


def _no_seed(key: bytes) -> int:
    return 0


_FORMATS = {version: RecordFormat(version) for version in (1, 2)}


def record_format(version: int) -> RecordFormat:
    """The `RecordFormat` of on-disk format *version* (1 or 2)."""
    return _FORMATS[version]
