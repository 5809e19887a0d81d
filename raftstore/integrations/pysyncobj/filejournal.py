"""Reading PySyncObj's ``FileJournal`` files, to import them into a raftstore store.

A ``FileJournal`` at path P is two files (PySyncObj 0.3, journal format 1):

- P: a 40-byte header (``b"PYSYNCOBJ"`` padded to 24 bytes, PySyncObj's
  version padded to 8, ``<I`` format version 1, ``<I`` offset of the end of
  the last record), then records ``<I size, <Q index, <Q term, command,
  <I size`` (size counts the index, term and command). The file is an
  mmap grown with zeros past the last record; nothing is ever fsynced.
- P + ".meta": a **pickle** of ``{"currentTerm": int, "votedForNodeId":
  node id, "raftCommitIndex": int}`` (any key may be missing).

The meta file is read with an unpickler that refuses every class and
function reference: plain data (dicts, strings, numbers, None) loads, and a
pickle that would import or call anything raises `CorruptionError` instead
of running code. Nothing here writes to P or P + ".meta".
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from raftstore.errors import CorruptionError, StorageError
from raftstore.integrations.pysyncobj.journal import (
    COMMIT_INDEX_KEY,
    TERM_VOTE_KEY,
    Entry,
    encode_term_vote,
)
from raftstore.log import MAX_UINT64, Log
from raftstore.store import RaftStore

__all__ = [
    "FILE_JOURNAL_MAGIC",
    "FileJournalContents",
    "import_file_journal",
    "is_file_journal",
    "read_file_journal",
]

#: The first bytes of every PySyncObj ``FileJournal`` file.
FILE_JOURNAL_MAGIC = b"PYSYNCOBJ"
_HEADER = struct.Struct("<24s8sII")
_SIZE = struct.Struct("<I")
_INDEX_TERM = struct.Struct("<QQ")
_FORMAT_VERSION = 1
_IMPORT_BATCH = 1024
# A meta file is a few dozen bytes; anything far larger is not one.
_MAX_META_SIZE = 1 << 20


@dataclass(frozen=True)
class FileJournalContents:
    """What a ``FileJournal`` holds: its entries and its meta file's stable state."""

    entries: tuple[Entry, ...]
    current_term: int
    voted_for: object
    commit_index: int
    pysyncobj_version: str
    has_meta: bool

    @property
    def first_index(self) -> int:
        """Raft index of the first entry (0 when there is none)."""
        return self.entries[0][1] if self.entries else 0

    @property
    def last_index(self) -> int:
        """Raft index of the last entry (0 when there is none)."""
        return self.entries[-1][1] if self.entries else 0


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads dicts, strings, numbers and None; refuses to import anything."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(
            f"refers to {module}.{name}; only plain data (dict, str, int, None) is imported"
        )


def is_file_journal(path: str | os.PathLike[str]) -> bool:
    """True when *path* is a regular file that starts like a PySyncObj ``FileJournal``."""
    if not Path(path).is_file():
        return False
    try:
        with open(path, "rb") as file:
            return file.read(len(FILE_JOURNAL_MAGIC)) == FILE_JOURNAL_MAGIC
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc


def _read_meta(meta_path: Path) -> dict[str, object] | None:
    try:
        with meta_path.open("rb") as file:
            raw = file.read(_MAX_META_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {meta_path}: {exc}") from exc
    what = f"{meta_path} (PySyncObj's term, vote and commit index)"
    if len(raw) > _MAX_META_SIZE:
        raise CorruptionError(f"{what} is larger than {_MAX_META_SIZE} bytes: not a meta file")
    try:
        meta = _PlainDataUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:
        raise CorruptionError(
            f"{what} cannot be read ({exc}). PySyncObj itself would start with term 0 and no"
            f" vote, which can make this node vote twice in one term; to accept that, move"
            f" {meta_path} away and start again"
        ) from exc
    if not isinstance(meta, dict):
        raise CorruptionError(f"{what} holds a {type(meta).__name__}, not a dict")
    return meta


def _meta_int(meta: dict[str, object], key: str, default: int, what: str) -> int:
    value = meta.get(key, default)
    if type(value) is not int or not 0 <= value <= MAX_UINT64:
        raise CorruptionError(f"{what}: {key} is {value!r:.40}, not an int in 0..2**64-1")
    return value


def _records(data: bytes, end: int, path: Path) -> Iterator[Entry]:
    offset = _HEADER.size
    expected = 0
    while offset < end:
        if offset + _SIZE.size > end:
            raise CorruptionError(f"{path}: a record header at offset {offset} is cut off")
        (size,) = _SIZE.unpack_from(data, offset)
        stop = offset + _SIZE.size + size
        if size < _INDEX_TERM.size or stop + _SIZE.size > end:
            raise CorruptionError(
                f"{path}: the record at offset {offset} claims {size} bytes, which do not fit"
                " (a torn write, typically after a power cut)"
            )
        (trailer,) = _SIZE.unpack_from(data, stop)
        if trailer != size:
            raise CorruptionError(
                f"{path}: the record at offset {offset} ends with size {trailer}, not {size}"
            )
        index, term = _INDEX_TERM.unpack_from(data, offset + _SIZE.size)
        if index == 0 or (expected and index != expected):
            raise CorruptionError(
                f"{path}: the record at offset {offset} has index {index}, expected"
                f" {expected or 'an index >= 1'}"
            )
        yield (data[offset + _SIZE.size + _INDEX_TERM.size : stop], index, term)
        expected = index + 1
        offset = stop + _SIZE.size


def read_file_journal(path: str | os.PathLike[str]) -> FileJournalContents:
    """Read the ``FileJournal`` at *path* and its ``.meta``, checking every record.

    Raises `CorruptionError` when *path* is not a ``FileJournal``, when a record
    is torn or out of order (the journal is refused, never partly read), or
    when the meta file cannot be read as plain data; a missing meta file
    reads as PySyncObj's defaults (term 0, no vote, commit index 1).
    """
    journal_path = Path(path)
    try:
        data = journal_path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {journal_path}: {exc}") from exc
    if len(data) < _HEADER.size or not data.startswith(FILE_JOURNAL_MAGIC):
        raise CorruptionError(
            f"{journal_path} is not a PySyncObj FileJournal (no PYSYNCOBJ header)"
        )
    _name, version, format_version, end = _HEADER.unpack_from(data)
    if format_version != _FORMAT_VERSION:
        raise CorruptionError(
            f"{journal_path}: FileJournal format {format_version}; only format"
            f" {_FORMAT_VERSION} (PySyncObj 0.3) can be imported"
        )
    if not _HEADER.size <= end <= len(data):
        raise CorruptionError(
            f"{journal_path}: its header says the records end at offset {end}, but the file has"
            f" {len(data)} bytes"
        )
    entries = tuple(_records(data, end, journal_path))
    meta_path = journal_path.with_name(journal_path.name + ".meta")
    meta = _read_meta(meta_path)
    what = str(meta_path)
    return FileJournalContents(
        entries=entries,
        current_term=_meta_int(meta or {}, "currentTerm", 0, what),
        voted_for=(meta or {}).get("votedForNodeId"),
        commit_index=_meta_int(meta or {}, "raftCommitIndex", 1, what),
        pysyncobj_version=version.rstrip(b"\0").decode("ascii", "replace"),
        has_meta=meta is not None,
    )


def import_file_journal(path: str | os.PathLike[str], store: RaftStore) -> FileJournalContents:
    """Copy the ``FileJournal`` at *path* into the empty *store*, then sync it.

    Entries ``(command, idx, term)`` become ``Log(index=idx, term=term,
    data=command)``; the term and vote go under `TERM_VOTE_KEY`, the commit
    index under `COMMIT_INDEX_KEY`, as `RaftStoreJournal` keeps them. The
    files at *path* are only read. Raises what `read_file_journal` raises,
    and `CorruptionError` when *store* already holds entries or state.
    """
    contents = read_file_journal(path)
    if store.last_index() or store.get(TERM_VOTE_KEY) is not None:
        raise CorruptionError(f"{store!r} already holds a journal; import only into a new store")
    entries = contents.entries
    for start in range(0, len(entries), _IMPORT_BATCH):
        store.store_logs(
            [
                Log(index=index, term=term, data=command)
                for command, index, term in entries[start : start + _IMPORT_BATCH]
            ]
        )
    store.set(TERM_VOTE_KEY, encode_term_vote(contents.current_term, contents.voted_for))
    if contents.commit_index > 1:
        store.set_uint64(COMMIT_INDEX_KEY, contents.commit_index)
    store.sync()
    return contents
