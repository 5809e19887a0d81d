"""The conformance suite against the LevelDB engine, with every codec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import raftstore
from raftstore.testing import OpenStore, RaftStoreConformance

CODECS = ["msgpack", "pickle", "cbor"]

#: LevelDB's smallest memtable, so the large scenarios flush to table files
#: and reopen reads them back rather than only replaying LevelDB's log.
SMALL_WRITE_BUFFER = 64 * 1024


class TestLevelDBEngine(RaftStoreConformance):
    """``leveldb://`` in a temporary directory: persistent, emulated read-only, locking."""

    @pytest.fixture(params=CODECS)
    def codec(self, request: pytest.FixtureRequest) -> str:
        """The codec the store is created with (each test runs once per codec)."""
        codec: str = request.param
        return codec

    @pytest.fixture
    def open_store(self, tmp_path: Path, codec: str) -> OpenStore:
        """Open the store in ``tmp_path/db`` with this run's codec unless one is given."""

        def open_leveldb_store(**options: Any) -> raftstore.RaftStore:
            options.setdefault("codec", codec)
            options.setdefault("write_buffer_size", SMALL_WRITE_BUFFER)
            return raftstore.open(tmp_path / "db", engine="leveldb", **options)

        return open_leveldb_store
