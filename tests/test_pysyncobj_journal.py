"""`RaftStoreJournal` on its own: the Journal contract, group commit, hooks, and a
differential test against PySyncObj's MemoryJournal."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj import syncobj as syncobj_module
from pysyncobj.batteries import ReplCounter
from pysyncobj.journal import FileJournal, MemoryJournal
from pysyncobj.transport import TCPTransport
from pysyncobj_cluster import free_ports

import raftstore
from raftstore import ConfigurationError, InvalidArgumentError, RaftStore, RaftStoreError
from raftstore.integrations.pysyncobj import (
    COMMIT_INDEX_KEY,
    TERM_VOTE_KEY,
    JournalSlice,
    RaftStoreJournal,
    default_dump_file,
    install_hooks,
    syncobj_conf,
)

OpenStore = Callable[..., RaftStore]


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    opened: list[RaftStore] = []

    def open_(**kwargs: Any) -> RaftStore:
        kwargs.setdefault("sync", False)
        store = raftstore.open(tmp_path / "raft", engine="lmdb", **kwargs)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def _fill(journal: RaftStoreJournal, first: int, last: int, term: int = 1) -> None:
    for index in range(first, last + 1):
        journal.add(f"cmd{index}".encode(), index, term)


# -- the plain contract ----------------------------------------------------------


def test_positions_map_to_raft_indexes(open_store: OpenStore) -> None:
    journal = RaftStoreJournal(open_store())
    assert len(journal) == 0
    with pytest.raises(IndexError):
        journal[-1]
    _fill(journal, 5, 14)
    assert len(journal) == 10
    assert journal[0] == (b"cmd5", 5, 1)
    assert journal[-1] == (b"cmd14", 14, 1)
    assert journal[3] == (b"cmd8", 8, 1)
    assert list(journal[8:]) == [(b"cmd13", 13, 1), (b"cmd14", 14, 1)]
    journal.deleteEntriesTo(2)  # compaction: drop positions 0, 1
    assert journal[0][1] == 7
    journal.deleteEntriesFrom(5)  # conflict: drop raft indexes 12..
    assert [entry[1] for entry in journal[:]] == [7, 8, 9, 10, 11]
    journal.add(b"new", 12, 2)
    assert journal[-1] == (b"new", 12, 2)


def test_entries_survive_reopen(open_store: OpenStore) -> None:
    store = open_store()
    journal = RaftStoreJournal(store)
    _fill(journal, 1, 50)
    journal.deleteEntriesTo(10)
    journal.setCurrentTerm(7, "127.0.0.1:1234")
    journal.setRaftCommitIndex(40)
    journal._destroy()
    store.close()
    again = RaftStoreJournal(open_store())
    assert len(again) == 40
    assert again[0] == (b"cmd11", 11, 1)
    assert again[-1] == (b"cmd50", 50, 1)
    assert list(again[:]) == [(f"cmd{i}".encode(), i, 1) for i in range(11, 51)]
    assert again.getCurrentTerm() == 7
    assert again.getVotedForNodeId() == "127.0.0.1:1234"
    assert again.getRaftCommitIndex() == 40


def test_add_keeps_entries_contiguous(open_store: OpenStore) -> None:
    journal = RaftStoreJournal(open_store())
    with pytest.raises(InvalidArgumentError):
        journal.add(b"x", 0, 1)
    journal.add(b"x", 3, 1)
    with pytest.raises(InvalidArgumentError, match="contiguous"):
        journal.add(b"y", 5, 1)
    with pytest.raises(InvalidArgumentError, match="bytes"):
        journal.add("text", 4, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="term"):
        journal.add(b"y", 4, -1)
    journal.add(bytearray(b"y"), 4, 1)  # type: ignore[arg-type]
    assert journal[-1] == (b"y", 4, 1)


def test_commit_index_never_points_past_the_log(open_store: OpenStore) -> None:
    store = open_store()
    journal = RaftStoreJournal(store)
    assert journal.getRaftCommitIndex() == 1  # PySyncObj's default
    _fill(journal, 1, 5)
    journal.setRaftCommitIndex(5)
    journal.flush()
    assert store.get_uint64(COMMIT_INDEX_KEY) == 5
    journal.deleteEntriesFrom(2)
    assert journal.getRaftCommitIndex() == 2
    journal._destroy()
    store.close()
    assert RaftStoreJournal(open_store()).getRaftCommitIndex() == 2


@pytest.mark.parametrize("vote", [None, "127.0.0.1:4321", 17, ("node", 3)])
def test_term_and_vote_are_one_write(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch, vote: object
) -> None:
    store = open_store()
    journal = RaftStoreJournal(store)
    writes: list[bytes] = []
    original = RaftStore.set

    def counting_set(self: RaftStore, key: bytes, value: bytes) -> None:
        writes.append(key)
        original(self, key, value)

    monkeypatch.setattr(RaftStore, "set", counting_set)
    journal.setCurrentTerm(3, vote)
    assert writes == [TERM_VOTE_KEY]
    journal.setCurrentTerm(3, vote)  # unchanged: nothing written
    assert writes == [TERM_VOTE_KEY]
    journal._destroy()
    store.close()
    again = RaftStoreJournal(open_store())
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (3, vote)


# -- lazy slices ---------------------------------------------------------------------


def test_slices_are_lazy_views(open_store: OpenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store()
    journal = RaftStoreJournal(store, cache_entries=10)
    _fill(journal, 1, 5000)
    journal.flush()
    reads: list[tuple[int, int]] = []
    original = RaftStore.iter_logs

    def counting_iter(self: RaftStore, low: int = 1, high: int = 2**64 - 1) -> Iterator[Any]:
        reads.append((low, high))
        return original(self, low, high)

    monkeypatch.setattr(RaftStore, "iter_logs", counting_iter)
    view = journal[100:]
    assert isinstance(view, JournalSlice)
    assert len(view) == 4900
    assert reads == []  # nothing read yet
    assert view[-1] == (b"cmd5000", 5000, 1)  # from the in-memory tail
    assert view[1:3][0] == (b"cmd102", 102, 1)
    first_three = []
    for entry in view:
        first_three.append(entry)
        if len(first_three) == 3:
            break
    assert [entry[1] for entry in first_three] == [101, 102, 103]
    assert len(reads) == 1
    assert view[::1000] == [journal[100 + i] for i in range(0, 4900, 1000)]


def test_memory_stays_bounded(open_store: OpenStore) -> None:
    store = open_store()
    journal = RaftStoreJournal(store, cache_entries=8)
    _fill(journal, 1, 10_000)  # nothing committed, no flush: written in bounded batches
    assert store.last_index() >= 10_000 - 4096
    journal.flush()
    assert len(journal._tail) <= 16 * 8 + 8
    journal.setRaftCommitIndex(10_000)
    _fill(journal, 10_001, 10_050)
    journal.flush()
    assert len(journal._tail) <= 8 + 50 + 8  # the uncommitted plus cache_entries before
    assert list(journal[:]) == [(f"cmd{i}".encode(), i, 1) for i in range(1, 10_051)]


def test_slice_pickles_as_a_list(open_store: OpenStore) -> None:
    journal = RaftStoreJournal(open_store(), cache_entries=2)
    _fill(journal, 1, 100)
    journal.flush()
    view = journal[5:9]
    assert isinstance(view, JournalSlice)
    restored = pickle.loads(pickle.dumps({"entries": view}))
    assert type(restored["entries"]) is list
    assert restored["entries"] == [(f"cmd{i}".encode(), i, 1) for i in range(6, 10)]
    assert view == restored["entries"]


def test_slices_held_in_memory_are_lists(open_store: OpenStore) -> None:
    journal = RaftStoreJournal(open_store(), cache_entries=10)
    _fill(journal, 1, 500)  # 160 (16 * 10) stay in memory: nothing is committed
    journal.flush()
    assert journal[495:497] == [(b"cmd496", 496, 1), (b"cmd497", 497, 1)]
    assert type(journal[495:497]) is list
    assert type(journal[5:497]) is JournalSlice
    journal.setRaftCommitIndex(500)
    _fill(journal, 501, 520)
    journal.flush()  # now only 10 before the commit index stay
    assert type(journal[470:472]) is JournalSlice
    assert type(journal[495:510]) is list


def test_slice_taken_before_truncation_refuses_to_read(open_store: OpenStore) -> None:
    journal = RaftStoreJournal(open_store(), cache_entries=2)
    _fill(journal, 1, 100)
    journal.flush()
    view = journal[10:]
    assert isinstance(view, JournalSlice)
    journal.deleteEntriesFrom(12)
    journal.add(b"other", 13, 2)
    with pytest.raises(RaftStoreError, match="truncated"):
        list(view)
    compacted = journal[0:5]
    assert isinstance(compacted, JournalSlice)
    journal.deleteEntriesTo(3)
    with pytest.raises(IndexError):
        compacted[0]
    assert compacted[4] == journal[1]


# -- group commit ----------------------------------------------------------------------


def test_group_commit_syncs_once_per_batch(open_store: OpenStore) -> None:
    store = open_store(sync=False)
    journal = RaftStoreJournal(store)
    _fill(journal, 1, 100)
    assert store.last_index() == 0  # buffered, not yet written
    assert journal[50] == (b"cmd51", 51, 1)
    assert journal.pending
    journal.flush()
    assert (store.last_index(), journal.fsync_count) == (100, 1)
    journal.flush()
    assert journal.fsync_count == 1  # nothing new, no sync
    journal.setRaftCommitIndex(90)  # covers only synced entries: no sync
    assert journal.fsync_count == 1
    _fill(journal, 101, 110)
    journal.setRaftCommitIndex(105)  # would cover unsynced entries: sync first
    assert (store.last_index(), journal.fsync_count) == (110, 2)
    assert store.get_uint64(COMMIT_INDEX_KEY) == 105
    journal.setCurrentTerm(2, None)
    assert journal.pending
    journal.flush()
    assert journal.fsync_count == 3


def test_store_that_syncs_every_write_needs_no_extra_sync(open_store: OpenStore) -> None:
    store = open_store(sync=True)
    journal = RaftStoreJournal(store)
    _fill(journal, 1, 10)
    journal.flush()
    assert journal.fsync_count == 1  # the one store_logs batch
    assert not journal.pending


def test_compaction_fsyncs_the_dump_file_first(open_store: OpenStore, tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    dump.write_bytes(b"snapshot")
    journal = RaftStoreJournal(open_store(), dump_file=dump)
    _fill(journal, 1, 10)
    journal.flush()
    before = journal.fsync_count
    journal.deleteEntriesTo(5)
    assert journal.fsync_count == before + 1  # the dump, before anything is deleted
    assert journal.pending
    journal.flush()
    assert journal.fsync_count == before + 2  # the delete, with the next batch


def _bare_transport(journal: RaftStoreJournal) -> TCPTransport:
    class FakeSyncObj:
        _SyncObj__raftLog = journal

    transport = TCPTransport.__new__(TCPTransport)
    transport._syncObj = FakeSyncObj()
    transport._connections = {}
    return transport


def test_send_hook_flushes_before_acknowledgements(open_store: OpenStore) -> None:
    install_hooks()
    journal = RaftStoreJournal(open_store())
    transport = _bare_transport(journal)
    _fill(journal, 1, 3)
    assert TCPTransport.send(transport, object(), {"type": "next_node_idx"}) is False
    assert not journal.pending
    assert journal.fsync_count == 1


def test_leader_replicates_before_its_own_sync_then_syncs_at_tick_end(
    open_store: OpenStore,
) -> None:
    install_hooks()
    store = open_store()
    journal = RaftStoreJournal(store)
    transport = _bare_transport(journal)
    _fill(journal, 1, 3)
    TCPTransport.send(transport, object(), {"type": "append_entries", "entries": []})
    assert journal.pending  # entries went out before the leader's own sync
    transport._ready, transport._nodes = True, set()  # nothing to bind or connect
    TCPTransport._onTick(transport)
    assert not journal.pending
    assert (store.last_index(), journal.fsync_count) == (3, 1)
    # A new term or vote must be durable before even append_entries leaves.
    journal.setCurrentTerm(2, None)
    _fill(journal, 4, 4)
    TCPTransport.send(transport, object(), {"type": "append_entries", "entries": []})
    assert not journal.pending
    assert journal.fsync_count == 2


# -- wiring into PySyncObj ---------------------------------------------------------------


def test_hooks_are_idempotent_and_keep_stock_journals(tmp_path: Path) -> None:
    install_hooks()
    create, send = syncobj_module.createJournal, TCPTransport.send
    install_hooks()
    assert (syncobj_module.createJournal, TCPTransport.send) == (create, send)
    assert isinstance(syncobj_module.createJournal(None), MemoryJournal)
    file_journal = syncobj_module.createJournal(str(tmp_path / "journal"))
    assert isinstance(file_journal, FileJournal)
    file_journal._destroy()
    with raftstore.open("memory://") as store:
        journal = RaftStoreJournal(store)
        assert syncobj_module.createJournal(journal) is journal


def test_syncobj_conf(open_store: OpenStore) -> None:
    store = open_store()
    conf = syncobj_conf(store, connectionRetryTime=0.5)
    assert isinstance(conf, SyncObjConf)
    assert isinstance(conf.journalFile, RaftStoreJournal)
    assert conf.journalFile.store is store
    assert conf.connectionRetryTime == 0.5
    assert conf.fullDumpFile == default_dump_file(store)
    assert conf.fullDumpFile == str(store.path) + ".pysyncobj-dump"
    assert syncobj_conf(store, fullDumpFile=None).fullDumpFile is None
    with pytest.raises(ConfigurationError, match="journalFile"):
        syncobj_conf(store, journalFile="/tmp/x")
    with raftstore.open("memory://") as memory:
        assert syncobj_conf(memory).fullDumpFile is None


class _Counter(SyncObj):  # type: ignore[misc]
    def __init__(self, address: str, conf: SyncObjConf) -> None:
        self.counter = ReplCounter()
        super().__init__(address, [], conf, consumers=[self.counter])


def _tick_until(obj: _Counter, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "single node did not get there in time"
        obj.doTick(0.01)


def test_single_node_syncobj_restarts_from_the_store(open_store: OpenStore) -> None:
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    store = open_store()
    obj = _Counter(address, syncobj_conf(store, autoTick=False, connectionRetryTime=0.2))
    done: list[object] = []
    _tick_until(obj, obj._isLeader)
    for _ in range(25):
        obj.counter.inc(callback=lambda result, error: done.append(error))
    _tick_until(obj, lambda: len(done) == 25)
    assert obj.counter.get() == 25
    # No peers, no sends: commit advanced only after the entries were synced.
    assert store.last_index() >= 26
    obj.destroy()
    store.close()

    store = open_store()
    again = _Counter(address, syncobj_conf(store, autoTick=False, connectionRetryTime=0.2))
    _tick_until(again, lambda: again.counter.get() == 25)
    again.destroy()


def test_import_raftstore_stays_light_and_missing_pysyncobj_names_the_extra() -> None:
    light = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, raftstore, raftstore.integrations; print('pysyncobj' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert light.stdout.strip() == "False"
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['pysyncobj'] = None\n"
            "import raftstore\n"
            "try:\n"
            "    import raftstore.integrations.pysyncobj\n"
            "except raftstore.EngineUnavailableError as exc:\n"
            "    print(isinstance(exc, ImportError), exc)\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert missing.stdout.startswith("True ")
    assert "pip install 'raftstore[pysyncobj]'" in missing.stdout


# -- differential test against MemoryJournal ------------------------------------------------

_positions = st.integers(min_value=-12, max_value=40)
_slice_bounds = st.none() | st.integers(min_value=-40, max_value=40)


class JournalVersusMemoryJournal(RuleBasedStateMachine):
    """Random journal operations on both journals; everything observable must agree."""

    engine = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="raftstore-pysyncobj-")
        self.store = self._open()
        # A tiny cache so reads go to the store as well as to memory.
        self.journal = RaftStoreJournal(self.store, cache_entries=3)
        self.model = MemoryJournal()

    def _open(self) -> RaftStore:
        if self.engine == "memory":
            return raftstore.open("memory://", sync=False)
        return raftstore.open(Path(self.directory) / "raft", engine=self.engine, sync=False)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(
        commands=st.lists(st.binary(max_size=6), min_size=1, max_size=6),
        term=st.integers(min_value=0, max_value=4),
        start=st.integers(min_value=1, max_value=2**40),
    )
    def add(self, commands: list[bytes], term: int, start: int) -> None:
        index = self.model[-1][1] + 1 if len(self.model) else start
        for command in commands:
            self.journal.add(command, index, term)
            self.model.add(command, index, term)
            index += 1

    @rule(position=_positions)
    def delete_entries_from(self, position: int) -> None:
        self.journal.deleteEntriesFrom(position)
        self.model.deleteEntriesFrom(position)

    @rule(position=_positions)
    def delete_entries_to(self, position: int) -> None:
        self.journal.deleteEntriesTo(position)
        self.model.deleteEntriesTo(position)

    @rule()
    def clear(self) -> None:
        self.journal.clear()
        self.model.clear()

    @rule(term=st.integers(min_value=0, max_value=9), vote=st.none() | st.text(max_size=8))
    def set_current_term(self, term: int, vote: str | None) -> None:
        self.journal.setCurrentTerm(term, vote)
        self.model.setCurrentTerm(term, vote)

    @rule()
    def flush(self) -> None:
        self.journal.flush()

    @precondition(lambda self: self.engine != "memory")
    @rule()
    def reopen(self) -> None:
        self.journal._destroy()
        self.store.close()
        self.store = self._open()
        self.journal = RaftStoreJournal(self.store, cache_entries=3)

    @rule(position=_positions)
    def get_item(self, position: int) -> None:
        try:
            expected = self.model[position]
        except IndexError:
            with pytest.raises(IndexError):
                self.journal[position]
        else:
            assert self.journal[position] == expected

    @rule(
        start=_slice_bounds,
        stop=_slice_bounds,
        step=st.sampled_from([None, 1, 2, 3, -1, -2]),
    )
    def get_slice(self, start: int | None, stop: int | None, step: int | None) -> None:
        view = self.journal[start:stop:step]
        expected = self.model[start:stop:step]
        assert len(view) == len(expected)
        assert list(view) == expected
        if expected:
            assert view[-1] == expected[-1]
            assert view[0] == expected[0]

    @invariant()
    def same_journal(self) -> None:
        assert len(self.journal) == len(self.model)
        assert list(self.journal[:]) == self.model[:]
        assert self.journal.getCurrentTerm() == self.model.getCurrentTerm()
        assert self.journal.getVotedForNodeId() == self.model.getVotedForNodeId()


class JournalVersusMemoryJournalOnLmdb(JournalVersusMemoryJournal):
    engine = "lmdb"


class JournalVersusMemoryJournalOnRocksdb(JournalVersusMemoryJournal):
    engine = "rocksdb"


_machine_settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDifferentialMemory = JournalVersusMemoryJournal.TestCase
TestDifferentialMemory.settings = _machine_settings
TestDifferentialLmdb = JournalVersusMemoryJournalOnLmdb.TestCase
TestDifferentialLmdb.settings = _machine_settings
TestDifferentialRocksdb = JournalVersusMemoryJournalOnRocksdb.TestCase
TestDifferentialRocksdb.settings = _machine_settings
