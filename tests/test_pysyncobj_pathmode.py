"""Path mode (`install`), the FileJournal import, `remove_journal`, ``raftstore pysyncobj-run``."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.batteries import ReplCounter
from pysyncobj.journal import FileJournal
from pysyncobj_cluster import free_ports

import raftstore
from raftstore import (
    ConfigurationError,
    CorruptionError,
    StoreLockedError,
    UnknownEngineError,
)
from raftstore.integrations.pysyncobj import (
    COMMIT_INDEX_KEY,
    TERM_VOTE_KEY,
    RaftStoreJournal,
    install,
    installed_settings,
    journal_store_path,
    open_path_journal,
    read_file_journal,
    remove_journal,
    uninstall,
)
from raftstore.integrations.pysyncobj.journal import decode_term_vote

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 120.0


@pytest.fixture(autouse=True)
def _no_path_mode_left_behind() -> Iterator[None]:
    uninstall()
    yield
    uninstall()


class _Counter(SyncObj):  # type: ignore[misc]  # pysyncobj has no stubs
    def __init__(self, address: str, conf: SyncObjConf) -> None:
        self.counter = ReplCounter()
        super().__init__(address, [], conf, consumers=[self.counter])


def _conf(directory: Path, **kwargs: Any) -> SyncObjConf:
    return SyncObjConf(
        journalFile=str(directory / "node.journal"),
        fullDumpFile=str(directory / "node.dump"),
        autoTick=False,
        connectionRetryTime=0.2,
        **kwargs,
    )


def _tick_until(node: _Counter, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the single node did not get there"
        node.doTick(0.01)


def _run_node(directory: Path, increments: int) -> int:
    """Start a single-node SyncObj on ``directory/node.journal``, increment, destroy."""
    (port,) = free_ports(1)
    node = _Counter(f"127.0.0.1:{port}", _conf(directory))
    try:
        _tick_until(node, node._isReady)
        start = node.counter.get()
        for _ in range(increments):
            node.counter.inc()
        _tick_until(node, lambda: node.counter.get() == start + increments)
        return int(node.counter.get())
    finally:
        node.destroy()


# -- install ------------------------------------------------------------------------


def test_install_is_idempotent_and_refuses_other_arguments() -> None:
    assert installed_settings() is None
    install(engine="rocksdb", codec="cbor")
    install(engine="rocksdb", codec="cbor")  # the same again: nothing happens
    assert installed_settings() == {"engine": "rocksdb", "codec": "cbor", "sync": False}
    with pytest.raises(ConfigurationError, match="already installed"):
        install(engine="lmdb")
    with pytest.raises(ConfigurationError, match="already installed"):
        install(engine="rocksdb", codec="cbor", sync=True)
    uninstall()
    with pytest.raises(UnknownEngineError):
        install(engine="no-such-engine")
    with pytest.raises(ConfigurationError, match="in-memory"):
        install(engine="memory")
    assert installed_settings() is None


def test_path_mode_journals_to_a_store_and_restarts_from_it(tmp_path: Path) -> None:
    install(engine="lmdb")
    assert _run_node(tmp_path, 7) == 7
    store_path = Path(journal_store_path(tmp_path / "node.journal"))
    assert store_path == tmp_path / "node.journal.raftstore"
    assert (store_path / "raftstore.json").is_file()
    assert not (tmp_path / "node.journal").exists()
    # The journal closed its store in _destroy: it opens again, here or anywhere.
    with raftstore.open(store_path) as store:
        assert store.engine == "lmdb"
        assert store.last_index() >= 8
        assert decode_term_vote(store.get(TERM_VOTE_KEY) or b"")[0] >= 1
    assert _run_node(tmp_path, 3) == 10


def test_the_journal_takes_its_dump_file_from_the_conf_and_owns_its_store(
    tmp_path: Path,
) -> None:
    install(engine="leveldb")
    (port,) = free_ports(1)
    node = _Counter(f"127.0.0.1:{port}", _conf(tmp_path))
    journal = node._SyncObj__raftLog
    try:
        assert isinstance(journal, RaftStoreJournal)
        assert journal.dump_file == str(tmp_path / "node.dump")
        assert journal.owns_store
        assert journal.store.engine == "leveldb"
    finally:
        node.destroy()
    assert journal.store.closed


def test_two_journals_on_one_path_are_refused_and_a_failed_start_releases_the_store(
    tmp_path: Path,
) -> None:
    install()
    first_port, second_port = free_ports(2)
    first = _Counter(f"127.0.0.1:{first_port}", _conf(tmp_path))
    try:
        with pytest.raises(StoreLockedError):
            _Counter(f"127.0.0.1:{second_port}", _conf(tmp_path))
        _tick_until(first, first._isReady)
        first.counter.inc()
        _tick_until(first, lambda: first.counter.get() == 1)
    finally:
        first.destroy()

    # A SyncObj whose constructor fails after its journal opened closes that store.
    class FailingTransport:
        def __init__(self, *args: object) -> None:
            raise RuntimeError("no transport today")

    with pytest.raises(RuntimeError, match="no transport today"):
        SyncObj(f"127.0.0.1:{second_port}", [], _conf(tmp_path), transportClass=FailingTransport)
    assert _run_node(tmp_path, 1) == 2


def test_a_journal_object_and_none_keep_their_meaning_in_path_mode(tmp_path: Path) -> None:
    install()
    (port,) = free_ports(1)
    node = SyncObj(f"127.0.0.1:{port}", [], SyncObjConf(autoTick=False))
    try:
        assert type(node._SyncObj__raftLog).__name__ == "MemoryJournal"
    finally:
        node.destroy()
    with raftstore.open(tmp_path / "given", sync=False) as store:
        given = RaftStoreJournal(store)
        node = SyncObj(f"127.0.0.1:{port}", [], SyncObjConf(journalFile=given, autoTick=False))
        try:
            assert node._SyncObj__raftLog is given
        finally:
            node.destroy()
        assert not store.closed  # not owned: its opener closes it


# -- the FileJournal import ----------------------------------------------------------------


def _file_journal_node(directory: Path, increments: int) -> dict[str, Any]:
    """Run a node on PySyncObj's own FileJournal; return what its files hold."""
    assert installed_settings() is None
    counter = _run_node(directory, increments)
    journal = FileJournal(str(directory / "node.journal"))
    try:
        return {
            "counter": counter,
            "entries": [tuple(entry) for entry in journal[:]],
            "term": journal.getCurrentTerm(),
            "vote": journal.getVotedForNodeId(),
            "commit": journal.getRaftCommitIndex(),
        }
    finally:
        journal._destroy()


def test_a_file_journal_is_imported_on_first_start_and_left_untouched(tmp_path: Path) -> None:
    before = _file_journal_node(tmp_path, 12)
    assert before["counter"] == 12
    assert len(before["entries"]) >= 13
    files = {name: (tmp_path / name).read_bytes() for name in ("node.journal", "node.journal.meta")}
    install(engine="rocksdb")
    assert _run_node(tmp_path, 0) == 12  # the state is back: it came from the import
    for name, content in files.items():
        assert (tmp_path / name).read_bytes() == content
    with raftstore.open(tmp_path / "node.journal.raftstore") as store:
        assert store.engine == "rocksdb"
        imported = [store.get_log(index) for index in range(1, len(before["entries"]) + 1)]
        assert [(log.data, log.index, log.term) for log in imported] == before["entries"]
        term, _vote = decode_term_vote(store.get(TERM_VOTE_KEY) or b"")
        assert term >= before["term"]
        assert before["term"] >= 1
        assert store.get_uint64(COMMIT_INDEX_KEY) >= before["commit"]
    # Once imported, the store is what starts: more work lands there, not in the old file.
    assert _run_node(tmp_path, 2) == 14
    assert (tmp_path / "node.journal").read_bytes() == files["node.journal"]


def test_read_file_journal_matches_pysyncobj(tmp_path: Path) -> None:
    before = _file_journal_node(tmp_path, 5)
    contents = read_file_journal(tmp_path / "node.journal")
    assert list(contents.entries) == before["entries"]
    assert (contents.current_term, contents.voted_for) == (before["term"], before["vote"])
    assert contents.commit_index == before["commit"]
    assert contents.has_meta


def _forge_journal(
    path: Path, records: list[tuple[int, int, bytes]], end: int | None = None
) -> None:
    body = b""
    for index, term, command in records:
        data = struct.pack("<QQ", index, term) + command
        body += struct.pack("<I", len(data)) + data + struct.pack("<I", len(data))
    header_end = 40 + len(body) if end is None else end
    header = b"PYSYNCOBJ".ljust(24, b"\0") + b"0.3.17".ljust(8, b"\0")
    path.write_bytes(header + struct.pack("<II", 1, header_end) + body + b"\0" * 1024)


def test_a_torn_file_journal_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    journal = tmp_path / "node.journal"
    _forge_journal(journal, [(1, 1, b"a"), (2, 1, b"b")], end=40 + 2 * 33 + 40)
    with pytest.raises(CorruptionError, match="torn write"):
        open_path_journal(journal)
    assert not Path(journal_store_path(journal)).exists()
    _forge_journal(journal, [(1, 1, b"a"), (3, 1, b"b")])
    with pytest.raises(CorruptionError, match="expected 2"):
        read_file_journal(journal)


def test_the_meta_pickle_is_read_as_plain_data_only(tmp_path: Path) -> None:
    journal = tmp_path / "node.journal"
    _forge_journal(journal, [(1, 1, b"a")])
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    (tmp_path / "node.journal.meta").write_bytes(pickle.dumps({"currentTerm": Payload()}))
    with pytest.raises(CorruptionError, match="only plain data"):
        read_file_journal(journal)
    assert not marker.exists()
    meta = {"currentTerm": 4, "votedForNodeId": "127.0.0.1:1", "raftCommitIndex": 1}
    (tmp_path / "node.journal.meta").write_bytes(pickle.dumps(meta, protocol=2))
    contents = read_file_journal(journal)
    assert (contents.current_term, contents.voted_for) == (4, "127.0.0.1:1")


def test_raftstore_migrate_accepts_a_file_journal(tmp_path: Path) -> None:
    before = _file_journal_node(tmp_path, 4)
    destination = tmp_path / "copy"
    done = subprocess.run(
        [sys.executable, "-m", "raftstore", "migrate", str(tmp_path / "node.journal"),
         f"leveldb://{destination}", "--quiet"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pysyncobj-filejournal" in done.stdout
    with raftstore.open(destination, read_only=True) as store:
        assert store.engine == "leveldb"
        assert store.last_index() == before["entries"][-1][1]
        assert decode_term_vote(store.get(TERM_VOTE_KEY) or b"") == (before["term"], before["vote"])


# -- remove_journal ------------------------------------------------------------------------


def test_remove_journal_removes_the_store_and_the_old_files(tmp_path: Path) -> None:
    _file_journal_node(tmp_path, 2)
    install()
    _run_node(tmp_path, 1)
    journal = tmp_path / "node.journal"
    with raftstore.open(journal_store_path(journal)), pytest.raises(StoreLockedError):
        remove_journal(journal)
    remove_journal(journal)
    remove_journal(journal)  # nothing left: fine
    # Only the dump file (written at compaction, if there was one) is left.
    assert {path.name for path in tmp_path.iterdir()} <= {"node.dump"}
    (tmp_path / "node.dump").unlink(missing_ok=True)
    assert _run_node(tmp_path, 1) == 1  # a fresh start


# -- the launcher ------------------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import sys
    from pysyncobj import SyncObj, SyncObjConf
    from raftstore.integrations.pysyncobj import installed_settings

    node = SyncObj(sys.argv[1], [], SyncObjConf(journalFile=sys.argv[2], autoTick=False))
    journal = node._SyncObj__raftLog
    print(type(journal).__name__, journal.store.engine, journal.store.codec, sys.argv[3:])
    print("settings", installed_settings())
    node.destroy()
    sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else sys.argv[3:][0])
    """
)


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "raftstore", "pysyncobj-run", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_launcher_runs_a_script_with_path_mode_and_passes_the_exit_code(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(_SCRIPT, "utf-8")
    (port,) = free_ports(1)
    journal = str(tmp_path / "a.journal")
    done = _launch(
        "--engine", "rocksdb", "--codec", "cbor", str(script), f"127.0.0.1:{port}", journal, "3",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "RaftStoreJournal rocksdb cbor ['3']" in done.stdout
    assert "'engine': 'rocksdb'" in done.stdout
    assert (tmp_path / "a.journal.raftstore" / "raftstore.json").is_file()
    # A message as the exit code: printed, status 1, as Python does.
    done = _launch(
        str(script), f"127.0.0.1:{port}", str(tmp_path / "b.journal"), "bye", cwd=tmp_path
    )
    assert done.returncode == 1
    assert "bye" in done.stderr


def test_launcher_runs_a_module_with_its_own_options(tmp_path: Path) -> None:
    (tmp_path / "app_module.py").write_text(_SCRIPT, "utf-8")
    (port,) = free_ports(1)
    done = _launch(
        "-m", "app_module", f"127.0.0.1:{port}", str(tmp_path / "m.journal"), "--engine",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # sys.exit("--engine"): the module's own argument
    assert "RaftStoreJournal lmdb msgpack ['--engine']" in done.stdout


def test_launcher_runs_a_console_script(tmp_path: Path) -> None:
    test_file = tmp_path / "test_in_path_mode.py"
    test_file.write_text(
        "from raftstore.integrations.pysyncobj import installed_settings\n"
        "def test_installed():\n"
        "    assert installed_settings() == {'engine': 'leveldb', 'codec': None, 'sync': False}\n",
        "utf-8",
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n", "utf-8")
    done = _launch(
        "--engine",
        "leveldb",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(test_file),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_launcher_errors(tmp_path: Path) -> None:
    done = _launch(cwd=tmp_path)
    assert done.returncode == 2
    assert "no program to run" in done.stderr
    done = _launch("no-such-program-anywhere", cwd=tmp_path)
    assert done.returncode == 2
    assert "neither a console script" in done.stderr
    done = _launch("--engine", "no-such-engine", "pytest", cwd=tmp_path)
    assert done.returncode == 5, done.stderr
