"""The conformance suite against the RocksDB engine, with every codec."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_support import EveryCodec, store_opener

from raftstore.testing import OpenStore, RaftStoreConformance

#: RocksDB's smallest memtable, so the large scenarios flush to table files
#: and reopen reads them back rather than only replaying the write-ahead log.
SMALL_WRITE_BUFFER = 64 * 1024


class TestRocksDBEngine(EveryCodec, RaftStoreConformance):
    """``rocksdb://`` in a temporary directory: persistent, read-only opens, locking."""

    @pytest.fixture
    def open_store(self, tmp_path: Path, codec: str) -> OpenStore:
        """Open the store in ``tmp_path/db`` with this run's codec unless one is given."""
        return store_opener(
            tmp_path / "db", codec, engine="rocksdb", write_buffer_size=SMALL_WRITE_BUFFER
        )
