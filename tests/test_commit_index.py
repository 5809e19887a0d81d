"""Commit tracking across a crash: a commit index staged but never written is not persisted.

The conformance suite covers the contract on every engine; this is the
SIGKILL case: the writer stages a commit index, is killed before its next
``store_logs``, and the reopened store holds the last persisted value.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import raftstore
from raftstore import Log, admin

_WRITER = """
import os, signal, sys
import raftstore
from raftstore import Log
with raftstore.open(sys.argv[1], engine=sys.argv[2]) as store:
    store.store_logs([Log(i, 1) for i in range(1, 11)])
    store.stage_commit_index(5)
    store.store_logs([Log(11, 1)])
    store.stage_commit_index(11)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("engine", ["lmdb", "rocksdb", "leveldb"])
def test_a_writer_killed_between_staging_and_writing_keeps_the_persisted_index(
    engine: str, tmp_path: Path
) -> None:
    path = tmp_path / "db"
    killed = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path), engine], timeout=60, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with raftstore.open(path) as store:
        assert store.last_index() == 11
        assert store.get_commit_index() == 5


def test_migrate_copies_the_commit_index(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "source") as store:
        store.store_logs([Log(i, 1) for i in range(1, 5)])
        store.stage_commit_index(3)
        store.store_log(Log(5, 1))
    admin.migrate_store(tmp_path / "source", tmp_path / "copy", engine="rocksdb")
    with raftstore.open(tmp_path / "copy") as copy:
        assert copy.get_commit_index() == 3
        assert copy.last_index() == 5
