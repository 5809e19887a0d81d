"""The disk's floor: what a durable write costs with nothing but the disk in the way.

Measured the way a log writes, as two handles that run interleaved with the
stores in each synced table (one durable write per call, whatever the batch):

- ``overwrite``: 4 KiB ``pwrite`` over already-written space + ``fdatasync``.
  Only data blocks change, so no file-system metadata is committed: the
  cheapest durable write this disk does, a floor under every synced row.
- ``append``: a 256-byte ``write`` at the end of a growing file + ``fdatasync``.
  Each append also commits the file's new size, as a plain log file must.

(A write into ``fallocate``-d but never-written space still commits metadata,
the extent's "written" state, so preallocating alone does not reach the
overwrite floor; the overwrite area is written once before it is measured.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

from raftstore.benchmark.handles import Handle
from raftstore.log import Log

__all__ = ["FLOORS", "DiskFloor", "FloorMode"]

FloorMode = Literal["append", "overwrite"]

_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_BLOCK = 4096
#: Blocks of the overwrite area, written once before any round (1 MiB).
_AREA_BLOCKS = 256
_APPEND_BYTES = 256

#: Mode -> (row label, note).
FLOORS: dict[FloorMode, tuple[str, str]] = {
    "overwrite": (
        "disk: 4 KiB overwrite + fdatasync",
        "the floor: durable rows can at best tie it",
    ),
    "append": (
        "disk: 256 B append + fdatasync",
        "what a plain log file pays per call",
    ),
}


class DiskFloor(Handle):
    """One durable write per batch (``append`` or ``overwrite``), none of the entries' bytes."""

    kind: ClassVar[str] = "floor"

    def __init__(self, path: Path, mode: FloorMode) -> None:
        self.path = path
        self.mode = mode
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "append" else 0)
        self.fd = os.open(path, flags, 0o644)
        self.block = 0
        if mode == "overwrite":
            os.write(self.fd, bytes(_BLOCK * _AREA_BLOCKS))
            os.fsync(self.fd)

    def append(self, batches: list[list[Log]]) -> None:
        fd, sync = self.fd, _datasync
        if self.mode == "append":
            record = b"r" * _APPEND_BYTES
            for _ in batches:
                os.write(fd, record)
                sync(fd)
            return
        block = b"o" * _BLOCK
        for _ in batches:
            os.pwrite(fd, block, self.block * _BLOCK)
            self.block = (self.block + 1) % _AREA_BLOCKS
            sync(fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)
