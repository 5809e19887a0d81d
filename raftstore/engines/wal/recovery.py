"""Opening a ``wal`` store: creating its first files, or finding what its files hold.

`create_layout` makes segment 1 and the first manifest. `open_layout`
checks the directory against the manifest (every segment it names is there,
no file it does not know is), loads the tail's checkpoint and scans only
the tail, only past that checkpoint, to its last valid commit frame
(`raftstore.engines.wal.segment.recover_tail`); sealed segments are opened
on first read. Neither changes a file of an existing store.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from raftstore.engines.base import META, STABLE
from raftstore.engines.wal.segment import (
    REMEDY,
    SEGMENT_HEADER_SIZE,
    Segment,
    read_index_frame,
    recover_tail,
    segment_name,
    write_segment_header,
)
from raftstore.engines.wal.spare import prepare_file
from raftstore.engines.wal.stable import (
    MANIFEST,
    MANIFEST_TMP,
    Manifest,
    SegmentRecord,
    SortedTable,
    apply_kv,
    write_manifest,
)
from raftstore.errors import CorruptionError, StorageError

__all__ = ["Layout", "create_layout", "open_layout"]


@dataclass(slots=True)
class Layout:
    """What an open found: the segments, the tables and the log's bounds."""

    tail: Segment
    sealed: list[Segment] = field(default_factory=list)
    tables: dict[str, SortedTable] = field(
        default_factory=lambda: {STABLE: SortedTable(), META: SortedTable()}
    )
    first: int = 0
    last: int = 0
    next_id: int = 2
    obsolete: list[int] = field(default_factory=list)
    #: The manifest says the store was closed cleanly.
    clean: bool = True
    #: Bytes of a torn batch lie past the tail's end: new batches go to a fresh segment.
    torn: bool = False
    #: Segments opened, bytes scanned and index entries loaded by this open.
    recovery: dict[str, int] = field(
        default_factory=lambda: {"segments_read": 0, "bytes_scanned": 0, "indexed": 0}
    )


def create_layout(directory: Path, segment_size: int, preallocate: str) -> Layout:
    """Create segment 1 and the first manifest (a creation cut short is begun again)."""
    for entry in os.listdir(directory):
        if not (entry == MANIFEST_TMP or (entry.startswith("segment-") and entry.endswith(".wal"))):
            raise CorruptionError(
                f"wal store {directory} holds no manifest but holds {entry!r}, which is not"
                " a file raftstore creates; remove it or use an empty directory"
            )
    tail = Segment(directory, 1, 0, 0)
    try:
        for entry in os.listdir(directory):
            os.unlink(directory / entry)  # left by a creation that was killed
        prepare_file(directory, 1, segment_size, preallocate)
        write_segment_header(tail.path, 1)
        manifest = Manifest(
            next_id=2, segments=[SegmentRecord(1, 0, 0)], tables={STABLE: {}, META: {}}, clean=True
        )
        write_manifest(directory, manifest)
    except OSError as exc:
        raise StorageError(f"cannot create wal store {directory}: {exc}") from exc
    tail.offsets, tail.lengths = array("Q"), array("I")
    tail.open(writable=True, minimum_size=0)
    return Layout(tail)


def open_layout(directory: Path, manifest: Manifest, *, read_only: bool) -> Layout:
    """What the files of the existing store in *directory* hold; `CorruptionError` if damaged."""
    check_files(directory, manifest)
    sealed = []
    for record in manifest.segments[:-1]:
        segment = Segment(directory, record.id, record.base, record.count)
        segment.sealed = True
        segment.index_offset, segment.index_count = record.index_offset, record.count
        sealed.append(segment)
    record = manifest.segments[-1]
    tail = Segment(directory, record.id, record.base, record.count)
    layout = Layout(
        tail,
        sealed,
        next_id=manifest.next_id,
        obsolete=list(manifest.obsolete),
        clean=manifest.clean,
    )
    for namespace, values in manifest.tables.items():
        table = layout.tables[namespace]
        for key in sorted(values):
            table.put(key, values[key])
    tail.open(writable=not read_only, minimum_size=0)
    try:
        _recover(layout, record)
        if manifest.first_index:
            layout.first = manifest.first_index
        elif tail.count:
            layout.first = tail.base
        if tail.count:
            layout.last = tail.last
        elif sealed:
            layout.last = sealed[-1].last
        if layout.first and layout.first > layout.last:
            raise CorruptionError(
                f"wal store {directory}: the manifest says the log starts at {layout.first} but"
                f" its segments end at {layout.last}; {REMEDY}"
            )
    except BaseException:
        tail.close()
        raise
    return layout


def _recover(layout: Layout, record: SegmentRecord) -> None:
    """Load the tail's checkpoint and scan the rest of it to its last valid commit."""
    tail = layout.tail
    view = tail.map
    size = tail.mapped
    layout.recovery["segments_read"] = 1
    if record.index_offset:
        if view is None:
            raise CorruptionError(f"wal segment {tail.path} is empty; {REMEDY}")
        offsets, lengths, start = read_index_frame(
            view, record.index_offset, size, tail.id, record.count, tail.path
        )
        tail.index_offset, tail.index_count = record.index_offset, record.count
    else:
        offsets, lengths, start = array("Q"), array("I"), SEGMENT_HEADER_SIZE
    layout.recovery["indexed"] = len(offsets)
    found = recover_tail(
        view if view is not None else b"",
        start,
        size,
        tail.id,
        record.base,
        len(offsets),
        tail.path,
        look_ahead=not layout.clean,
    )
    layout.recovery["bytes_scanned"] = found.scanned
    for kind, payload in found.kv:
        apply_kv(layout.tables, kind, payload, f"wal segment {tail.path}")
    offsets.extend(found.starts)
    lengths.extend(found.lengths)
    tail.offsets, tail.lengths = offsets, lengths
    tail.base = found.base
    tail.count = len(offsets)
    tail.write_offset = found.end
    layout.torn = bool(found.torn)


def check_files(directory: Path, manifest: Manifest) -> None:
    """Every segment the manifest names exists; no file it does not know is there."""
    known = {MANIFEST, MANIFEST_TMP, segment_name(manifest.next_id)}
    known.update(segment_name(i) for i in manifest.obsolete)
    listed = {segment_name(s.id): s for s in manifest.segments}
    try:
        present = set(os.listdir(directory))
    except OSError as exc:
        raise StorageError(f"cannot list wal store {directory}: {exc}") from exc
    unknown = sorted(present - known - set(listed))
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise CorruptionError(
            f"wal store {directory} holds files its segment list does not name: {shown}."
            " raftstore never uses a segment it does not know (a copy of another store's"
            " file, or one restored from an older backup?); move them out of the store if"
            f" they do not belong to it, else {REMEDY}"
        )
    missing = sorted(name for name in listed if name not in present)
    if missing:
        segment = listed[missing[0]]
        raise CorruptionError(
            f"wal store {directory} has lost segment file {missing[0]} (entries from"
            f" {segment.base or 'the first batch'}; {len(missing)} of"
            f" {len(listed)} segment files missing); {REMEDY}"
        )
