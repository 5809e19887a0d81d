"""The next segment file, made ahead of use in a background thread.

A synced append into an extent that is only ``fallocate``d still makes the
file system commit metadata (the extent turns from unwritten to written)
inside the ``fdatasync``; an append that overwrites blocks already written
with zeros commits only data. So the spare is preallocated and zero-filled
(``preallocate="zero"``), or only preallocated (``"fallocate"``, to measure
the difference), or left empty (``"none"``); in every mode the file and its
directory entry are durable before it is handed out.

The spare's id is the manifest's ``next_id``, so its file (complete or cut
short by a crash) is always known to the engine; a leftover is made again
from scratch, never trusted.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from raftstore._directory import fsync_directory
from raftstore.engines.wal.segment import segment_name
from raftstore.errors import StorageError

__all__ = ["PREALLOCATE_MODES", "SparePreparer", "prepare_file"]

PREALLOCATE_MODES = ("zero", "fallocate", "none")
_ZEROS = bytes(1 << 20)


class _Cancelled(Exception):
    pass


def prepare_file(
    directory: Path, segment_id: int, size: int, mode: str, cancel: threading.Event | None = None
) -> None:
    """Create segment *segment_id*'s file afresh, prepared per *mode* and durable (or OSError)."""
    path = directory / segment_name(segment_id)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        if mode != "none":
            os.posix_fallocate(fd, 0, size)
        if mode == "zero":
            offset = 0
            while offset < size:
                if cancel is not None and cancel.is_set():
                    raise _Cancelled
                offset += os.pwrite(fd, _ZEROS[: min(len(_ZEROS), size - offset)], offset)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    fsync_directory(directory)


class SparePreparer:
    """Prepares one spare segment file at a time in a daemon thread."""

    def __init__(self, directory: Path, size: int, mode: str) -> None:
        self.directory, self.size, self.mode = directory, size, mode
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._segment_id = 0
        self._ready = False
        self._error: BaseException | None = None

    def start(self, segment_id: int) -> None:
        """Begin preparing *segment_id*'s file, unless it is being (or was) prepared."""
        if self._segment_id == segment_id and (self._ready or self._thread is not None):
            return
        self.wait()
        self._segment_id, self._ready, self._error = segment_id, False, None
        self._cancel.clear()
        self._thread = threading.Thread(
            target=self._run,
            args=(segment_id,),
            name=f"raftstore-wal-spare-{segment_id}",
            daemon=True,
        )
        self._thread.start()

    def _run(self, segment_id: int) -> None:
        try:
            prepare_file(self.directory, segment_id, self.size, self.mode, self._cancel)
        except _Cancelled as exc:
            self._error = exc
        except BaseException as exc:  # reported by take(), in the writer's thread
            self._error = exc
        else:
            self._ready = True

    def wait(self) -> None:
        """Wait for the thread at work, if any."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def take(self, segment_id: int) -> None:
        """Make sure *segment_id*'s file is prepared (waiting, or preparing it here).

        Raises `StorageError` when it cannot be; nothing else has changed then.
        """
        if self._segment_id == segment_id:
            self.wait()
            if self._ready:
                self._ready = False
                self._segment_id = 0
                return
        self._segment_id, self._ready = 0, False
        try:
            prepare_file(self.directory, segment_id, self.size, self.mode)
        except OSError as exc:
            cause = self._error if self._error is not None else exc
            raise StorageError(
                f"cannot create wal segment {self.directory / segment_name(segment_id)}:"
                f" {exc}; free disk space (or fix the device) and reopen the store"
            ) from cause

    def close(self) -> None:
        """Stop preparing (a spare cut short is made again next time) and wait."""
        self._cancel.set()
        self.wait()
        self._ready = False
