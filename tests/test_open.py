"""Opening stores on disk: defaults, the recorded engine and codec, locks, guards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import raftstore
from raftstore import (
    CodecMismatchError,
    ConfigurationError,
    CorruptionError,
    Log,
    ReadOnlyError,
    StoreClosedError,
    StoreLockedError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from raftstore._records import FORMAT_VERSION, META_KEY, record_format
from raftstore.engines.base import META, WriteBatch


def test_plain_path_creates_lmdb_msgpack(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "db") as store:
        assert (store.engine, store.codec, store.path) == ("lmdb", "msgpack", tmp_path / "db")
        store.store_log(Log(1, 1, data=b"a"))
    marker = json.loads((tmp_path / "db" / "raftstore.json").read_text())
    assert marker["engine"] == "lmdb"


@pytest.mark.parametrize("engine", ["lmdb", "rocksdb", "leveldb"])
def test_plain_path_reopens_with_recorded_engine_and_codec(tmp_path: Path, engine: str) -> None:
    with raftstore.open(tmp_path / "db", engine=engine, codec="cbor") as store:
        store.store_log(Log(1, 4, data=b"kept"))
    with raftstore.open(str(tmp_path / "db")) as store:
        assert (store.engine, store.codec) == (engine, "cbor")
        assert store.get_log(1) == Log(1, 4, data=b"kept")
    other = "lmdb" if engine != "lmdb" else "rocksdb"
    with pytest.raises(ConfigurationError, match=f"created with engine '{engine}'"):
        raftstore.open(tmp_path / "db", engine=other)
    with pytest.raises(CodecMismatchError, match="cbor"):
        raftstore.open(tmp_path / "db", codec="msgpack")


def test_refuses_foreign_directory_and_file(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("not a store")
    with pytest.raises(ConfigurationError, match="not empty"):
        raftstore.open(tmp_path / "other")
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["precious.txt"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigurationError, match="is a file"):
        raftstore.open(tmp_path / "afile")


def test_empty_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with raftstore.open(tmp_path / "empty") as store:
        assert store.last_index() == 0


def test_read_only_and_create_false_never_create(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        raftstore.open(tmp_path / "missing", read_only=True)
    with pytest.raises(StoreNotFoundError):
        raftstore.open(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_second_writer_is_locked_out_until_close(tmp_path: Path) -> None:
    store = raftstore.open(tmp_path / "db")
    with pytest.raises(StoreLockedError, match=str(tmp_path / "db")) as info:
        raftstore.open(tmp_path / "db")
    assert f"process {os.getpid()}" in str(info.value)
    store.close()
    with raftstore.open(tmp_path / "db") as again:
        assert again.last_index() == 0


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "db"
    script = textwrap.dedent(f"""
        import sys, raftstore
        s = raftstore.open({str(path)!r})
        print("ready", flush=True)
        sys.stdin.readline()
        s.close()
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(120, child.kill)  # a stuck child ends the readline
    watchdog.start()
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=f"process {child.pid}"):
            raftstore.open(path)
        # LMDB allows readers beside a writer in another process.
        with raftstore.open(path, read_only=True) as reader:
            assert reader.last_index() == 0
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        watchdog.cancel()
        child.kill()
        child.wait(timeout=60)
    with raftstore.open(path) as store:
        assert store.first_index() == 0


def test_killed_writer_releases_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "db"
    script = f"import os, raftstore; s = raftstore.open({str(path)!r}); os.kill(os.getpid(), 9)"
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == -9
    with raftstore.open(path) as store:
        assert store.last_index() == 0


def test_read_only_handle_sees_writer_progress(tmp_path: Path) -> None:
    """Read-only handles beside a writer in this process, map growth included."""
    with raftstore.open(tmp_path / "db", sync=False, map_size=1 << 20) as writer:
        writer.store_log(Log(1, 1))
        # Same process: the read-only handle shares the writer's LMDB environment.
        with raftstore.open(tmp_path / "db", read_only=True) as reader:
            assert reader.last_index() == 1
            writer.store_logs([Log(i, 1, data=os.urandom(2048)) for i in range(2, 2000)])
            assert reader.last_index() == 1999
            assert reader.get_log(1999) == writer.get_log(1999)
        # A writer cannot join an environment this process opened read-only.
    with raftstore.open(tmp_path / "db", read_only=True) as reader:
        with pytest.raises(StoreLockedError, match="read-only"):
            raftstore.open(tmp_path / "db")
        assert reader.last_index() == 1999
        with pytest.raises(ReadOnlyError):
            reader.store_log(Log(2, 1))
        with pytest.raises(ReadOnlyError):
            reader.set(b"k", b"v")
        with pytest.raises(ReadOnlyError):
            reader.delete_range(0, 10)


def test_future_format_refuses_to_open(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "db") as store:
        meta = {"format": 99, "engine": "lmdb", "codec": "msgpack"}
        record = record_format(FORMAT_VERSION).frame(META, META_KEY, json.dumps(meta).encode())
        store.kv.write(WriteBatch(puts=[(META, META_KEY, record)]))
    with pytest.raises(UnsupportedFormatError, match="upgrade"):
        raftstore.open(tmp_path / "db")


def test_damaged_meta_record(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "db") as store:
        raw = store.kv.get(META, META_KEY)
        assert raw is not None
        damaged = raw[:-2] + bytes([raw[-2] ^ 0x01]) + raw[-1:]
        store.kv.write(WriteBatch(puts=[(META, META_KEY, damaged)]))
    with pytest.raises(CorruptionError, match="checksum"):
        raftstore.open(tmp_path / "db")
    # The failed open released its lock: trying again reports the damage, not a lock.
    with pytest.raises(CorruptionError):
        raftstore.open(tmp_path / "db")


def test_forked_child_cannot_use_inherited_store(tmp_path: Path) -> None:
    store = raftstore.open(tmp_path / "db")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            store.store_log(Log(1, 1))
            os.write(write, b"wrote")
        except StoreClosedError as exc:
            os.write(write, b"refused " + str(exc).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    message = os.read(read, 300).decode()
    os.waitpid(pid, 0)
    assert message.startswith("refused"), message
    assert "fork" in message
    store.store_log(Log(1, 1))
    assert store.last_index() == 1
    store.close()


def test_map_grows_and_batches_stay_atomic(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "db", map_size=1 << 20) as store:
        big = [Log(i, 1, data=os.urandom(4096)) for i in range(1, 1001)]
        store.store_logs(big)
        assert store.last_index() == 1000
        assert store.get_log(777) == big[776]


def test_map_size_ceiling_fails_cleanly(tmp_path: Path) -> None:
    from raftstore import StorageError

    with raftstore.open(tmp_path / "db", map_size=1 << 20, max_map_size=2 << 20) as store:
        store.store_logs([Log(1, 1, data=b"small")])
        with pytest.raises(StorageError, match="max_map_size"):
            store.store_logs([Log(i, 1, data=os.urandom(8192)) for i in range(2, 600)])
        assert (store.first_index(), store.last_index()) == (1, 1)
        assert store.get_log(1).data == b"small"
        store.store_log(Log(2, 1, data=b"after"))
    with raftstore.open(tmp_path / "db") as store:
        assert [log.data for log in store.iter_logs()] == [b"small", b"after"]


def test_compact_keeps_data(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "db", sync=False) as store:
        store.store_logs([Log(i, 1, data=b"x" * 1000) for i in range(1, 5001)])
        store.delete_range(1, 4990)
        before = store.disk_usage()
        store.compact()
        after = store.disk_usage()
        assert after < before
        assert [log.index for log in store.iter_logs()] == list(range(4991, 5001))
        store.store_log(Log(5001, 2))
    with raftstore.open(tmp_path / "db") as store:
        assert store.last_index() == 5001
