"""A store's directory: its marker file, its one-writer lock, durable renames.

On disk a store is a directory holding:

- ``raftstore.json``, the marker: which engine wrote the store (so a plain
  path reopens with the right engine), its format version, and whether its
  creation finished (``"state": "creating"`` until the meta record is
  durable, then ``"ready"``; a marker without a state is a finished store
  of format 1). Once a marker says a store exists, nothing ever re-creates
  it: lost engine files are an error, never an empty store.
- ``data/``, the engine's own files.
- ``raftstore.lock``, left by earlier versions (the lock is now the
  directory itself; the file, where present, is never opened).

Every file raftstore creates here is created with ``O_EXCL`` or replaced by
an atomic rename, and every create, rename and replace is followed by an
fsync of the directory that holds it, so it survives power loss. None of
the store's own names is ever followed through a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from raftstore.errors import ConfigurationError, CorruptionError, StorageError, StoreLockedError

__all__ = [
    "DATA_DIR",
    "LEGACY_LOCK_FILE",
    "MARKER_FILE",
    "DirectoryLock",
    "fsync_directory",
    "make_directory",
    "read_marker",
    "refuse_links",
    "write_marker",
]

MARKER_FILE = "raftstore.json"
DATA_DIR = "data"
#: The lock file of earlier versions; a directory holding it is still empty.
LEGACY_LOCK_FILE = "raftstore.lock"
#: Largest marker file read (a real one is under 100 bytes).
_MAX_MARKER_SIZE = 64 * 1024
#: The keys a marker holds ("state" is absent in format 1 markers).
_MARKER_KEYS = frozenset({"engine", "format", "state"})
#: The marker's states.
CREATING, READY = "creating", "ready"

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_log = logging.getLogger("raftstore")


def fsync_directory(directory: Path) -> None:
    """Fsync *directory*, so the names created, renamed or removed in it survive power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory(path: Path) -> None:
    """Create *path* and any missing parents, each made durable in its parent.

    Raises `StorageError` when a directory cannot be created.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o755)
            except FileExistsError:
                continue
            fsync_directory(directory.parent)
    except OSError as exc:
        raise StorageError(f"cannot create directory {path}: {exc}") from exc


def refuse_links(directory: Path, names: tuple[str, ...]) -> None:
    """Raise `CorruptionError` when one of *names* in *directory* is a symbolic link.

    raftstore never follows its own files through links: a link planted in
    a store could make it read, truncate or replace a file elsewhere.
    """
    for name in names:
        try:
            mode = os.lstat(directory / name).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot examine {directory / name}: {exc}") from exc
        if stat.S_ISLNK(mode):
            raise CorruptionError(
                f"{directory / name} is a symbolic link; raftstore never follows its own files"
                " through links. Replace the link with the real file (or directory) it points"
                " to, or remove the store"
            )


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The contents of *directory*'s marker, or None when there is none.

    Raises `CorruptionError` when the marker is a link, unreadable as UTF-8
    JSON, or does not name an engine.
    """
    marker = directory / MARKER_FILE
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_CLOEXEC | _O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_links(directory, (MARKER_FILE,))
        raise StorageError(f"cannot read {marker}: {exc}") from exc
    try:
        data = os.read(fd, _MAX_MARKER_SIZE + 1)
    except OSError as exc:
        raise StorageError(f"cannot read {marker}: {exc}") from exc
    finally:
        os.close(fd)
    what = (
        f"{marker} (the file that says this directory is a raftstore store)"
        " is damaged; restore it from a backup, or remove the store and rejoin"
        " the cluster as a new node"
    )
    if len(data) > _MAX_MARKER_SIZE:
        raise CorruptionError(f"{what}: it is larger than {_MAX_MARKER_SIZE} bytes")
    parsed = parse_json_object(data, what)
    engine = parsed.get("engine")
    version = parsed.get("format")
    state = parsed.get("state", READY)
    unknown = sorted(set(parsed) - _MARKER_KEYS)
    if (
        not isinstance(engine, str)
        or not engine
        or type(version) is not int
        or state not in (CREATING, READY)
        or unknown
    ):
        raise CorruptionError(
            f"{what}: it does not hold exactly an engine, a format and a state"
            + (f" (unknown keys {', '.join(map(repr, unknown))[:80]})" if unknown else "")
        )
    return parsed


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """*data* parsed as a JSON object; `CorruptionError` prefixed by *what* otherwise."""
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # RecursionError: deeply nested JSON; ValueError covers bad UTF-8 too.
        raise CorruptionError(f"{what} is not JSON (or not UTF-8): {type(exc).__name__}") from exc
    if not isinstance(parsed, dict):
        raise CorruptionError(f"{what} has the wrong shape: not a JSON object")
    return parsed


def write_marker(directory: Path, engine: str, version: int, state: str) -> None:
    """Durably write *directory*'s marker: a new file, renamed into place, directory fsynced."""
    marker = directory / MARKER_FILE
    tmp = directory / (MARKER_FILE + ".tmp")
    data = json.dumps({"engine": engine, "format": version, "state": state}).encode() + b"\n"
    try:
        # A leftover (from a killed creation) or a planted link is removed,
        # never written through: the new file is created with O_EXCL.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _O_NOFOLLOW, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, marker)
        fsync_directory(directory)
    except OSError as exc:
        raise StorageError(f"cannot write {marker}: {exc}") from exc


class DirectoryLock:
    """The store's one-writer lock: ``flock`` on the store directory itself.

    ``flock`` locks belong to the open file, so a second open in the same
    process conflicts just like one from another process; the kernel
    releases the lock when the holder dies, so a killed writer never leaves
    a stale lock. Locking the directory (not a file in it) means the lock
    cannot be deleted without deleting the store.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StorageError(f"cannot open store directory {directory}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                _log.info("store %s is locked by %s", directory, holder or "another handle")
                raise StoreLockedError(
                    f"store {directory} is locked by {holder or 'another handle'}:"
                    " one writer at a time. Stop that process (or close that handle)"
                    " first, or open the store read-only where its engine reads beside"
                    " a writer"
                ) from exc
            raise StorageError(f"cannot lock store directory {directory}: {exc}") from exc
        self._fd: int | None = fd

    def release(self) -> None:
        """Release the lock (closing the descriptor releases the flock); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def forget(self) -> None:
        """Close this process's descriptor (after fork: the parent still holds the lock)."""
        self.release()


def _lock_holder(fd: int) -> str:
    """``process N`` for the process holding a flock on *fd*'s file, from /proc/locks."""
    try:
        info = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            lines = locks.read(1 << 20).splitlines()
    except OSError:
        return ""
    wanted = f":{info.st_ino}"
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(wanted):
            major, minor = fields[5].split(":")[:2]
            if (int(major, 16), int(minor, 16)) == (os.major(info.st_dev), os.minor(info.st_dev)):
                return f"process {fields[4]}"
    return ""


def check_store_directory(path: Path) -> None:
    """Raise `ConfigurationError` when *path* exists and is not a directory."""
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"{path} is a file; a store is a directory")
