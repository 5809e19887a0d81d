"""Concurrency: readers never see a torn or impossible state while one writer works.

Per engine, one writer thread drives a Raft-like seeded workload (appends,
conflict rewrites of the uncommitted tail, prefix compactions behind the
commit index, stable ``CurrentTerm`` and a 256-byte stamped value) while
reader threads check invariants on every read:

- a found entry is whole: its data is the payload of its own index and term;
- committed entries (published by the writer after its call returned) are
  found with their committed term, unless compaction since removed them;
- ``first_index`` never moves back (the log is empty only before the first
  commit), ``last_index`` never drops below the acknowledged commit index,
  ``first <= last + 1``;
- ``CurrentTerm`` and the stamp version never move back and never lag what
  was acknowledged; a stamp is never a mix of two writes.

Also: closing a store while readers run gives them `StoreClosedError`, and
a second process (or handle) opening a locked store gets `StoreLockedError`.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import raftstore
from raftstore import Log, LogNotFoundError, RaftStore, StoreClosedError
from raftstore.registry import get_engine_class

ENGINES = ["memory", "lmdb", "rocksdb", "leveldb"]
DISK_ENGINES = ["lmdb", "rocksdb", "leveldb"]
SEED = 20261126
WRITER_OPERATIONS = 1500
READERS = 3
#: Bound on each reader's iterations, in case the writer stalls.
READER_ITERATIONS = 20_000
TRAILING = 32


def _usable(engine: str) -> str:
    for info in raftstore.available_engines():
        if info.name == engine and not info.available:
            pytest.skip(f"engine {engine!r} is not usable here: {info.error}")
    return engine


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RaftStore]:
    """A fresh store on each engine (unsynced: fsync is not what is tested here)."""
    engine = _usable(str(request.param))
    if engine == "memory":
        handle = raftstore.open("memory://")
    else:
        handle = raftstore.open(tmp_path / "db", engine=engine, sync=False)
    yield handle
    handle.close()


def payload(index: int, term: int) -> bytes:
    """64 bytes that only the entry (index, term) carries: a torn value cannot match."""
    head = index.to_bytes(8, "big") + term.to_bytes(8, "big")
    return head + bytes([(index * 31 + term * 7) % 251]) * 48


def stamp(version: int) -> bytes:
    """A 256-byte stable value of one version; a torn write would mix two."""
    return version.to_bytes(8, "big") * 32


@dataclass
class Published:
    """What the writer has acknowledged (set only after its call returned)."""

    commit: int = 0
    compacted: int = 0
    #: Highest compaction started (published before the call, so a reader
    #: that sees an entry vanish knows it may be compaction in progress).
    compacting: int = 0
    term: int = 0
    stamp_version: int = 0
    committed_terms: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> tuple[int, int, int, int]:
        with self.lock:
            return self.commit, self.compacted, self.term, self.stamp_version

    def committed_term(self, index: int) -> int:
        with self.lock:
            return self.committed_terms[index]


def writer(store: RaftStore, published: Published, seed: int) -> None:
    """A leader/follower mix: append, commit, rewrite the uncommitted tail, compact."""
    rng = random.Random(seed)
    term, last, commit, compacted, version = 1, 0, 0, 0, 0
    store.set_uint64(b"CurrentTerm", term)
    with published.lock:
        published.term = term
    for _ in range(WRITER_OPERATIONS):
        roll = rng.random()
        if roll < 0.5 or last - commit < 2:
            count = rng.randint(1, 32)
            store.store_logs(
                [Log(i, term, data=payload(i, term)) for i in range(last + 1, last + 1 + count)]
            )
            last += count
        elif roll < 0.65:
            # Conflict: drop part of the uncommitted tail and rewrite it in a new term.
            cut = rng.randint(commit + 1, last)
            store.delete_range(cut, last)
            term += 1
            store.set_uint64(b"CurrentTerm", term)
            with published.lock:
                published.term = term
            count = rng.randint(1, 16)
            store.store_logs([Log(i, term, data=payload(i, term)) for i in range(cut, cut + count)])
            last = cut + count - 1
        elif roll < 0.85:
            new_commit = rng.randint(commit + 1, last)
            terms = {i: store.get_log(i).term for i in range(commit + 1, new_commit + 1)}
            commit = new_commit
            with published.lock:
                published.committed_terms.update(terms)
                published.commit = commit
        elif roll < 0.93 and commit - compacted > TRAILING:
            upto = rng.randint(compacted + 1, commit - TRAILING)
            with published.lock:
                published.compacting = upto
            store.delete_range(compacted + 1 if compacted else 0, upto)
            compacted = upto
            with published.lock:
                published.compacted = compacted
        else:
            version += 1
            store.set(b"stamp", stamp(version))
            with published.lock:
                published.stamp_version = version


@dataclass
class ReaderReport:
    reads: int = 0
    found: int = 0
    problems: list[str] = field(default_factory=list)


def reader(store: RaftStore, published: Published, seed: int, report: ReaderReport) -> None:
    """Read at random and check every invariant; record any violation."""
    rng = random.Random(seed)
    last_first, last_term, last_version = 0, 0, 0

    def problem(text: str) -> None:
        report.problems.append(text)

    for _ in range(READER_ITERATIONS):
        if published.done.is_set():
            break
        commit, compacted, term, version = published.snapshot()
        first = store.first_index()
        last = store.last_index()
        report.reads += 2
        if first == 0:
            # Empty: only possible before the first commit (a conflict may cut from 1).
            if commit:
                problem(f"the log is empty after commit {commit} was acknowledged")
        else:
            if first < last_first:
                problem(f"first_index went back from {last_first} to {first}")
            last_first = first
        if commit and last < commit:
            problem(f"last_index {last} is below the acknowledged commit {commit}")
        if first and first > last + 1:
            problem(f"first_index {first} > last_index {last} + 1")
        if compacted and first and first <= compacted:
            problem(f"first_index {first} shows entries compacted up to {compacted}")
        # A committed, not yet compacted entry: present with its committed term.
        if commit > compacted:
            index = rng.randint(compacted + 1, commit)
            try:
                log = store.get_log(index)
            except LogNotFoundError:
                with published.lock:
                    compacting = published.compacting
                if compacting < index:
                    problem(f"committed entry {index} is missing (commit {commit})")
            else:
                report.found += 1
                expected_term = published.committed_term(index)
                if log.index != index or log.term != expected_term:
                    problem(f"committed entry {index} reads as {log.index}/{log.term}")
                if log.data != payload(log.index, log.term):
                    problem(f"entry {index} is torn: {log.data[:20]!r}")
        # Anywhere, including the uncommitted tail: whatever is found is whole.
        if last:
            index = rng.randint(max(first, 1), last + 2)
            try:
                log = store.get_log(index)
            except LogNotFoundError:
                pass
            else:
                report.found += 1
                if log.index != index or log.data != payload(log.index, log.term):
                    problem(f"entry {index} is torn or misplaced: {log!r:.120}")
                if log.term > published.snapshot()[2]:
                    problem(f"entry {index} has term {log.term} beyond any acknowledged term")
        current = store.get_uint64(b"CurrentTerm")
        if current < last_term or current < term:
            problem(f"CurrentTerm {current} went back (saw {last_term}, acknowledged {term})")
        last_term = current
        value = store.get(b"stamp")
        report.reads += 4
        if value is not None:
            seen = int.from_bytes(value[:8], "big")
            if value != stamp(seen):
                problem(f"stamp is torn: {value[:24]!r}")
            if seen < last_version or seen < version:
                problem(f"stamp version {seen} went back (saw {last_version}, acked {version})")
            last_version = seen
        elif version:
            problem(f"stamp vanished after version {version} was acknowledged")
        if rng.random() < 0.05 and commit > compacted:
            low = rng.randint(compacted + 1, commit)
            previous = 0
            for log in store.iter_logs(low, min(commit, low + 64)):
                if log.index <= previous or log.data != payload(log.index, log.term):
                    problem(f"iter_logs yielded {log.index} after {previous}, or a torn entry")
                previous = log.index
        if len(report.problems) > 20:
            break


def test_readers_see_only_whole_acknowledged_states_while_one_writer_works(
    store: RaftStore,
) -> None:
    published = Published()
    reports = [ReaderReport() for _ in range(READERS)]
    errors: list[BaseException] = []

    def run_reader(number: int) -> None:
        try:
            reader(store, published, SEED + 1 + number, reports[number])
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    def run_writer() -> None:
        try:
            writer(store, published, SEED)
        except BaseException as exc:  # asserted on below
            errors.append(exc)
        finally:
            published.done.set()

    # Daemon threads, joined with a timeout and checked: a thread stuck in
    # native code fails the test and cannot hold the interpreter open.
    threads = [threading.Thread(target=run_reader, args=(n,), daemon=True) for n in range(READERS)]
    writer_thread = threading.Thread(target=run_writer, daemon=True)
    for thread in threads:
        thread.start()
    writer_thread.start()
    writer_thread.join(timeout=600)
    published.done.set()
    for thread in threads:
        thread.join(timeout=600)
    stuck = [t.name for t in [*threads, writer_thread] if t.is_alive()]
    assert not stuck, f"seed {SEED}: threads still running after 600 s: {stuck}"
    assert not errors, f"seed {SEED}: a thread raised {errors[0]!r}"
    problems = [p for report in reports for p in report.problems]
    assert not problems, f"seed {SEED}: {len(problems)} violations, first: {problems[:5]}"
    reads = sum(report.reads for report in reports)
    found = sum(report.found for report in reports)
    assert found > 10, f"readers found only {found} entries in {reads} reads: no real overlap"
    # The writer finished its bounded work and the store is consistent afterwards.
    commit, compacted, _, _ = published.snapshot()
    logs = list(store.iter_logs())
    assert logs, "the workload left no entries"
    assert [log.index for log in logs] == list(range(logs[0].index, logs[-1].index + 1))
    assert (store.first_index(), store.last_index()) == (logs[0].index, logs[-1].index)
    assert store.first_index() == compacted + 1
    assert store.last_index() >= commit


def test_closing_under_readers_gives_them_store_closed_error(store: RaftStore) -> None:
    store.store_logs([Log(i, 1, data=payload(i, 1)) for i in range(1, 201)])
    started = threading.Barrier(READERS + 1)
    outcomes: list[str] = []
    lock = threading.Lock()

    def read_until_closed(seed: int) -> None:
        rng = random.Random(seed)
        started.wait(timeout=120)
        try:
            for _ in range(1_000_000):
                index = rng.randint(1, 200)
                log = store.get_log(index)
                assert log.data == payload(index, 1)
                if rng.random() < 0.01:
                    assert len(list(store.iter_logs(1, 50))) == 50
        except StoreClosedError:
            outcome = "closed"
        except BaseException as exc:  # recorded and asserted on below
            outcome = repr(exc)
        else:
            outcome = "never closed"
        with lock:
            outcomes.append(outcome)

    threads = [
        threading.Thread(target=read_until_closed, args=(SEED + n,), daemon=True)
        for n in range(READERS)
    ]
    for thread in threads:
        thread.start()
    started.wait(timeout=120)
    store.close()
    for thread in threads:
        thread.join(timeout=600)
    assert not [t for t in threads if t.is_alive()], "readers still running after 600 s"
    assert outcomes == ["closed"] * READERS


# -- the one-writer lock ------------------------------------------------------------

_CHILD = """
import sys, raftstore
path, engine, read_only = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
try:
    store = raftstore.open(path, engine=engine, read_only=read_only)
except raftstore.StoreLockedError as exc:
    print("locked", exc)
else:
    print("opened", store.last_index())
    store.close()
"""


def _open_in_child(path: Path, engine: str, read_only: bool) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), engine, "1" if read_only else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


@pytest.mark.parametrize("engine", DISK_ENGINES)
def test_a_second_process_opening_a_locked_store_gets_store_locked_error(
    engine: str, tmp_path: Path
) -> None:
    _usable(engine)
    path = tmp_path / "db"
    with raftstore.open(path, engine=engine) as store:
        store.store_logs([Log(i, 1) for i in range(1, 6)])
        answer = _open_in_child(path, engine, read_only=False)
        assert answer.startswith("locked"), answer
        assert "locked by process" in answer, answer  # names the holder
        with pytest.raises(raftstore.StoreLockedError):
            raftstore.open(path, engine=engine)  # a second handle in this process too
        readers = _open_in_child(path, engine, read_only=True)
        if get_engine_class(engine).supports_read_only:
            assert readers == "opened 5", readers
        else:
            assert readers.startswith("locked"), readers
    # Released on close: the next process opens it.
    assert _open_in_child(path, engine, read_only=False) == "opened 5"


@pytest.mark.parametrize("engine", DISK_ENGINES)
def test_a_forked_child_does_not_keep_the_store_locked(engine: str, tmp_path: Path) -> None:
    """After fork, the child's copy of the lock must not outlive the parent's close.

    The child inherits the lock file's descriptor (flock locks belong to the
    open file, which both processes now share); its handles are unusable
    after fork, so it must not hold the lock either.
    """
    _usable(engine)
    path = tmp_path / "db"
    store = raftstore.open(path, engine=engine)
    store.store_log(Log(1, 1))
    done_read, done_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: say it runs (fork hooks have run), wait, touch nothing
        os.close(done_write)
        os.close(ready_read)
        os.write(ready_write, b"r")
        os.read(done_read, 1)
        os._exit(0)
    os.close(done_read)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"r"
        store.close()
        with raftstore.open(path, engine=engine) as reopened:
            assert reopened.last_index() == 1
    finally:
        os.close(done_write)
        os.close(ready_read)
        os.waitpid(pid, 0)
