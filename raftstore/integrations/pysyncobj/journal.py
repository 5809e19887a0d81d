"""`RaftStoreJournal`: PySyncObj's ``Journal`` on a raftstore store, durable with group commit.

PySyncObj's own ``FileJournal`` never fsyncs, keeps the whole log in memory
and rereads the whole file at start. `RaftStoreJournal` keeps the log in a
raftstore store instead.

Durability comes from **group commit**: appended entries are buffered and
written as one `RaftStore.store_logs` batch, and the store is synced once
before an acknowledgement or a vote leaves the node, and before the commit
index moves past an entry that is not synced (the hooks in
`raftstore.integrations.pysyncobj.hooks` call `RaftStoreJournal.flush`). A
node never acknowledges, votes or commits anything a crash could take back,
and pays one fsync per batch of appends rather than one per entry. (A leader
sends its new entries first and syncs them at the end of the same tick,
while its followers sync theirs: Raft allows it, and the commit index still
waits for both.) Open the store with ``sync=False``: the journal calls
`RaftStore.sync` itself, exactly when it is needed.
"""

from __future__ import annotations

import operator
import os
import pickle
import struct
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import overload

from pysyncobj.journal import Journal

from raftstore.errors import (
    ConfigurationError,
    CorruptionError,
    InvalidArgumentError,
    RaftStoreError,
)
from raftstore.log import MAX_UINT64, Log
from raftstore.store import RaftStore

__all__ = [
    "COMMIT_INDEX_KEY",
    "TERM_VOTE_KEY",
    "Entry",
    "JournalSlice",
    "RaftStoreJournal",
    "decode_term_vote",
    "encode_term_vote",
]

#: Stable key holding the current term and the vote, as one record.
TERM_VOTE_KEY = b"pysyncobj.term_vote"
#: Stable key holding the Raft commit index (uint64).
COMMIT_INDEX_KEY = b"pysyncobj.commit_index"

#: A journal entry as PySyncObj sees it: ``(command, raft_index, term)``.
Entry = tuple[bytes, int, int]

_TERM_VOTE = struct.Struct(">QB")
_VOTE_NONE, _VOTE_STR, _VOTE_PICKLE = 0, 1, 2
# Entries buffered before they are written even when no message is sent
# (a leader that lost its followers keeps appending).
_MAX_UNWRITTEN = 4096
# Every live journal: the send hook flushes them all when it cannot tell
# which SyncObj a transport belongs to.
_live_journals: weakref.WeakSet[RaftStoreJournal] = weakref.WeakSet()


def encode_term_vote(term: int, voted_for: object) -> bytes:
    """The record stored under `TERM_VOTE_KEY`: the term, then the vote (str, None, or pickled)."""
    if voted_for is None:
        return _TERM_VOTE.pack(term, _VOTE_NONE)
    if type(voted_for) is str:
        return _TERM_VOTE.pack(term, _VOTE_STR) + voted_for.encode("utf-8", "surrogatepass")
    # Custom Node classes may use any picklable id; PySyncObj pickles them too.
    return _TERM_VOTE.pack(term, _VOTE_PICKLE) + pickle.dumps(voted_for, protocol=5)


def decode_term_vote(raw: bytes) -> tuple[int, object]:
    """``(term, voted_for)`` from a `TERM_VOTE_KEY` record; `CorruptionError` when malformed."""
    if len(raw) < _TERM_VOTE.size:
        raise CorruptionError(f"stable key {TERM_VOTE_KEY!r} holds {len(raw)} bytes, too short")
    term, tag = _TERM_VOTE.unpack_from(raw)
    payload = raw[_TERM_VOTE.size :]
    try:
        if tag == _VOTE_NONE and not payload:
            return term, None
        if tag == _VOTE_STR:
            return term, payload.decode("utf-8", "surrogatepass")
        if tag == _VOTE_PICKLE:
            return term, pickle.loads(payload)
    except Exception as exc:
        raise CorruptionError(f"stable key {TERM_VOTE_KEY!r}: cannot decode the vote") from exc
    raise CorruptionError(f"stable key {TERM_VOTE_KEY!r}: unknown vote tag {tag}")


def _check_uint64(value: object, what: str, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= MAX_UINT64:
        raise InvalidArgumentError(
            f"{what} must be an int in {minimum}..2**64-1, got {value!r:.40}"
        )
    return value


def _fsync_path(path: str) -> bool:
    """Fsync *path* and its directory; False when the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True


class RaftStoreJournal(Journal):  # type: ignore[misc]  # pysyncobj has no stubs
    """PySyncObj's ``Journal`` on a raftstore store, durable with group commit.

    Positions (``journal[i]``, ``deleteEntriesFrom(i)``) are offsets in the
    retained log, as PySyncObj expects; each entry ``(command, idx, term)``
    is stored as ``Log(index=idx, term=term, data=command)``. ``len`` and
    ``journal[0]`` / ``journal[-1]`` are O(1); a slice that reaches into
    the store is a lazy `JournalSlice` that reads only the entries it is
    asked for (one held in the in-memory tail is a plain list). The current
    term and the vote are stored together as one record, the commit index
    under its own key.

    Writes are buffered and made durable by `flush` (one `RaftStore.sync`),
    which the hooks of `raftstore.integrations.pysyncobj.install_hooks`
    call before a node sends an
    acknowledgement or a vote and at the end of each SyncObj tick.
    ``journal[...]`` always sees buffered entries.

    *cache_entries* sizes the in-memory tail (the entries SyncObj reads
    most): entries past the commit index plus *cache_entries* before it,
    at most ``16 * cache_entries``. *dump_file* is PySyncObj's
    ``fullDumpFile``, fsynced before compaction or a snapshot install
    drops entries it replaces. With *owns_store* False (the default) the
    journal does not own *store*: close it after ``SyncObj.destroy``. With
    *owns_store* True (path mode), ``_destroy`` closes it.
    A journal is used by its SyncObj's thread only, as PySyncObj's are.
    """

    def __init__(
        self,
        store: RaftStore,
        *,
        cache_entries: int = 4096,
        dump_file: str | os.PathLike[str] | None = None,
        owns_store: bool = False,
    ) -> None:
        """Open the journal on *store*, loading only its bounds and stable state."""
        if not isinstance(store, RaftStore):
            raise InvalidArgumentError(
                f"RaftStoreJournal needs a store from raftstore.open(), got {type(store).__name__}"
            )
        if store.read_only:
            raise ConfigurationError(f"{store!r} is read-only; a journal needs to write")
        if type(cache_entries) is not int or cache_entries < 1:
            raise InvalidArgumentError(f"cache_entries must be an int >= 1, got {cache_entries!r}")
        from raftstore.integrations.pysyncobj.hooks import install_hooks

        install_hooks()
        self._store = store
        self.owns_store = owns_store
        self._cache_entries = cache_entries
        self.dump_file: str | None = None if dump_file is None else os.fspath(dump_file)
        # An engine that syncs every write needs no separate sync; each write is one fsync.
        self._sync_writes = store.sync_writes
        self._fsyncs = 0
        self._generation = 0
        self._needs_sync = False  # unsynced writes that must be durable before any message
        self._has_unsynced = False  # any unsynced write at all (the commit index included)
        self._dirty = False  # something for `flush` to do before a message leaves
        self._barrier = False  # a term, vote or truncation even append_entries waits for
        self._unwritten = 0  # entries at the end of the tail not yet in the store
        first, last = store.first_index(), store.last_index()
        self._first, self._last = first, last
        self._tail: list[Entry] = []
        self._tail_first = last
        self._first_entry: Entry | None = None
        if last:
            last_entry = self._read(last)
            self._tail = [last_entry]
            self._first_entry = self._read(first) if first != last else last_entry
        self._synced_through = last
        raw = store.get(TERM_VOTE_KEY)
        self._term, self._voted_for = (0, None) if raw is None else decode_term_vote(raw)
        # Absent reads as 1, PySyncObj's default, so 1 needs no write.
        self._commit_index = store.get_uint64(COMMIT_INDEX_KEY) or 1
        self._commit_stored = self._commit_index
        _live_journals.add(self)

    # -- what tools and benchmarks read --------------------------------------

    @property
    def store(self) -> RaftStore:
        """The store this journal writes to."""
        return self._store

    @property
    def fsync_count(self) -> int:
        """How many times this journal forced data to stable storage so far."""
        return self._fsyncs

    @property
    def pending(self) -> bool:
        """True when entries, a term, a vote or a delete still wait for `flush`."""
        return self._dirty

    def __repr__(self) -> str:
        return (
            f"<RaftStoreJournal {self._store!r} entries {self._first}..{self._last}"
            f" unwritten {self._unwritten}>"
        )

    # -- reading ---------------------------------------------------------------

    def __len__(self) -> int:
        return self._last - self._first + 1 if self._last else 0

    @overload
    def __getitem__(self, item: int) -> Entry: ...

    @overload
    def __getitem__(self, item: slice) -> Sequence[Entry]: ...

    def __getitem__(self, item: int | slice) -> Entry | Sequence[Entry]:
        if item.__class__ is int:  # SyncObj's constant [0] and [-1]: keep them cheap
            if item == -1 and self._last:
                return self._tail[-1]
            if item == 0 and self._last:
                return self._first_entry  # type: ignore[return-value]
        elif isinstance(item, slice):
            start, stop, step = item.indices(len(self))
            first = self._first
            if step != 1:
                return [self._entry(first + position) for position in range(start, stop, step)]
            offset = first + start - self._tail_first
            if offset >= 0:  # all in memory: a list costs less than a view
                return self._tail[offset : offset + max(0, stop - start)]
            return JournalSlice(self, first + start, first + max(start, stop))
        length = self._last - self._first + 1 if self._last else 0
        position = operator.index(item)
        if position < 0:
            position += length
        if not 0 <= position < length:
            raise IndexError("journal index out of range")
        return self._entry(self._first + position)

    def _entry(self, index: int) -> Entry:
        """The entry at Raft *index*, which the caller checked is in the journal."""
        offset = index - self._tail_first
        if offset >= 0:
            return self._tail[offset]
        if index == self._first:
            assert self._first_entry is not None
            return self._first_entry
        return self._read(index)

    def _read(self, index: int) -> Entry:
        log = self._store.get_log(index)
        return (log.data, log.index, log.term)

    def _iter_range(self, start: int, stop: int) -> Iterator[Entry]:
        """Yield the entries with Raft indexes ``start..stop-1`` (all in the journal)."""
        index = start
        stored_stop = min(stop, self._tail_first)
        if index < stored_stop:
            for log in self._store.iter_logs(index, stored_stop - 1):
                if log.index != index:
                    raise CorruptionError(
                        f"journal expected log {index} in {self._store!r}, found {log.index}"
                    )
                yield (log.data, index, log.term)
                index += 1
            if index != stored_stop:
                raise CorruptionError(f"journal expected log {index} in {self._store!r}: missing")
        while index < stop:
            yield self._entry(index)
            index += 1

    def _view_check(self, generation: int, start: int, stop: int) -> None:
        if generation != self._generation:
            raise RaftStoreError(
                "journal slice read after the journal was truncated or cleared;"
                " slices are views: take a new one (or list() it before changing the journal)"
            )
        if start < stop and (start < self._first or stop - 1 > self._last):
            raise IndexError(
                f"journal slice {start}..{stop - 1} reaches entries no longer in the journal"
                f" ({self._first}..{self._last})"
            )

    # -- writing ---------------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        """Append ``(command, idx, term)``; *idx* must follow the last entry's."""
        if type(command) is not bytes:
            if not isinstance(command, (bytearray, memoryview)):
                raise InvalidArgumentError(
                    f"journal command must be bytes, got {type(command).__name__}"
                )
            command = bytes(command)
        last = self._last
        if last:
            if idx != last + 1 or type(idx) is not int:
                raise InvalidArgumentError(
                    f"journal entries are contiguous: after index {last} comes {last + 1},"
                    f" not {idx!r:.40}"
                )
        else:
            _check_uint64(idx, "journal entry index", 1)
        if type(term) is not int or not 0 <= term <= MAX_UINT64:
            _check_uint64(term, "journal entry term")
        entry = (command, idx, term)
        if not last:
            self._first = self._tail_first = idx
            self._first_entry = entry
        self._tail.append(entry)
        self._last = idx
        self._unwritten += 1
        self._dirty = True
        if self._unwritten >= _MAX_UNWRITTEN:
            self._write_unwritten()

    def clear(self) -> None:
        """Remove every entry (one cheap range delete)."""
        self._sync_dump_file()
        if self._store.last_index():
            self._store.delete_range(0, MAX_UINT64)
            self._wrote(needs_sync=True)
            self._barrier = self._dirty
        self._become_empty()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Remove the entries at positions ``entryFrom`` and after (``del log[entryFrom:]``)."""
        length = len(self)
        start = slice(operator.index(entryFrom), None).indices(length)[0]
        if start >= length:
            return
        self._generation += 1
        index = self._first + start
        written_last = self._last - self._unwritten
        if index > written_last:
            del self._tail[index - self._tail_first :]
            self._unwritten -= self._last - index + 1
        else:
            self._store.delete_range(index, MAX_UINT64)
            self._wrote(needs_sync=True)
            self._barrier = self._dirty
            self._unwritten = 0
            if index > self._tail_first:
                del self._tail[index - self._tail_first :]
            else:
                self._tail = []
        if start == 0:
            self._become_empty()
            return
        self._last = index - 1
        if not self._tail:
            self._tail = [self._read(self._last)]
            self._tail_first = self._last
        self._synced_through = min(self._synced_through, self._last)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Remove the entries before position ``entryTo`` (``log = log[entryTo:]``)."""
        length = len(self)
        start = slice(operator.index(entryTo), None).indices(length)[0]
        if start == 0:
            return
        # Compaction drops entries the dump file replaces: it must be durable first.
        self._sync_dump_file()
        new_first = self._first + start
        written_last = self._last - self._unwritten
        if written_last >= self._first:
            self._store.delete_range(self._first, min(new_first - 1, written_last))
            self._wrote(needs_sync=True)
        if start >= length:
            self._generation += 1
            self._become_empty()
            return
        if new_first > written_last:
            self._unwritten = self._last - new_first + 1
        if new_first > self._tail_first:
            del self._tail[: new_first - self._tail_first]
            self._tail_first = new_first
        offset = new_first - self._tail_first
        self._first_entry = self._tail[offset] if offset >= 0 else self._read(new_first)
        self._first = new_first

    def _become_empty(self) -> None:
        self._generation += 1
        self._first = self._last = self._tail_first = 0
        self._tail = []
        self._first_entry = None
        self._unwritten = 0
        self._synced_through = 0

    def _write_unwritten(self) -> None:
        count = self._unwritten
        if not count:
            return
        self._store.store_logs(
            [Log(index=idx, term=term, data=command) for command, idx, term in self._tail[-count:]]
        )
        self._unwritten = 0
        self._wrote(needs_sync=True)
        self._trim_tail()

    def _trim_tail(self) -> None:
        """Forget cached entries SyncObj is done with; the store still has them.

        Kept: every entry past the commit index (still to be replicated and
        applied) and *cache_entries* before it, all within
        ``16 * cache_entries``. Trimmed in steps of at least *cache_entries*,
        so the list is shifted rarely.
        """
        cache = self._cache_entries
        last = self._last - self._unwritten  # unwritten entries live only here
        keep_from = min(self._commit_index, last) - cache + 1
        keep_from = max(keep_from, self._last - 16 * cache + 1)
        drop = min(keep_from, last + 1) - self._tail_first
        if drop >= cache and drop < len(self._tail):
            del self._tail[:drop]
            self._tail_first += drop

    def _wrote(self, *, needs_sync: bool) -> None:
        """Account for one write to the store."""
        if self._sync_writes:
            self._fsyncs += 1
            return
        self._has_unsynced = True
        if needs_sync:
            self._needs_sync = True
            self._dirty = True

    def _sync_dump_file(self) -> None:
        if self.dump_file is not None and _fsync_path(self.dump_file):
            self._fsyncs += 1

    # -- group commit ------------------------------------------------------------

    def flush(self) -> None:
        """Write buffered entries and state to the store, then sync it once if needed.

        After it returns, every entry, the term and the vote are on stable
        storage (the commit index is written too, and synced with them when
        anything else needed a sync). The hooks of
        `raftstore.integrations.pysyncobj.install_hooks` call it.
        """
        if self._unwritten:
            self._write_unwritten()
        if self._commit_index != self._commit_stored:
            # Written after the entries it covers, so it never outruns them.
            self._store.set_uint64(COMMIT_INDEX_KEY, self._commit_index)
            self._commit_stored = self._commit_index
            self._wrote(needs_sync=False)
        if self._needs_sync:
            self._store.sync()
            self._fsyncs += 1
            self._needs_sync = self._has_unsynced = False
        self._synced_through = self._last
        self._dirty = self._barrier = False

    def onOneSecondTimer(self) -> None:
        """Flush at least once a second, even when the node sends nothing."""
        if self._dirty or self._commit_index != self._commit_stored:
            self.flush()

    def _destroy(self) -> None:
        """Flush and sync everything; close the store when the journal owns it.

        A store the journal does not own stays open (its owner closes it).
        Idempotent: once an owned store is closed, nothing is left to do.
        """
        if self._store.closed:
            return
        try:
            self.flush()
            if self._has_unsynced:
                self._store.sync()
                self._fsyncs += 1
                self._has_unsynced = False
        finally:
            if self.owns_store:
                _live_journals.discard(self)
                self._store.close()

    # -- stable state --------------------------------------------------------------

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        """Record the commit index; entries it covers are made durable first."""
        self._commit_index = raftCommitIndex
        if self._dirty and raftCommitIndex > self._synced_through:
            self.flush()

    def getRaftCommitIndex(self) -> int:
        """The commit index (1 when none was stored), never past the last entry."""
        if self._last and self._commit_index > self._last:
            return self._last
        return self._commit_index

    def setCurrentTerm(self, term: int, votedForNodeId: object) -> None:
        """Store the term and the vote together, in one write."""
        if term == self._term and votedForNodeId == self._voted_for:
            return
        record = encode_term_vote(_check_uint64(term, "term"), votedForNodeId)
        self._store.set(TERM_VOTE_KEY, record)
        self._term, self._voted_for = term, votedForNodeId
        self._wrote(needs_sync=True)
        self._barrier = self._dirty

    def getCurrentTerm(self) -> int:
        """The stored current term (0 when none was stored)."""
        return self._term

    def getVotedForNodeId(self) -> object:
        """The node voted for in the current term, or None."""
        return self._voted_for


class JournalSlice(Sequence[Entry]):
    """A lazy, read-only view of consecutive journal entries.

    Reads entries only when asked (from the journal's in-memory tail or the
    store); ``len`` is O(1). Pickles as a plain list, so a slice can go
    straight into a PySyncObj message. A view taken before the journal was
    truncated or cleared raises `RaftStoreError` when read.
    """

    __slots__ = ("_generation", "_journal", "_start", "_stop")

    def __init__(self, journal: RaftStoreJournal, start: int, stop: int) -> None:
        """View Raft indexes ``start..stop-1`` of *journal*."""
        self._journal = journal
        self._start = start
        self._stop = stop
        self._generation = journal._generation

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, item: int) -> Entry: ...

    @overload
    def __getitem__(self, item: slice) -> Sequence[Entry]: ...

    def __getitem__(self, item: int | slice) -> Entry | Sequence[Entry]:
        if isinstance(item, slice):
            start, stop, step = item.indices(self._stop - self._start)
            if step != 1:
                return [self[position] for position in range(start, stop, step)]
            view = JournalSlice(self._journal, self._start + start, self._start + max(start, stop))
            view._generation = self._generation
            return view
        position = operator.index(item)
        length = self._stop - self._start
        if position < 0:
            position += length
        if not 0 <= position < length:
            raise IndexError("journal slice index out of range")
        index = self._start + position
        self._journal._view_check(self._generation, index, index + 1)
        return self._journal._entry(index)

    def __iter__(self) -> Iterator[Entry]:
        journal = self._journal
        journal._view_check(self._generation, self._start, self._stop)
        offset = self._start - journal._tail_first
        if offset >= 0:  # all in the in-memory tail: iterate at C speed
            return iter(journal._tail[offset : offset + self._stop - self._start])
        return journal._iter_range(self._start, self._stop)

    def __reduce__(self) -> tuple[Callable[..., list[Entry]], tuple[list[Entry]]]:
        return (list, (list(self),))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JournalSlice | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like list

    def __repr__(self) -> str:
        return f"<JournalSlice {self._start}..{self._stop - 1} of {self._journal!r}>"
