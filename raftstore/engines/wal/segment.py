"""Segment files of the ``wal`` engine: their frames, how a batch is written, how one is read.

A segment file is a 32-byte header followed by 8-byte aligned frames::

    segment header   magic "RSWALSEG" | version u32 | crc u32 | segment id u64 | size u64
    frame header     type u8 | flags u8 | reserved u16 | length u32 | group id u64   (16 bytes)
    frame payload    length bytes, then zero padding to the next multiple of 8

A *batch* (one `WalEngine.write`) is a LOG frame holding its entries (a
count, a table of their lengths, then the records back to back) and KV
frames, closed by a COMMIT frame whose checksum covers every byte of the
batch and the commit's own fields; it is written with one ``pwritev``. An
INDEX frame lists where each entry of a segment starts and its length: the
last frame of a sealed segment, and a checkpoint in the tail segment
(written at close, so a reopen need not rescan what it covers).
docs/wal.md draws the whole format.

Every integer is little-endian. The group id is 0 (room for many Raft
groups sharing one log later); a frame of another group is refused.
"""

from __future__ import annotations

import itertools
import mmap
import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from raftstore.errors import CorruptionError, StorageError

__all__ = [
    "COMMIT",
    "FRAME_HEADER",
    "INDEX",
    "KV_CLEAR",
    "KV_DELETE",
    "KV_PUT",
    "LOG",
    "SEGMENT_HEADER_SIZE",
    "Recovered",
    "Segment",
    "commit_frame",
    "entry_starts",
    "index_frame",
    "kv_frame",
    "log_frame_head",
    "read_index_frame",
    "recover_tail",
    "segment_header",
    "segment_name",
    "write_segment_header",
]

#: Frame types. 0 is never written: a zero header is unwritten (preallocated) space.
LOG, KV_PUT, KV_DELETE, KV_CLEAR, COMMIT, INDEX = 1, 2, 3, 4, 5, 6
_BATCH_FRAMES = frozenset((LOG, KV_PUT, KV_DELETE, KV_CLEAR))

SEGMENT_MAGIC = b"RSWALSEG"
SEGMENT_VERSION = 1
_SEGMENT_HEADER = struct.Struct("<8sIIQQ")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size  # 32

FRAME_HEADER = struct.Struct("<BBHIQ")
FRAME_HEADER_SIZE = FRAME_HEADER.size  # 16
#: A LOG frame's header and entry count (type 1, group 0): length, count.
LOG_HEADER = struct.Struct("<B3xI8xI4x")
_ENTRIES = struct.Struct("<I4x")
#: Bytes before a LOG frame's length table.
LOG_TABLE_AT = FRAME_HEADER_SIZE + _ENTRIES.size

#: COMMIT payload: segment id, first log index (0: no logs), log count, batch bytes, crc, 0.
_COMMIT = struct.Struct("<QQIIII")
_COMMIT_SIGNED = struct.Struct("<QQII")
COMMIT_FRAME_SIZE = FRAME_HEADER_SIZE + _COMMIT.size  # 48
#: Every commit frame starts with these 16 bytes: recovery searches for them.
COMMIT_HEADER = FRAME_HEADER.pack(COMMIT, 0, 0, _COMMIT.size, 0)

#: INDEX payload head: segment id, base index, count, sealed flag, crc, 0; then
#: count u64 starts, count u32 lengths, padding.
_INDEX = struct.Struct("<QQIIII")
_INDEX_SIGNED = struct.Struct("<QQII")

PADDING = tuple(b"\x00" * n for n in range(8))
_LITTLE = sys.byteorder == "little"
_crc32 = zlib.crc32

#: What to do about damage, in every such message.
REMEDY = (
    "restore the store's files from a backup, or remove the store and rejoin the cluster"
    " as a new node"
)


def segment_name(segment_id: int) -> str:
    """The file name of segment *segment_id*."""
    return f"segment-{segment_id:016d}.wal"


def padded(length: int) -> int:
    """Bytes a frame with a *length*-byte payload takes, header and padding included."""
    return FRAME_HEADER_SIZE + length + (-length & 7)


def segment_header(segment_id: int, size: int) -> bytes:
    """The 32-byte header of segment *segment_id*, whose file was made *size* bytes long."""
    crc = _crc32(struct.pack("<8sIQQ", SEGMENT_MAGIC, SEGMENT_VERSION, segment_id, size))
    return _SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, crc, segment_id, size)


def write_segment_header(path: Path, segment_id: int) -> None:
    """Head the prepared file *path* as segment *segment_id*, durably (OSError on failure).

    The header records the file's preallocated size: a segment file found
    shorter than that was truncated, which no torn write can do.
    """
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.pwrite(fd, segment_header(segment_id, os.fstat(fd).st_size), 0)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def check_segment_header(raw: bytes, segment_id: int, path: Path) -> int:
    """The preallocated size in *raw*, segment *segment_id*'s header; `CorruptionError` if bad."""
    if len(raw) < SEGMENT_HEADER_SIZE:
        raise CorruptionError(f"wal segment {path} is shorter than its header; {REMEDY}")
    magic, version, crc, found_id, size = _SEGMENT_HEADER.unpack_from(raw)
    expected = _crc32(struct.pack("<8sIQQ", magic, version, found_id, size))
    if magic != SEGMENT_MAGIC or crc != expected:
        zeroed = " (it is all zeros)" if not any(raw[:SEGMENT_HEADER_SIZE]) else ""
        raise CorruptionError(f"wal segment {path} has a damaged header{zeroed}; {REMEDY}")
    if version != SEGMENT_VERSION:
        raise CorruptionError(
            f"wal segment {path} has format version {version}, not {SEGMENT_VERSION}"
            " (written by another raftstore?); upgrade raftstore or restore the store"
        )
    if found_id != segment_id:
        raise CorruptionError(
            f"wal segment {path} says it is segment {found_id}, not {segment_id}"
            f" (a file renamed or copied over another?); {REMEDY}"
        )
    prepared: int = size
    return prepared


def kv_frame(kind: int, payload: bytes) -> bytes:
    """A KV_PUT, KV_DELETE or KV_CLEAR frame holding *payload* (see `stable.encode_kv`)."""
    return FRAME_HEADER.pack(kind, 0, 0, len(payload), 0) + payload + PADDING[-len(payload) & 7]


def commit_frame(segment_id: int, first_index: int, count: int, batch: bytes) -> bytes:
    """The COMMIT frame closing *batch* (the batch's frames, as written before it)."""
    signed = _COMMIT_SIGNED.pack(segment_id, first_index, count, len(batch))
    crc = _crc32(signed, _crc32(batch))
    return COMMIT_HEADER + _COMMIT.pack(segment_id, first_index, count, len(batch), crc, 0)


def _le_bytes(values: array[int]) -> bytes:
    if _LITTLE:
        return values.tobytes()
    copy = array(values.typecode, values)
    copy.byteswap()
    return copy.tobytes()


def _from_le(typecode: str, raw: bytes | mmap.mmap) -> array[int]:
    values = array(typecode)
    values.frombytes(raw)
    if not _LITTLE:
        values.byteswap()
    return values


def log_frame_head(lengths: array[int], data: int) -> bytes:
    """A LOG frame's header, count and length table, for entries of *lengths* (*data* bytes)."""
    count = len(lengths)
    return LOG_HEADER.pack(LOG, _ENTRIES.size + 4 * count + data, count) + _le_bytes(lengths)


def entry_starts(frame_at: int, lengths: array[int]) -> array[int]:
    """Where each entry of the LOG frame at *frame_at* with entries of *lengths* starts."""
    first = frame_at + LOG_TABLE_AT + 4 * len(lengths)
    starts = array("Q", itertools.accumulate(lengths, initial=first))
    starts.pop()
    return starts


def index_frame(
    segment_id: int, base: int, starts: array[int], lengths: array[int], *, sealed: bool
) -> bytes:
    """An INDEX frame listing the *starts* and *lengths* of entries ``base..base+len-1``."""
    body = _le_bytes(starts) + _le_bytes(lengths)
    signed = _INDEX_SIGNED.pack(segment_id, base, len(starts), int(sealed))
    crc = _crc32(body, _crc32(signed))
    payload = _INDEX.pack(segment_id, base, len(starts), int(sealed), crc, 0) + body
    return FRAME_HEADER.pack(INDEX, 0, 0, len(payload), 0) + payload + PADDING[-len(payload) & 7]


def _parse_index(
    view: bytes | mmap.mmap, at: int, size: int, segment_id: int
) -> tuple[array[int], array[int]] | None:
    """The starts and lengths of the INDEX frame at *at*, or None when it is not a valid one."""
    if at + FRAME_HEADER_SIZE + _INDEX.size > size:
        return None
    kind, flags, reserved, length, group = FRAME_HEADER.unpack_from(view, at)
    if kind != INDEX or flags or reserved or group or length < _INDEX.size:
        return None
    start = at + FRAME_HEADER_SIZE
    if start + length > size:
        return None
    found_id, base, count, sealed, crc, _zero = _INDEX.unpack_from(view, start)
    if found_id != segment_id or length != _INDEX.size + 12 * count:
        return None
    body = view[start + _INDEX.size : start + length]
    if _crc32(body, _crc32(_INDEX_SIGNED.pack(found_id, base, count, sealed))) != crc:
        return None
    return _from_le("Q", body[: 8 * count]), _from_le("I", body[8 * count :])


def read_index_frame(
    view: bytes | mmap.mmap, at: int, size: int, segment_id: int, count: int, path: Path
) -> tuple[array[int], array[int], int]:
    """The first *count* starts and lengths of the INDEX frame at *at*, and the offset after it.

    Raises `CorruptionError` when the frame the segment list points to is
    not there, damaged, or lists fewer entries than the list says.
    """
    found = _parse_index(view, at, size, segment_id)
    if found is None or len(found[0]) < count:
        raise CorruptionError(
            f"wal segment {path}: the index frame at byte {at} that the segment list points to"
            f" is missing or damaged; {REMEDY}"
        )
    starts, lengths = found
    end = at + padded(_INDEX.size + 12 * len(starts))
    del starts[count:], lengths[count:]
    return starts, lengths, end


@dataclass(slots=True)
class Recovered:
    """What `recover_tail` found after the tail's last checkpoint."""

    #: Offset where the next batch goes (after the last valid commit).
    end: int
    #: Base index found (when the segment started without one), else the one given.
    base: int
    #: Where each entry found starts, and its length, in index order.
    starts: array[int] = field(default_factory=lambda: array("Q"))
    lengths: array[int] = field(default_factory=lambda: array("I"))
    #: KV frames of committed batches, in order: (type, payload).
    kv: list[tuple[int, bytes]] = field(default_factory=list)
    #: Bytes examined.
    scanned: int = 0
    #: Why the scan stopped before the end of written data ("" when it did not).
    torn: str = ""


def recover_tail(
    view: bytes | mmap.mmap,
    start: int,
    size: int,
    segment_id: int,
    base: int,
    count: int,
    path: Path,
    *,
    look_ahead: bool = True,
) -> Recovered:
    """Scan the tail segment from *start* to its last valid commit frame.

    *base* is the segment's first index (0 when it has none yet) and *count*
    the entries before *start*. A batch that is not closed by a valid commit
    frame is the torn final write of a crash and is dropped, but only when no
    valid commit frame follows it: acknowledged batches behind damaged bytes
    raise `CorruptionError` (nothing is changed). *look_ahead* False skips
    that search, for a tail closed cleanly (nothing was written after *start*).
    """
    found = Recovered(end=start, base=base)
    pos = start
    next_index = base + count if base else 0
    header = FRAME_HEADER.unpack_from
    while True:
        if pos + FRAME_HEADER_SIZE > size:
            break
        kind, flags, reserved, length, group = header(view, pos)
        if kind == 0 and not (flags or reserved or length or group):
            break
        if kind == INDEX:
            if _parse_index(view, pos, size, segment_id) is None:
                found.torn = f"a damaged index frame at byte {pos}"
                break
            pos += padded(length)
            found.end = pos
            continue
        batch_start = pos
        starts: list[array[int]] = []
        lengths: list[array[int]] = []
        logs = 0
        kv: list[tuple[int, bytes]] = []
        committed = False
        while True:
            if pos + FRAME_HEADER_SIZE > size:
                break
            kind, flags, reserved, length, group = header(view, pos)
            if flags or reserved or group or pos + padded(length) > size:
                break
            if kind == COMMIT:
                committed = _check_commit(
                    view, pos, length, segment_id, batch_start, logs, next_index
                )
                if committed:
                    first = _COMMIT.unpack_from(view, pos + FRAME_HEADER_SIZE)[1]
                    if logs and not next_index:
                        found.base = first
                        next_index = first
                    pos += padded(length)
                break
            if kind not in _BATCH_FRAMES:
                break
            if kind == LOG:
                table = _log_table(view, pos, length)
                if table is None:
                    break
                starts.append(entry_starts(pos, table))
                lengths.append(table)
                logs += len(table)
            else:
                start_at = pos + FRAME_HEADER_SIZE
                kv.append((kind, bytes(view[start_at : start_at + length])))
            pos += padded(length)
        if not committed:
            found.torn = f"an incomplete batch at byte {batch_start}"
            pos = batch_start
            break
        for found_starts, found_lengths in zip(starts, lengths, strict=True):
            found.starts.extend(found_starts)
            found.lengths.extend(found_lengths)
        found.kv.extend(kv)
        next_index += logs
        found.end = pos
    found.scanned = found.end - start
    later = _later_commit(view, found.end, size, segment_id) if look_ahead else None
    if later is not None:
        what = found.torn or "unwritten (zero) bytes"
        raise CorruptionError(
            f"wal segment {path} is damaged: {what} at byte {found.end} is followed by a valid"
            f" batch at byte {later}, so acknowledged writes lie behind damaged bytes; {REMEDY}"
        )
    return found


def _log_table(view: bytes | mmap.mmap, at: int, length: int) -> array[int] | None:
    """The entry lengths of the LOG frame at *at* (payload *length*), or None if inconsistent."""
    if length < _ENTRIES.size:
        return None
    count = _ENTRIES.unpack_from(view, at + FRAME_HEADER_SIZE)[0]
    table_end = at + LOG_TABLE_AT + 4 * count
    if _ENTRIES.size + 4 * count > length:
        return None
    table = _from_le("I", view[at + LOG_TABLE_AT : table_end])
    if _ENTRIES.size + 4 * count + sum(table) != length:
        return None
    return table


def _check_commit(
    view: bytes | mmap.mmap,
    at: int,
    length: int,
    segment_id: int,
    batch_start: int,
    logs: int,
    next_index: int,
) -> bool:
    """True when the COMMIT frame at *at* closes the batch from *batch_start*."""
    if length != _COMMIT.size:
        return False
    found_id, first, count, batch_length, crc, _zero = _COMMIT.unpack_from(
        view, at + FRAME_HEADER_SIZE
    )
    if found_id != segment_id or count != logs or batch_length != at - batch_start:
        return False
    if logs and next_index and first != next_index:
        return False
    signed = _COMMIT_SIGNED.pack(found_id, first, count, batch_length)
    valid: bool = _crc32(signed, _crc32(view[batch_start:at])) == crc
    return valid


def _later_commit(view: bytes | mmap.mmap, start: int, size: int, segment_id: int) -> int | None:
    """The offset of a valid COMMIT frame after *start* (one that closes its batch), or None."""
    at = start
    while True:
        at = view.find(COMMIT_HEADER, at, size)
        if at < 0:
            return None
        if at % 8 == 0 and at + COMMIT_FRAME_SIZE <= size:
            found_id, first, count, batch_length, crc, _zero = _COMMIT.unpack_from(
                view, at + FRAME_HEADER_SIZE
            )
            begin = at - batch_length
            if found_id == segment_id and begin >= SEGMENT_HEADER_SIZE and begin % 8 == 0:
                signed = _COMMIT_SIGNED.pack(found_id, first, count, batch_length)
                if _crc32(signed, _crc32(view[begin:at])) == crc:
                    return at
        at += 8 - at % 8 if at % 8 else 8


class Segment:
    """One segment file: where each of its entries starts and its length, and a map of it.

    ``count`` entries, ``base .. base+count-1``, are live (a sealed segment's
    index frame may list more: a tail truncation cut it). A sealed segment's
    index is loaded from its index frame on first read.
    """

    __slots__ = (
        "base",
        "count",
        "fd",
        "id",
        "index_count",
        "index_offset",
        "lengths",
        "map",
        "mapped",
        "offsets",
        "path",
        "sealed",
        "write_offset",
    )

    def __init__(self, directory: Path, segment_id: int, base: int, count: int) -> None:
        self.id = segment_id
        self.path = directory / segment_name(segment_id)
        self.base = base
        self.count = count
        self.sealed = False
        self.index_offset = 0
        self.index_count = 0
        self.offsets: array[int] | None = None
        self.lengths: array[int] = array("I")
        self.fd = -1
        self.map: mmap.mmap | None = None
        self.mapped = 0
        self.write_offset = SEGMENT_HEADER_SIZE

    @property
    def last(self) -> int:
        """The last live index (``base - 1`` when empty)."""
        return self.base + self.count - 1

    def open(self, *, writable: bool, minimum_size: int) -> None:
        """Open and map the file; `CorruptionError` when missing or shorter than *minimum_size*."""
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError as exc:
            raise CorruptionError(
                f"wal segment {self.path} is missing: the segment list names it, so entries"
                f" {self.base or '(none yet)'}.. are gone; {REMEDY}"
            ) from exc
        except OSError as exc:
            raise StorageError(f"cannot open wal segment {self.path}: {exc}") from exc
        try:
            size = os.fstat(fd).st_size
            if size < max(minimum_size, SEGMENT_HEADER_SIZE):
                raise CorruptionError(
                    f"wal segment {self.path} is {size} bytes, shorter than the"
                    f" {max(minimum_size, SEGMENT_HEADER_SIZE)} its entries need (truncated?);"
                    f" {REMEDY}"
                )
            prepared = check_segment_header(
                os.pread(fd, SEGMENT_HEADER_SIZE, 0), self.id, self.path
            )
            if size < prepared:
                raise CorruptionError(
                    f"wal segment {self.path} is {size} bytes but was made {prepared} bytes"
                    f" long: it was truncated, and entries or stable values in it may be lost;"
                    f" {REMEDY}"
                )
            self.fd = fd
            self.remap(size)
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot read wal segment {self.path}: {exc}") from exc
        except BaseException:
            os.close(fd)
            raise

    def remap(self, size: int) -> None:
        """Map the first *size* bytes of the file (reads past them use pread)."""
        if self.map is not None:
            self.map.close()
            self.map = None
        self.mapped = 0
        if size > 0:
            self.map = mmap.mmap(self.fd, size, prot=mmap.PROT_READ)
            self.mapped = size

    def load_index(self) -> array[int]:
        """The entry starts of a sealed segment, read from its index frame on first use."""
        offsets = self.offsets
        if offsets is None:
            view = self.map
            assert view is not None
            offsets, self.lengths, _end = read_index_frame(
                view, self.index_offset, self.mapped, self.id, self.count, self.path
            )
            self.offsets = offsets
        return offsets

    def read(self, position: int) -> bytes:
        """The record of live entry *position* (0-based)."""
        offsets = self.offsets if self.offsets is not None else self.load_index()
        at = offsets[position]
        end = at + self.lengths[position]
        if end <= self.mapped:
            view = self.map
            assert view is not None
            return view[at:end]
        try:
            record = os.pread(self.fd, end - at, at)
        except OSError as exc:
            raise StorageError(f"cannot read wal segment {self.path}: {exc}") from exc
        if len(record) != end - at:
            raise CorruptionError(
                f"wal segment {self.path}: log {self.base + position} (bytes {at}..{end}) lies"
                f" past the end of the file; {REMEDY}"
            )
        return record

    def close(self) -> None:
        """Unmap and close; idempotent."""
        if self.map is not None:
            self.map.close()
            self.map = None
            self.mapped = 0
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)
