"""Reading RocksDB's and LevelDB's log-format files (WALs, MANIFESTs) in Python.

Both engines write their write-ahead logs and MANIFESTs in LevelDB's log
format: 32 KiB blocks of physical records (checksum, length, type), whole or
in fragments, and a write batch header of a sequence number (8 bytes) and a
count (4 bytes). A MANIFEST's records are VersionEdits: tagged fields with
varint and length-prefixed values; the tags LevelDB has (1 to 9) mean the same
in RocksDB, which adds its own. The engines' open checks read these files
before any native call; no checksum is verified here (the native open, or its
read-only trial, does).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Log files are written in blocks of this many bytes; a record never spans a block edge.
_LOG_BLOCK = 32 * 1024
#: A physical record's header: checksum (4), length (2, little-endian), type (1).
_LOG_HEADER = 7
#: Record types of recycled log files. raftstore never recycles WALs, so one of these is
#: damage, and RocksDB's reader loops forever on it instead of reporting it.
_RECYCLABLE_TYPES = frozenset((5, 6, 7, 8, 11))
#: Fragment types of a logical record: whole, or first, middle and last pieces.
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


#: The pseudo record type `_log_records` yields where it resynchronised after a hole.
_HOLE = -1


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    """Return the masked CRC-32C LevelDB and RocksDB store in a record header."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _valid_record_at(data: Any, pos: int, end: int) -> bool:
    """Tell whether a whole record of a plain type, its checksum right, starts at *pos*."""
    kind = data[pos + 6]
    length = data[pos + 4] | (data[pos + 5] << 8)
    if kind not in (_FULL, _FIRST, _MIDDLE, _LAST) or pos + _LOG_HEADER + length > end:
        return False
    stored = int.from_bytes(bytes(data[pos : pos + 4]), "little")
    return stored == _masked_crc32c(bytes(data[pos + 6 : pos + _LOG_HEADER + length]))


def _log_records(
    data: Any, start: int = 0, *, resync: bool = False
) -> Iterator[tuple[int, int, int]]:
    """Yield ``(offset, type, length)`` of each physical record from *start*, as RocksDB walks.

    A record whose length runs past its block makes the reader skip to the
    next block, as does a zero header (preallocated space); a partial header
    at the end is a torn tail and ends the walk.

    With *resync*, a zero header followed in its block by bytes that are not
    all zero (which neither engine writes: each pads only a block's last six
    bytes or fewer) yields a ``_HOLE`` pseudo record and the walk goes on at
    the next checksum-valid record in the block, if any: the engines skip the
    rest of the block, and the records there show what the hole took.
    """
    size = len(data)
    pos = start
    while pos + _LOG_HEADER <= size:
        left = _LOG_BLOCK - pos % _LOG_BLOCK
        if left < _LOG_HEADER:
            pos += left  # the block's zero-filled trailer
            continue
        length = data[pos + 4] | (data[pos + 5] << 8)
        kind = data[pos + 6]
        if resync and kind == 0 and length == 0 and any(bytes(data[pos : pos + left])):
            block_end = min(pos + left, size)
            found = next(
                (
                    at
                    for at in range(pos + 1, block_end - _LOG_HEADER + 1)
                    if _valid_record_at(data, at, block_end)
                ),
                None,
            )
            yield pos, _HOLE, 0
            pos = pos + left if found is None else found
            continue
        yield pos, kind, length
        end = pos + (_LOG_HEADER + 4 if kind in _RECYCLABLE_TYPES else _LOG_HEADER) + length
        if (kind == 0 and length == 0) or end > pos + left:
            pos += left
        else:
            pos = end


def _read_whole(path: Path) -> Any:
    """Return the bytes of *path* (memory-mapped when it is large), or b"" when missing."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < 1024 * 1024:
                return file.read()
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        return b""


def _log_scan(path: Path, start: int = 0) -> tuple[str | None, int]:
    """Scan the log file *path* from *start* (a record boundary).

    Returns ``(problem, resume)``: a description of a record RocksDB cannot
    read without looping (or None), and the offset to resume a later scan at.
    """
    data = _read_whole(path)
    resume = start
    try:
        for pos, kind, _ in _log_records(data, start):
            if kind in _RECYCLABLE_TYPES:
                return f"{path.name} has a record of unknown type {kind} at offset {pos}", pos
            resume = pos
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    return None, resume


def _logical_records(data: Any, *, resync: bool = False) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, payload)`` of each whole logical record, fragments joined.

    Only records whose every fragment is in the file are yielded (a torn
    tail is dropped, as RocksDB drops it); a fragment out of order starts
    over, as RocksDB's reader does. No checksum is checked here: these
    checks run after RocksDB itself has read the files without complaint.
    """
    parts: list[bytes] = []
    start = 0
    for pos, kind, length in _log_records(data, resync=resync):
        if kind == _HOLE:
            parts = []
            yield _HOLE, b""  # a hole (resync only): offset -1, no payload
            continue
        if pos + _LOG_HEADER + length > len(data):
            return
        payload = bytes(data[pos + _LOG_HEADER : pos + _LOG_HEADER + length])
        if kind == _FULL:
            parts = []
            yield pos, payload
        elif kind == _FIRST:
            parts, start = [payload], pos
        elif kind == _MIDDLE and parts:
            parts.append(payload)
        elif kind == _LAST and parts:
            parts.append(payload)
            yield start, b"".join(parts)
            parts = []
        else:
            parts = []


def _wal_batches(path: Path) -> list[tuple[int, int]]:
    """Return ``(sequence, count)`` of each whole write batch in the WAL *path*, in order."""
    data = _read_whole(path)
    try:
        return [
            (int.from_bytes(payload[:8], "little"), int.from_bytes(payload[8:12], "little"))
            for _, payload in _logical_records(data, resync=True)
            if len(payload) >= 12
        ]
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def log_batches(path: Path) -> list[tuple[int, int, bool]]:
    """Return ``(sequence, count, after_hole)`` of each whole write batch in the log *path*.

    *after_hole*: a zero header followed by data in its block (`_log_records`)
    comes between this batch and the one before it in the file (or the start).
    """
    data = _read_whole(path)
    batches: list[tuple[int, int, bool]] = []
    hole = False
    try:
        for pos, payload in _logical_records(data, resync=True):
            if pos == _HOLE:
                hole = True
            elif len(payload) >= 12:
                sequence = int.from_bytes(payload[:8], "little")
                batches.append((sequence, int.from_bytes(payload[8:12], "little"), hole))
                hole = False
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    return batches


def _file_number(name: str) -> int:
    stem = name.split(".", 1)[0].split("-")[-1]
    return int(stem) if stem.isdigit() else -1


class _Unreadable(Exception):
    """A MANIFEST record this parser does not understand."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a little-endian base-128 varint at *pos*; return ``(value, next position)``."""
    number = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Unreadable("a varint runs past its record")
        byte = data[pos]
        pos += 1
        number |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return number, pos


def _slice(data: bytes, pos: int) -> tuple[bytes, int]:
    """Decode a length-prefixed slice at *pos*; return ``(bytes, next position)``."""
    length, pos = _varint(data, pos)
    if pos + length > len(data):
        raise _Unreadable("a slice runs past its record")
    return data[pos : pos + length], pos + length


# LevelDB's VersionEdit tags (db/version_edit.cc); RocksDB's are a superset.
_TAG_COMPARATOR = 1
_TAG_LOG_NUMBER = 2
_TAG_NEXT_FILE = 3
_TAG_LAST_SEQUENCE = 4
_TAG_COMPACT_POINTER = 5
_TAG_DELETED_FILE = 6
_TAG_NEW_FILE = 7
_TAG_PREV_LOG_NUMBER = 9


class LevelDBManifest:
    """What a LevelDB MANIFEST's records say: the log numbers and the last sequence number.

    ``log_number``: logs numbered below it are flushed into tables (LevelDB
    skips and deletes them); ``prev_log_number``: an older log still needed
    (0 when none: LevelDB since 1.x always records 0); ``last_sequence``: the
    last sequence number when the last edit was written.
    """

    def __init__(self, data: Any) -> None:
        self.log_number = 0
        self.prev_log_number = 0
        self.last_sequence = 0
        for _, record in _logical_records(data):
            self._apply(record)

    def _apply(self, edit: bytes) -> None:
        pos = 0
        while pos < len(edit):
            tag, pos = _varint(edit, pos)
            if tag in (_TAG_LOG_NUMBER, _TAG_PREV_LOG_NUMBER, _TAG_NEXT_FILE, _TAG_LAST_SEQUENCE):
                value, pos = _varint(edit, pos)
                if tag == _TAG_LOG_NUMBER:
                    self.log_number = value
                elif tag == _TAG_PREV_LOG_NUMBER:
                    self.prev_log_number = value
                elif tag == _TAG_LAST_SEQUENCE:
                    self.last_sequence = value
            elif tag == _TAG_COMPARATOR:
                _, pos = _slice(edit, pos)
            elif tag == _TAG_COMPACT_POINTER:
                _, pos = _varint(edit, pos)
                _, pos = _slice(edit, pos)
            elif tag == _TAG_DELETED_FILE:
                _, pos = _varint(edit, pos)
                _, pos = _varint(edit, pos)
            elif tag == _TAG_NEW_FILE:
                _, pos = _varint(edit, pos)  # level
                _, pos = _varint(edit, pos)  # number
                _, pos = _varint(edit, pos)  # size
                _, pos = _slice(edit, pos)  # smallest key
                _, pos = _slice(edit, pos)  # largest key
            else:
                raise _Unreadable(f"unknown VersionEdit tag {tag}")


def read_leveldb_manifest(path: Path) -> LevelDBManifest | None:
    """Parse the LevelDB MANIFEST *path*; None when a record is not understood."""
    data = _read_whole(path)
    try:
        return LevelDBManifest(data)
    except _Unreadable:
        return None
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def batch_gap(
    logs: list[tuple[str, list[tuple[int, int, bool]]]], last_sequence: int
) -> str | None:
    """Describe the first hole in the write batches of *logs* that no power cut leaves, or None.

    *logs*: ``(name, batches)`` of each log the engine replays, oldest first,
    the first being the live log the MANIFEST names; *batches* as
    `log_batches` returns them; *last_sequence*: the MANIFEST's. A batch
    numbered past the writes before it (the previous batch's sequence plus
    its count, or ``last_sequence + 1`` for the first) means the writes in
    between are gone while later ones are there. That is refused when it lies
    inside one log: between two of its batches, after a zeroed region, or
    before the first batch of the live log (a log's head never vanishes). A
    hole where an older log simply ends is not: unsynced writes (never
    acknowledged) can reach the disk in a newer log and not in the older one
    before a power cut, which the engine cannot tell from a lost tail.
    """
    expected: int | None = None
    where = ""
    for position, (name, batches) in enumerate(logs):
        for index, (sequence, count, after_hole) in enumerate(batches):
            inside = index > 0 or after_hole or (expected is None and position == 0)
            if inside and sequence > (last_sequence + 1 if expected is None else expected):
                if expected is None:
                    return (
                        f"{name} starts at sequence {sequence}, but the MANIFEST accounts for "
                        f"writes only up to {last_sequence}: writes {last_sequence + 1}.."
                        f"{sequence - 1} are in no log and no table file; the log's start is "
                        "missing or zeroed"
                    )
                return (
                    f"writes {expected}..{sequence - 1} are missing in {name}"
                    f"{'' if where == name else f' (after {where})'}, but writes after them "
                    "are there: part of the log is missing or zeroed (the engine would "
                    "recover the later writes without the earlier)"
                )
            expected = max(expected or 0, sequence + count)
            where = name
    return None
