"""`WalEngine`: raftstore's own segment log (engine ``wal``), a monotonic key-value engine.

The store above it (`raftstore.store.RaftStore`) validates, frames and
checksums every record and refuses, for a monotonic engine, any log write
that does not continue the log and any delete in the middle. So this engine
sees, in namespace ``logs``, appends right after its last index (anywhere
when the log is empty), clears, and deletes that cut the head or the tail;
``stable`` and ``meta`` are small tables.

Durability and cost, per call:

- a write (``store_logs``, ``set``, ...): its frames and a commit frame in
  one ``pwritev`` into the tail segment, then one ``fdatasync`` when the
  store syncs (the segment was zero-filled ahead of use, so the sync commits
  no file-system metadata). Durable before return with ``sync=True``.
- rotation (the tail segment is full): the next segment (made in the
  background) gets its header, the old tail an index frame, then the
  manifest is replaced. A few syncs, once per ``segment_size`` bytes.
- head truncation: the manifest is replaced, then whole segments unlinked.
- tail truncation and clear: a new tail segment, then the manifest.
- open: the manifest, then only the tail segment from its last checkpoint.

Any I/O error or failed ``fdatasync`` while writing poisons the handle:
every later call raises `StorageError` until the store is reopened (after
a failed fsync the kernel may have dropped the dirty pages: retrying would
report success for data that is gone).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import os
import struct
import sys
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from raftstore._directory import fsync_directory
from raftstore.engines.base import (
    LOGS,
    META,
    STABLE,
    Engine,
    EngineOption,
    WriteBatch,
    between,
    one_of,
)
from raftstore.engines.wal.recovery import create_layout, open_layout
from raftstore.engines.wal.segment import (
    COMMIT_FRAME_SIZE,
    KV_CLEAR,
    KV_DELETE,
    KV_PUT,
    LOG_TABLE_AT,
    PADDING,
    REMEDY,
    SEGMENT_HEADER_SIZE,
    Segment,
    commit_frame,
    entry_starts,
    index_frame,
    kv_frame,
    log_frame_head,
    segment_name,
    write_segment_header,
)
from raftstore.engines.wal.spare import PREALLOCATE_MODES, SparePreparer
from raftstore.engines.wal.stable import (
    MANIFEST,
    Manifest,
    SegmentRecord,
    apply_kv,
    encode_kv,
    read_manifest,
    write_manifest,
)
from raftstore.errors import CorruptionError, InvalidArgumentError, ReadOnlyError, StorageError

__all__ = ["SegmentInfo", "WalEngine"]


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment of an open wal store, as `WalEngine.segments` describes it."""

    id: int
    path: Path
    #: First index (0: none yet) and live entries.
    base: int
    count: int
    sealed: bool
    #: Offset of its index frame (sealed) or last checkpoint (tail); 0: none.
    index_offset: int
    #: Offset after its last written frame (the tail's next batch goes there).
    end: int


_MIB = 1024 * 1024
_INDEX = struct.Struct(">Q")
_pack_index = _INDEX.pack
_unpack_index = _INDEX.unpack
_LITTLE = sys.byteorder == "little"
_MAX_FRAME = 2**32 - 1
_KV_OPS = {KV_PUT, KV_DELETE, KV_CLEAR}


def _keys_blob(start: int, count: int) -> bytes:
    """The 8-byte big-endian keys ``start .. start+count-1``, concatenated."""
    keys = array("Q", range(start, start + count))
    if _LITTLE:
        keys.byteswap()
    return keys.tobytes()


class WalEngine(Engine):
    """Segment files of checksummed batches plus a small atomically replaced manifest."""

    name: ClassVar[str] = "wal"
    persistent: ClassVar[bool] = True
    supports_read_only: ClassVar[bool] = False
    monotonic: ClassVar[bool] = True
    options: ClassVar[Mapping[str, EngineOption]] = {
        "segment_size": EngineOption(
            int,
            8 * _MIB,
            "bytes per segment file, preallocated ahead of use; a larger batch gets a"
            " larger segment",
            between(4096, 1 << 30, "bytes"),
        ),
        "preallocate": EngineOption(
            str,
            "zero",
            "how segment files are made ahead of use: zero (preallocated and zero-filled,"
            " so synced appends commit no file-system metadata), fallocate, or none",
            one_of(*PREALLOCATE_MODES),
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
        if path is None:  # pragma: no cover - the store gives persistent engines a path
            raise InvalidArgumentError("engine 'wal' needs a directory")
        self.directory = path
        self._segment_size = int(options.get("segment_size", 8 * _MIB))
        self._preallocate = str(options.get("preallocate", "zero"))
        manifest = read_manifest(path)
        if manifest is None:
            if not self.create:
                raise CorruptionError(
                    f"wal store {path} has lost its manifest ({path / MANIFEST} is missing):"
                    f" the segment list and stable store are gone; {REMEDY}"
                )
            layout = create_layout(path, self._segment_size, self._preallocate)
        else:
            layout = open_layout(path, manifest, read_only=self.read_only)
        self._tail, self._sealed, self._tables = layout.tail, layout.sealed, layout.tables
        self._bases = [s.base for s in layout.sealed]
        self._first, self._last = layout.first, layout.last
        self._next_id, self._obsolete = layout.next_id, layout.obsolete
        #: The manifest on disk says "closed cleanly" (cleared by a session's first write).
        self._clean_on_disk = layout.clean
        #: Bytes of a torn batch lie past the tail's end: the next batch starts a segment.
        self._must_rotate = layout.torn
        #: What this open read: segments opened, bytes scanned, index entries loaded.
        self.recovery = layout.recovery
        #: Why the handle refuses every call ("" while it is usable).
        self._poisoned = ""
        #: The tail has frames its checkpoint does not cover; writes not yet fdatasynced.
        self._dirty = self._unsynced = False
        self._closed = self._spare_started = False
        #: A write reached this handle: only then may close touch a file (an open that
        #: fails is closed too, and must leave the files as it found them).
        self._wrote = False
        self._preparer: SparePreparer | None = None
        if not self.read_only:
            self._preparer = SparePreparer(path, self._segment_size, self._preallocate)

    # -- state -----------------------------------------------------------------

    def _manifest(
        self, tail: Segment, sealed: list[Segment] | None = None, *, clean: bool = False
    ) -> Manifest:
        records = [
            SegmentRecord(s.id, s.base, s.count, s.index_offset, True)
            for s in (self._sealed if sealed is None else sealed)
        ]
        records.append(SegmentRecord(tail.id, tail.base, tail.index_count, tail.index_offset))
        return Manifest(
            next_id=self._next_id,
            segments=records,
            first_index=self._first,
            obsolete=list(self._obsolete),
            tables={name: dict(table.values) for name, table in self._tables.items()},
            clean=clean,
        )

    def _fail(self, what: str, exc: BaseException) -> StorageError:
        """Poison the handle after a failed write or sync; return the error to raise."""
        self._poisoned = f"{what} failed ({exc})"
        full = " (the disk is full)" if getattr(exc, "errno", None) == errno.ENOSPC else ""
        return StorageError(
            f"wal store {self.directory}: {what} failed{full}: {exc}. A failed write or sync"
            " cannot be retried safely, so this handle now refuses every call: close the"
            " store and open it again (it then holds exactly the acknowledged writes)"
        )

    def _raise_poisoned(self) -> NoReturn:
        raise StorageError(
            f"wal store {self.directory}: an earlier {self._poisoned}; this handle refuses"
            " every call until the store is closed and opened again"
        )

    def _check_writable(self) -> None:
        if self._poisoned:
            self._raise_poisoned()
        if self.read_only:
            raise ReadOnlyError(f"wal store {self.directory} is open read-only")
        self._wrote = True
        if self._clean_on_disk:
            self._mark_open()

    def _mark_open(self) -> None:
        """Before a session's first write: the manifest stops saying "closed cleanly"."""
        try:
            write_manifest(self.directory, self._manifest(self._tail))
        except StorageError as exc:
            raise self._fail("replacing the manifest", exc) from exc
        self._clean_on_disk = False

    # -- reads -----------------------------------------------------------------

    def get(self, namespace: str, key: bytes) -> bytes | None:
        if self._poisoned:
            self._raise_poisoned()
        if namespace != LOGS:
            return self._tables[namespace].values.get(key)
        if len(key) != 8:
            return None
        index = _unpack_index(key)[0]
        if index > self._last or index < self._first or not self._first:
            return None
        tail = self._tail
        if index >= tail.base and tail.count:
            return tail.read(index - tail.base)
        segment = self._segment_for(index)
        return segment.read(index - segment.base)

    def _segment_for(self, index: int) -> Segment:
        """The sealed segment holding *index* (within the log's bounds), opened."""
        segment = self._sealed[bisect.bisect_right(self._bases, index) - 1]
        if segment.fd < 0:
            segment.open(writable=False, minimum_size=segment.index_offset + 48)
            self.recovery["segments_read"] += 1
        if segment.offsets is None:
            segment.load_index()
        return segment

    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        if self._poisoned:
            self._raise_poisoned()
        if namespace != LOGS:
            return self._tables[namespace].scan(low, high, limit)
        first = self.first_key(LOGS, low)
        last = self.last_key(LOGS, high)
        if first is None or last is None:
            return []
        start, end = _unpack_index(first)[0], _unpack_index(last)[0]
        end = min(end, start + limit - 1)
        result: list[tuple[bytes, bytes]] = []
        index = start
        while index <= end:
            tail = self._tail
            segment = tail if index >= tail.base and tail.count else self._segment_for(index)
            stop = min(end, segment.last)
            read = segment.read
            base = segment.base
            for i in range(index, stop + 1):
                result.append((_pack_index(i), read(i - base)))
            index = stop + 1
        return result

    def first_key(self, namespace: str, low: bytes = b"") -> bytes | None:
        if self._poisoned:
            self._raise_poisoned()
        if namespace != LOGS:
            return self._tables[namespace].first_key(low)
        if not self._first:
            return None
        candidate = int.from_bytes(low[:8].ljust(8, b"\x00"), "big")
        if len(low) > 8 and _pack_index(candidate) < low:
            candidate += 1  # *low* is a longer key after *candidate*
        candidate = max(candidate, self._first)
        return _pack_index(candidate) if candidate <= self._last else None

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        if self._poisoned:
            self._raise_poisoned()
        if namespace != LOGS:
            return self._tables[namespace].last_key(high)
        if not self._first:
            return None
        if high is None:
            return _pack_index(self._last)
        candidate = int.from_bytes(high[:8].ljust(8, b"\x00"), "big")
        if _pack_index(candidate) > high:
            candidate -= 1
        candidate = min(candidate, self._last)
        return _pack_index(candidate) if candidate >= self._first else None

    # -- writes ----------------------------------------------------------------

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        if namespace == LOGS:
            self._check_writable()
            self._append(self._continuing(key, 1), [value], [], [])
        else:
            self.write(WriteBatch(puts=[(namespace, key, value)]))

    def write(self, batch: WriteBatch) -> None:
        self._check_writable()
        kv_frames: list[bytes] = []
        kv_ops: list[tuple[int, bytes]] = []
        clear_logs = False
        log_deletes: list[tuple[bytes, bytes]] = []
        for namespace in batch.clears:
            if namespace == LOGS:
                clear_logs = True
            else:
                payload = encode_kv(KV_CLEAR, self._namespace(namespace))
                kv_frames.append(kv_frame(KV_CLEAR, payload))
                kv_ops.append((KV_CLEAR, payload))
        for namespace, low, high in batch.deletes:
            if namespace == LOGS:
                log_deletes.append((low, high))
            else:
                payload = encode_kv(KV_DELETE, self._namespace(namespace), low, high)
                kv_frames.append(kv_frame(KV_DELETE, payload))
                kv_ops.append((KV_DELETE, payload))
        values: list[bytes] = []
        keys: list[bytes] = []
        for namespace, key, value in batch.puts:
            if namespace == LOGS:
                keys.append(key)
                values.append(value)
            else:
                if len(key) > 0xFFFF:
                    raise InvalidArgumentError(
                        f"wal: a {namespace} key of {len(key)} bytes is too long"
                    )
                payload = encode_kv(KV_PUT, self._namespace(namespace), key, value)
                kv_frames.append(kv_frame(KV_PUT, payload))
                kv_ops.append((KV_PUT, payload))
        if clear_logs or log_deletes:
            if values or kv_frames:
                raise InvalidArgumentError(
                    "wal: a batch may not combine a log truncation with other changes (it"
                    " could not be atomic); write them as separate batches"
                )
            if clear_logs:
                self._clear_logs()
            for low, high in log_deletes:
                self._delete_logs(low, high)
            return
        if not values and not kv_frames:
            return
        start = 0
        if values:
            start = self._continuing(keys[0], len(keys))
            if len(keys) > 1 and (
                set(map(len, keys)) != {8} or b"".join(keys) != _keys_blob(start, len(keys))
            ):
                raise InvalidArgumentError(
                    f"wal: a monotonic log takes consecutive indexes from {start}; this batch"
                    " has gaps or repeats; nothing was stored"
                )
        self._append(start, values, kv_frames, kv_ops)

    @staticmethod
    def _namespace(namespace: str) -> str:
        if namespace not in (STABLE, META):
            raise InvalidArgumentError(f"wal: unknown namespace {namespace!r}")
        return namespace

    def _continuing(self, key: bytes, count: int) -> int:
        """The index of *key*, which must be the log's next one (any, when the log is empty)."""
        if len(key) != 8:
            raise InvalidArgumentError(f"wal: a log key must be 8 bytes, got {len(key)}")
        start: int = _unpack_index(key)[0]
        if self._last and start != self._last + 1:
            raise InvalidArgumentError(
                f"wal: a monotonic log's next entry must be index {self._last + 1}, got"
                f" {start}; raftstore's wal engine cannot overwrite or leave gaps (delete the"
                " tail first to rewrite it); nothing was stored"
            )
        if start == 0 or start + count - 1 >= 2**64:
            raise InvalidArgumentError(f"wal: log index {start} is out of range")
        return start

    def _append(
        self,
        start: int,
        values: list[bytes],
        kv_frames: list[bytes],
        kv_ops: list[tuple[int, bytes]],
    ) -> None:
        """Write one batch (log entries from *start*, then KV frames) and its commit frame."""
        if not self._spare_started and self._tail.write_offset > self._segment_size // 2:
            # Not at a session's first write: zero-filling 8 MiB then competes with the
            # first synced appends. Half a segment leaves ample time to finish.
            self._spare_started = True
            if self._preparer is not None:
                self._preparer.start(self._next_id)
        count = len(values)
        if count:
            try:
                lengths = array("I", map(len, values))
            except OverflowError as exc:
                raise InvalidArgumentError(
                    f"wal: an entry larger than {_MAX_FRAME} bytes cannot be stored"
                ) from exc
            data = sum(lengths)
            size = LOG_TABLE_AT + 4 * count + data
            size += -size & 7
        else:
            size = 0
        if size > _MAX_FRAME:
            raise InvalidArgumentError(
                f"wal: a batch of {size} bytes is larger than a frame can hold ({_MAX_FRAME});"
                " split it into smaller batches"
            )
        size += sum(map(len, kv_frames))
        tail = self._tail
        at = tail.write_offset
        if self._must_rotate or (
            at + size + COMMIT_FRAME_SIZE > self._segment_size and at > SEGMENT_HEADER_SIZE
        ):
            self._rotate()
            tail = self._tail
            at = tail.write_offset
        if count:
            head = log_frame_head(lengths, data)
            parts = [head, *values]
            pad = -(len(head) + data) & 7
            if pad:
                parts.append(PADDING[pad])
            if kv_frames:
                parts.extend(kv_frames)
            body = b"".join(parts)
        else:
            body = b"".join(kv_frames)
        commit = commit_frame(tail.id, start, count, body)
        total = len(body) + len(commit)
        try:
            written = os.pwritev(tail.fd, [body, commit], at)
            if written < total:
                rest = (body + commit)[written:]
                while rest:
                    rest = rest[os.pwrite(tail.fd, rest, at + total - len(rest)) :]
            if self.sync_writes:
                os.fdatasync(tail.fd)
            else:
                self._unsynced = True
        except OSError as exc:
            # Best effort: a batch that was not acknowledged must not come back on reopen.
            with contextlib.suppress(OSError):
                os.pwrite(tail.fd, bytes(total), at)
            raise self._fail("a write to " + str(tail.path), exc) from exc
        tail.write_offset = at + total
        if tail.write_offset > tail.mapped:
            try:
                tail.remap(os.fstat(tail.fd).st_size)
            except OSError as exc:
                raise self._fail("mapping " + str(tail.path), exc) from exc
        if count:
            assert tail.offsets is not None
            tail.offsets.extend(entry_starts(at, lengths))
            tail.lengths.extend(lengths)
            if not tail.count and not tail.base:
                tail.base = start
            tail.count += count
            if not self._first:
                self._first = start
            self._last = start + count - 1
        for kind, payload in kv_ops:
            apply_kv(self._tables, kind, payload, "wal")
        self._dirty = True

    # -- segments and truncation ---------------------------------------------

    def _new_tail(self, base: int) -> Segment:
        """The next segment, prepared and headed, ready to be named by a manifest."""
        segment_id = self._next_id
        assert self._preparer is not None
        self._preparer.take(segment_id)
        segment = Segment(self.directory, segment_id, base, 0)
        segment.offsets, segment.lengths = array("Q"), array("I")
        try:
            write_segment_header(segment.path, segment_id)
            segment.open(writable=True, minimum_size=0)
        except (OSError, CorruptionError) as exc:
            segment.close()
            raise self._fail("preparing " + str(segment.path), exc) from exc
        self._next_id = segment_id + 1
        return segment

    def _seal(self, segment: Segment, count: int) -> None:
        """Write *segment*'s index frame for its first *count* entries, durably."""
        assert segment.offsets is not None
        del segment.offsets[count:], segment.lengths[count:]
        segment.count = count
        frame = index_frame(segment.id, segment.base, segment.offsets, segment.lengths, sealed=True)
        try:
            os.pwrite(segment.fd, frame, segment.write_offset)
            os.fdatasync(segment.fd)
        except OSError as exc:
            raise self._fail("sealing " + str(segment.path), exc) from exc
        segment.sealed = True
        segment.index_offset = segment.write_offset
        segment.index_count = count
        segment.write_offset += len(frame)
        self._unsynced = False

    def _switch(
        self, sealed: list[Segment], tail: Segment, dropped: list[Segment], *, clean: bool = False
    ) -> None:
        """Make *sealed* + *tail* the durable segment list, then remove *dropped*."""
        self._obsolete.extend(s.id for s in dropped)
        try:
            write_manifest(self.directory, self._manifest(tail, sealed, clean=clean))
        except StorageError as exc:
            raise self._fail("replacing the manifest", exc) from exc
        self._sealed = sealed
        self._bases = [s.base for s in sealed]
        if tail is not self._tail:
            self._tail = tail
            self._dirty = False
            if self._preparer is not None:
                self._preparer.start(self._next_id)
        for segment in dropped:
            segment.close()
        self._remove_obsolete()

    def _remove_obsolete(self) -> None:
        kept: list[int] = []
        for segment_id in self._obsolete:
            try:
                os.unlink(self.directory / segment_name(segment_id))
            except FileNotFoundError:
                pass
            except OSError:
                kept.append(segment_id)  # named in the manifest: tried again later
        removed = len(kept) != len(self._obsolete)
        self._obsolete = kept
        if removed:
            with contextlib.suppress(OSError):
                fsync_directory(self.directory)

    def _rotate(self) -> None:
        """Seal the tail and continue in a new segment."""
        old = self._tail
        tail = self._new_tail(self._last + 1 if self._first else 0)
        if old.count:
            self._seal(old, old.count)
            self._switch([*self._sealed, old], tail, [])
        else:
            self._switch(list(self._sealed), tail, [old])
        self._must_rotate = False

    def _clear_logs(self) -> None:
        if not self._first:
            return
        tail = self._new_tail(0)
        dropped = [*self._sealed, self._tail]
        self._first = self._last = 0
        self._switch([], tail, dropped)
        self._must_rotate = False

    def _delete_logs(self, low_key: bytes, high_key: bytes) -> None:
        """Delete the log keys ``low_key..high_key``: only a head or a tail cut."""
        low = self.first_key(LOGS, low_key)
        high = self.last_key(LOGS, high_key)
        if low is None or high is None or low > high:
            return
        first, last = _unpack_index(low)[0], _unpack_index(high)[0]
        if first <= self._first and last >= self._last:
            self._clear_logs()
        elif first <= self._first:
            self._cut_head(last + 1)
        elif last >= self._last:
            self._cut_tail(first - 1)
        else:
            raise InvalidArgumentError(
                f"wal: deleting {first}..{last} would cut the log {self._first}..{self._last}"
                " in the middle; a monotonic log is truncated only at its head or its tail"
            )

    def _cut_head(self, new_first: int) -> None:
        """Drop every sealed segment wholly before *new_first*; record the new first index."""
        keep = [s for s in self._sealed if s.last >= new_first]
        dropped = [s for s in self._sealed if s.last < new_first]
        self._first = new_first
        self._switch(keep, self._tail, dropped)

    def _cut_tail(self, new_last: int) -> None:
        """Keep entries up to *new_last*; the next append goes to a new segment."""
        old = self._tail
        segments = [*self._sealed, old] if old.count else list(self._sealed)
        keep = [s for s in segments if s.base <= new_last]
        dropped = [s for s in segments if s.base > new_last]
        if not old.count:
            dropped.append(old)
        tail = self._new_tail(new_last + 1)
        edge = keep[-1]
        if edge is old:
            self._seal(old, new_last - old.base + 1)
        else:
            edge.count = new_last - edge.base + 1
        self._last = new_last
        self._switch(keep, tail, dropped)
        self._must_rotate = False

    def segments(self) -> list[SegmentInfo]:
        """The live segments, oldest first (the last is the tail), for tools and tests."""
        return [
            SegmentInfo(s.id, s.path, s.base, s.count, s.sealed, s.index_offset, s.write_offset)
            for s in [*self._sealed, self._tail]
        ]

    # -- lifecycle -------------------------------------------------------------

    def sync(self) -> None:
        if self._poisoned:
            self._raise_poisoned()
        if self._unsynced:
            try:
                os.fdatasync(self._tail.fd)
            except OSError as exc:
                raise self._fail("fdatasync of " + str(self._tail.path), exc) from exc
            self._unsynced = False

    def _checkpoint(self, *, clean: bool) -> None:
        """Write an index frame for the tail and name it in the manifest (a fast next open)."""
        tail = self._tail
        assert tail.offsets is not None
        frame = index_frame(tail.id, tail.base, tail.offsets, tail.lengths, sealed=False)
        try:
            os.pwrite(tail.fd, frame, tail.write_offset)
            os.fdatasync(tail.fd)
        except OSError as exc:
            raise self._fail("a checkpoint of " + str(tail.path), exc) from exc
        tail.index_offset, tail.index_count = tail.write_offset, tail.count
        tail.write_offset += len(frame)
        self._unsynced = False
        self._switch(list(self._sealed), tail, [], clean=clean)
        self._clean_on_disk = clean
        self._dirty = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._wrote and not self._poisoned and (self._dirty or not self._clean_on_disk):
                # Bytes of a torn batch past the end: the next open must look past them.
                self._checkpoint(clean=not self._must_rotate)
        finally:
            if self._preparer is not None:
                self._preparer.close()
            for segment in [*self._sealed, self._tail]:
                segment.close()

    def compact(self) -> None:
        """Unlink segments a truncation dropped whose removal failed earlier."""
        self._check_writable()
        self._remove_obsolete()

    def disk_usage(self) -> int:
        total = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
        return total
