"""A store never comes back with less than it acknowledged: the store layer's part.

Each test damages a store the way an adversary (or a bad day) would, then
requires `raftstore.open` to raise `CorruptionError` and leave every file as
it was, or to return exactly the acknowledged data. The engine-specific
cases (damaged engine files) are in the engines' own damage tests.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import raftstore
from raftstore import CorruptionError, Log, LogType, StoreLockedError, admin
from raftstore._records import META_KEY, record_format
from raftstore.engines.base import LOGS, META, STABLE, WriteBatch

DISK_ENGINES = ["lmdb", "rocksdb", "leveldb"]
MAX = 2**64 - 1


@pytest.fixture(params=DISK_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _fill(path: Path, engine: str) -> None:
    """A store with entries 1..50, a suffix rewrite, a prefix delete and term 9."""
    with raftstore.open(path, engine=engine) as store:
        store.store_logs([Log(i, 1, data=b"entry %d" % i) for i in range(1, 51)])
        store.delete_range(41, MAX)
        store.store_logs([Log(i, 2, data=b"rewrite %d" % i) for i in range(41, 46)])
        store.delete_range(0, 10)
        for term in range(1, 10):
            store.set_uint64(b"CurrentTerm", term)
        store.set(b"LastVoteCand", b"node-2")


def _snapshot(path: Path) -> dict[str, bytes | None]:
    """Every file under *path* and its bytes (None for directories and links)."""
    files: dict[str, bytes | None] = {}
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            full = Path(root, name)
            relative = str(full.relative_to(path))
            if full.is_symlink() or full.is_dir():
                files[relative] = None
            elif name != "LOG" and not name.startswith("LOG.old"):
                # RocksDB's info log is not data; everything else must not change.
                files[relative] = full.read_bytes()
    return files


def _assert_acknowledged(path: Path) -> None:
    with raftstore.open(path) as store:
        assert (store.first_index(), store.last_index()) == (11, 45)
        assert store.get_log(41).data == b"rewrite 41"
        assert store.get_uint64(b"CurrentTerm") == 9
        assert store.get(b"LastVoteCand") == b"node-2"


# -- case 1: a store that exists is never created again ----------------------------


def test_a_store_whose_data_directory_vanished_is_refused(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, engine)
    shutil.rmtree(path / "data")
    before = _snapshot(path)
    with pytest.raises(CorruptionError, match="lost its engine files") as caught:
        raftstore.open(path)
    assert "rejoin the cluster" in str(caught.value)
    assert _snapshot(path) == before  # nothing created


def test_a_store_whose_meta_record_vanished_is_refused_even_when_empty(
    engine: str, tmp_path: Path
) -> None:
    # An engine that rolled back to nothing (or was replaced by an empty
    # database) holds neither data nor meta record: that is not a new store.
    path = tmp_path / "db"
    _fill(path, engine)
    with raftstore.open(path) as store:
        store.kv.write(WriteBatch(clears=[LOGS, STABLE, META]))
    with pytest.raises(CorruptionError, match="meta record"):
        raftstore.open(path)
    with pytest.raises(CorruptionError, match="meta record"):
        raftstore.open(path, read_only=True)


def test_a_store_whose_creation_never_finished_is_finished_not_refused(
    engine: str, tmp_path: Path
) -> None:
    path = tmp_path / "db"
    path.mkdir()
    (path / "raftstore.json").write_text(
        json.dumps({"engine": engine, "format": 2, "state": "creating"})
    )
    with raftstore.open(path) as store:
        store.set_uint64(b"CurrentTerm", 3)
    marker = json.loads((path / "raftstore.json").read_text())
    assert marker["state"] == "ready"
    with raftstore.open(path) as store:
        assert store.get_uint64(b"CurrentTerm") == 3


def test_a_new_store_is_marked_ready_only_once_complete(tmp_path: Path) -> None:
    path = tmp_path / "db"
    raftstore.open(path).close()
    marker = json.loads((path / "raftstore.json").read_text())
    assert marker == {"engine": "lmdb", "format": 2, "state": "ready"}
    assert not (path / "raftstore.json.tmp").exists()


def test_creation_fsyncs_every_directory_it_adds_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    path = tmp_path / "parent" / "db"
    raftstore.open(path).close()
    # The new directories' names live in their parents; the marker and
    # data/ live in the store directory; the engine's files in data/.
    for directory in (tmp_path, tmp_path / "parent", path, path / "data"):
        assert str(directory) in synced, f"{directory} was never fsynced"


# -- case 7: the lock cannot be removed from under a writer -------------------------


def test_removing_the_old_lock_file_does_not_let_a_second_writer_in(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with raftstore.open(path) as store:
        store.set_uint64(b"CurrentTerm", 1)
        for leftover in path.glob("raftstore.lock*"):
            leftover.unlink()
        with pytest.raises(StoreLockedError, match=f"process {os.getpid()}"):
            raftstore.open(path)


# -- case 8: links are never followed -------------------------------------------------


def test_a_planted_lock_file_link_is_never_written_through(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, engine)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    lock = path / "raftstore.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    with raftstore.open(path) as store:
        store.compact()
    with raftstore.open(path, read_only=True) as reader:
        assert reader.last_index() == 45
    assert victim.read_bytes() == b"precious"


def test_a_planted_marker_temporary_link_is_never_written_through(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (path / "raftstore.json.tmp").symlink_to(victim)
    raftstore.open(path).close()
    assert victim.read_bytes() == b"precious"
    assert json.loads((path / "raftstore.json").read_text())["state"] == "ready"


@pytest.mark.parametrize("name", ["raftstore.json", "data"])
def test_a_store_whose_own_files_are_links_is_refused(name: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, "lmdb")
    moved = tmp_path / f"moved-{name}"
    (path / name).rename(moved)
    (path / name).symlink_to(moved)
    with pytest.raises(CorruptionError, match="symbolic link"):
        raftstore.open(path)
    with pytest.raises(CorruptionError, match="symbolic link"):
        raftstore.open(path, read_only=True)


def test_a_store_whose_engine_files_are_links_is_refused(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, engine)
    data = path / "data"
    victim = next(p for p in sorted(data.iterdir()) if p.is_file())
    moved = tmp_path / victim.name
    victim.rename(moved)
    victim.symlink_to(moved)
    with pytest.raises(CorruptionError, match="symbolic link"):
        raftstore.open(path)


# -- case 9: checksums cover keys -------------------------------------------------------


def _flip_stable_key(path: Path, key: bytes, damaged: bytes) -> None:
    with raftstore.open(path) as store:
        raw = store.kv.get(STABLE, key)
        assert raw is not None
        store.kv.write(WriteBatch(deletes=[(STABLE, key, key)], puts=[(STABLE, damaged, raw)]))


def test_a_flipped_bit_in_a_stable_key_is_caught_at_open(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, engine)
    _flip_stable_key(path, b"CurrentTerm", b"CurrentTerM")
    with pytest.raises(CorruptionError, match="CurrentTerM"):
        raftstore.open(path)
    report = admin.verify_store(path)
    assert not report.ok
    assert any("CurrentTerM" in problem["where"] for problem in report.problems)


def test_a_log_record_under_another_index_fails_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, "lmdb")
    with raftstore.open(path) as store:
        raw = store.kv.get(LOGS, (20).to_bytes(8, "big"))
        assert raw is not None
        store.kv.write(WriteBatch(puts=[(LOGS, (21).to_bytes(8, "big"), raw)]))
        with pytest.raises(CorruptionError, match="log 21: checksum"):
            store.get_log(21)


def _as_format_1(path: Path) -> None:
    """Rewrite the store at *path* as raftstore 0.1 wrote it: format 1 records and marker."""
    old = record_format(1)
    with raftstore.open(path) as store:
        kv = store.kv
        puts = [
            (LOGS, key, old.frame(LOGS, key, _payload(raw)))
            for key, raw in kv.scan(LOGS, b"", None, 10**6)
        ]
        puts += [
            (STABLE, key, old.frame(STABLE, key, _payload(raw)))
            for key, raw in kv.scan(STABLE, b"\x00", None, 10**6)
        ]
        meta = {"format": 1, "engine": store.engine, "codec": store.codec}
        puts.append((META, META_KEY, old.frame(META, META_KEY, json.dumps(meta).encode())))
        kv.write(WriteBatch(puts=puts))
    (path / "raftstore.json").write_text(json.dumps({"engine": "lmdb", "format": 1}) + "\n")


def _payload(raw: bytes) -> bytes:
    return bytes(raw[:-4])


def test_a_format_1_store_still_opens_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, "lmdb")
    _as_format_1(path)
    _assert_acknowledged(path)
    with raftstore.open(path) as store:
        assert store.format_version == 1
        store.store_log(Log(46, 2, data=b"new"))
    with raftstore.open(path) as store:
        assert store.get_log(46).data == b"new"
    assert admin.verify_store(path).ok


def test_a_format_1_store_whose_data_vanished_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, "lmdb")
    _as_format_1(path)
    shutil.rmtree(path / "data")
    with pytest.raises(CorruptionError, match="lost its engine files"):
        raftstore.open(path)


# -- case 6: what store_logs accepts, get_log returns equal ------------------------------


class Term(int):
    """A user's own int type, as some Raft code has."""


class Lying(int):
    """An int whose comparisons, int() and repr lie."""

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return True

    def __int__(self) -> int:
        return 1

    def __index__(self) -> int:
        return 1


@pytest.mark.parametrize("codec", ["msgpack", "pickle", "cbor"])
def test_int_subclasses_are_stored_as_plain_ints(codec: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    with raftstore.open(path, codec=codec) as store:
        store.store_logs([Log(Term(1), Term(2), LogType.NOOP, appended_at=Term(5))])
        store.store_log(Log(LogType.BARRIER, Term(7)))  # index 4: an IntEnum
        for index, term in ((1, 2), (4, 7)):
            log = store.get_log(index)
            assert (log.index, log.term) == (index, term)
            assert type(log.index) is int
            assert type(log.term) is int
            assert type(log.appended_at) is int
    with raftstore.open(path) as store:
        assert store.get_log(1) == Log(1, 2, LogType.NOOP, appended_at=5)


def test_an_int_with_lying_comparisons_is_judged_by_its_value(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "db") as store:
        with pytest.raises(raftstore.InvalidLogError, match="index"):
            store.store_log(Log(Lying(0), 1))
        with pytest.raises(raftstore.InvalidLogError, match="index"):
            store.store_logs([Log(Lying(2**64), 1)])
        store.store_log(Log(Lying(3), Lying(4)))
        assert store.get_log(3) == Log(3, 4)
        assert store.last_index() == 3
        with pytest.raises(raftstore.InvalidArgumentError):
            store.get_log(Lying(2**64))
        with pytest.raises(raftstore.InvalidArgumentError):
            store.set_uint64(b"CurrentTerm", Lying(-1))
        assert store.get_log(Lying(3)).index == 3


# -- unreadable markers (issue 11 case 8) ------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\xff\xfe{", id="not-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
        pytest.param(b'{"engine": "lmdb", "format": "2"}', id="format-not-int"),
        pytest.param(b'{"engine": "lmdb", "format": 2, "state": "odd"}', id="unknown-state"),
        pytest.param(b" " * (1 << 20), id="huge"),
    ],
)
def test_an_unreadable_marker_is_corruption(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, "lmdb")
    (path / "raftstore.json").write_bytes(content)
    with pytest.raises(CorruptionError, match=r"raftstore\.json") as caught:
        raftstore.open(path)
    assert len(str(caught.value)) < 500


def test_damage_found_at_open_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "db"
    _fill(path, "lmdb")
    shutil.rmtree(path / "data")
    with caplog.at_level("ERROR", logger="raftstore"), pytest.raises(CorruptionError):
        raftstore.open(path)
    assert any("refused to open" in record.message for record in caplog.records)


def test_the_cli_logs_with_v(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _fill(path, "lmdb")
    result = subprocess.run(
        [sys.executable, "-m", "raftstore", "-vv", "compact", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "raftstore: INFO raftstore: compacting" in result.stderr
    assert "raftstore: DEBUG raftstore: opened" in result.stderr


@pytest.mark.parametrize("engine", ["lmdb", "rocksdb", "leveldb"])
def test_a_log_record_under_a_flipped_key_never_becomes_last_index(
    engine: str, tmp_path: Path
) -> None:
    # Damage campaign seeds rocksdb 1116 and lmdb 1237: last_index() came
    # back as 274877907242 with no error.
    path = tmp_path / "db"
    _fill(path, engine)
    with raftstore.open(path) as store:
        raw = store.kv.get(LOGS, (45).to_bytes(8, "big"))
        assert raw is not None
        damaged = (45 | 1 << 38).to_bytes(8, "big")
        store.kv.write(WriteBatch(puts=[(LOGS, damaged, raw)]))
    with pytest.raises(CorruptionError, match="the key is damaged"):
        raftstore.open(path)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"engine": "lmdb", "formbt": 2, "state": "ready"}', id="flipped-format-key"),
        pytest.param(b'{"engine": "lmdb", "format": 2, "stbte": "ready"}', id="flipped-state-key"),
        pytest.param(b'{"enginf": "lmdb", "format": 2, "state": "ready"}', id="flipped-engine-key"),
    ],
)
def test_a_marker_with_a_damaged_key_is_corruption_not_a_key_error(
    content: bytes, tmp_path: Path
) -> None:
    # Damage campaign seeds lmdb 1040, 1156: a raw KeyError: 'format' at open.
    path = tmp_path / "db"
    _fill(path, "lmdb")
    (path / "raftstore.json").write_bytes(content)
    with pytest.raises(CorruptionError, match=r"raftstore\.json"):
        raftstore.open(path)
    result = subprocess.run(
        [sys.executable, "-m", "raftstore", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (1, 6), result.stderr
    assert "KeyError" not in result.stderr
