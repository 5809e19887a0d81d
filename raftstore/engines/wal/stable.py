"""The ``wal`` engine's small durable state: the segment list and the stable and meta tables.

It lives in one file, ``wal.manifest``, replaced atomically (a new file
written and fsynced, renamed over the old one, the directory fsynced) at
each segment rotation, truncation and clean close; between those, stable
and meta changes travel in the tail segment's batches (KV frames) and are
replayed from it at open. The file::

    magic "RSWALMAN" | version u32 | crc32 u32 of the body | body length u64 | body (JSON)

The body says whether the store was closed cleanly, and names every segment
(id, first index, live entries, where its index frame is), the log's first
index, the id the next segment will get (its file may exist already: the
spare being preallocated), segments dropped but perhaps not yet unlinked,
and a snapshot of both tables.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftstore._directory import fsync_directory
from raftstore.engines.base import META, STABLE
from raftstore.engines.wal.segment import KV_CLEAR, KV_DELETE, KV_PUT, REMEDY
from raftstore.errors import CorruptionError, StorageError

__all__ = [
    "MANIFEST",
    "MANIFEST_TMP",
    "Manifest",
    "SegmentRecord",
    "SortedTable",
    "apply_kv",
    "encode_kv",
    "read_manifest",
    "write_manifest",
]

MANIFEST = "wal.manifest"
MANIFEST_TMP = "wal.manifest.tmp"
_MAGIC = b"RSWALMAN"
_VERSION = 1
_HEADER = struct.Struct("<8sIIQ")
#: Largest manifest believed (a real one is a few KiB).
_MAX_MANIFEST = 256 * 1024 * 1024
#: Namespace byte of a KV frame.
_NAMESPACE_IDS = {STABLE: 1, META: 2}
_NAMESPACES = {1: STABLE, 2: META}
_KEY_LENGTH = struct.Struct("<BH")
_RANGE_LENGTHS = struct.Struct("<BHH")


class SortedTable:
    """A dict with its keys kept sorted: one namespace of small key-value data."""

    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.values:
            bisect.insort(self.keys, key)
        self.values[key] = value

    def delete_range(self, low: bytes, high: bytes) -> None:
        start = bisect.bisect_left(self.keys, low)
        end = bisect.bisect_right(self.keys, high)
        for key in self.keys[start:end]:
            del self.values[key]
        del self.keys[start:end]

    def clear(self) -> None:
        self.values.clear()
        self.keys.clear()

    def scan(self, low: bytes, high: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        start = bisect.bisect_left(self.keys, low)
        end = len(self.keys) if high is None else bisect.bisect_right(self.keys, high)
        return [(key, self.values[key]) for key in self.keys[start : min(end, start + limit)]]

    def first_key(self, low: bytes) -> bytes | None:
        position = bisect.bisect_left(self.keys, low)
        return self.keys[position] if position < len(self.keys) else None

    def last_key(self, high: bytes | None) -> bytes | None:
        position = len(self.keys) if high is None else bisect.bisect_right(self.keys, high)
        return self.keys[position - 1] if position else None


def encode_kv(kind: int, namespace: str, key: bytes = b"", value: bytes = b"") -> bytes:
    """A KV frame's payload: put *value* under *key*, delete the range *key*..*value*, or clear."""
    ns = _NAMESPACE_IDS[namespace]
    if kind == KV_PUT:
        return _KEY_LENGTH.pack(ns, len(key)) + key + value
    if kind == KV_DELETE:
        return _RANGE_LENGTHS.pack(ns, len(key), len(value)) + key + value
    return bytes((ns,))


def apply_kv(tables: dict[str, SortedTable], kind: int, payload: bytes, where: str) -> None:
    """Apply the KV frame *payload* of type *kind* to *tables*; `CorruptionError` if malformed."""
    try:
        namespace = _NAMESPACES[payload[0]]
        if kind == KV_PUT:
            _ns, key_length = _KEY_LENGTH.unpack_from(payload)
            start = _KEY_LENGTH.size
            if start + key_length > len(payload):
                raise ValueError("key overruns the frame")
            tables[namespace].put(
                payload[start : start + key_length], payload[start + key_length :]
            )
        elif kind == KV_DELETE:
            _ns, low_length, high_length = _RANGE_LENGTHS.unpack_from(payload)
            start = _RANGE_LENGTHS.size
            if start + low_length + high_length != len(payload):
                raise ValueError("keys do not fill the frame")
            low = payload[start : start + low_length]
            tables[namespace].delete_range(low, payload[start + low_length :])
        elif kind == KV_CLEAR:
            tables[namespace].clear()
        else:
            raise ValueError(f"frame type {kind}")
    except (IndexError, KeyError, ValueError, struct.error) as exc:
        raise CorruptionError(f"{where}: a damaged stable-store frame ({exc}); {REMEDY}") from exc


@dataclass(slots=True)
class SegmentRecord:
    """One segment as the manifest lists it."""

    id: int
    #: First index (0: the tail of an empty log, which takes the first batch's index).
    base: int
    #: Live entries (for the tail: those its checkpoint covers).
    count: int
    #: Offset of its index frame (sealed) or latest checkpoint (tail); 0: none.
    index_offset: int = 0
    sealed: bool = False

    @property
    def last(self) -> int:
        """The last live index (``base - 1`` when it holds none)."""
        return self.base + self.count - 1


@dataclass(slots=True)
class Manifest:
    """The engine's durable state, as `write_manifest` writes it."""

    next_id: int
    segments: list[SegmentRecord]
    #: The log's first index, 0 when the log was empty.
    first_index: int = 0
    #: Segments dropped by a truncation whose files may still exist.
    obsolete: list[int] = field(default_factory=list)
    tables: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    #: Written by a clean close: nothing follows the tail's checkpoint, so the next
    #: open neither scans nor looks past it. The first write of a session clears it.
    clean: bool = False

    def body(self) -> bytes:
        data: dict[str, Any] = {
            "next_id": self.next_id,
            "first_index": self.first_index,
            "segments": [
                [s.id, s.base, s.count, s.index_offset, int(s.sealed)] for s in self.segments
            ],
            "obsolete": self.obsolete,
            "clean": self.clean,
            "tables": {
                namespace: [[key.hex(), value.hex()] for key, value in sorted(table.items())]
                for namespace, table in self.tables.items()
            },
        }
        return json.dumps(data, separators=(",", ":")).encode()


def _parse(body: bytes, path: Path) -> Manifest:
    what = f"wal manifest {path}"
    try:
        data = json.loads(body)
        segments = [
            SegmentRecord(int(i), int(b), int(c), int(o), bool(s))
            for i, b, c, o, s in data["segments"]
        ]
        tables = {
            str(namespace): {bytes.fromhex(k): bytes.fromhex(v) for k, v in pairs}
            for namespace, pairs in data["tables"].items()
        }
        manifest = Manifest(
            next_id=int(data["next_id"]),
            segments=segments,
            first_index=int(data["first_index"]),
            obsolete=[int(i) for i in data["obsolete"]],
            tables=tables,
            clean=data.get("clean", False) is True,
        )
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CorruptionError(
            f"{what} has the wrong shape ({type(exc).__name__}); {REMEDY}"
        ) from exc
    _check_shape(manifest, what)
    return manifest


def _check_shape(manifest: Manifest, what: str) -> None:
    """Raise `CorruptionError` when the segment list cannot describe one contiguous log."""
    segments = manifest.segments
    problem = ""
    if not segments or segments[-1].sealed or any(not s.sealed for s in segments[:-1]):
        problem = "it does not end with exactly one unsealed (tail) segment"
    elif any(b.id <= a.id for a, b in itertools.pairwise(segments)):
        problem = "its segment ids are not increasing"
    elif manifest.next_id <= segments[-1].id:
        problem = "its next segment id is not past the last segment"
    elif set(manifest.tables) - {STABLE, META}:
        problem = "it names an unknown table"
    else:
        for a, b in itertools.pairwise(segments):
            if a.count <= 0 or a.base <= 0 or b.base != a.base + a.count:
                problem = f"segments {a.id} and {b.id} do not hold contiguous entries"
                break
        first = manifest.first_index
        head = segments[0]
        # The tail's count is only what its checkpoint covers: more may follow it.
        top = head.last if head.sealed else 2**64
        if not problem and first and not head.base <= first <= top:
            problem = f"its first index {first} lies outside its first segment"
        if not problem and not first and (len(segments) > 1 or head.base):
            problem = "it holds segments but says the log is empty"
    if problem:
        raise CorruptionError(f"{what} is damaged: {problem}; {REMEDY}")


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest in *directory*, or None when there is none; `CorruptionError` if damaged."""
    path = directory / MANIFEST
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot open wal manifest {path}: {exc}") from exc
    try:
        raw = b"".join(_read_all(fd))
    except OSError as exc:
        raise StorageError(f"cannot read wal manifest {path}: {exc}") from exc
    finally:
        os.close(fd)
    if len(raw) < _HEADER.size:
        raise CorruptionError(f"wal manifest {path} is truncated ({len(raw)} bytes); {REMEDY}")
    magic, version, crc, length = _HEADER.unpack_from(raw)
    body = raw[_HEADER.size :]
    if magic != _MAGIC or length != len(body) or zlib.crc32(body) != crc:
        raise CorruptionError(f"wal manifest {path} fails its checksum (damaged); {REMEDY}")
    if version != _VERSION:
        raise CorruptionError(
            f"wal manifest {path} has version {version}, not {_VERSION}; upgrade raftstore"
        )
    return _parse(body, path)


def _read_all(fd: int) -> Iterator[bytes]:
    total = 0
    while chunk := os.read(fd, 1 << 20):
        total += len(chunk)
        if total > _MAX_MANIFEST:
            raise OSError(f"larger than {_MAX_MANIFEST} bytes")
        yield chunk


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Durably replace *directory*'s manifest: new file, fsync, rename, directory fsync.

    Raises `StorageError` (the caller's handle must then be poisoned: it
    cannot know which manifest survives).
    """
    body = manifest.body()
    data = _HEADER.pack(_MAGIC, _VERSION, zlib.crc32(body), len(body)) + body
    tmp = directory / MANIFEST_TMP
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, directory / MANIFEST)
        fsync_directory(directory)
    except OSError as exc:
        raise StorageError(f"cannot write wal manifest {directory / MANIFEST}: {exc}") from exc
