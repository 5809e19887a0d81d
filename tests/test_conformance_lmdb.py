"""The conformance suite against the LMDB engine, with every codec."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_support import EveryCodec, store_opener

from raftstore.testing import OpenStore, RaftStoreConformance

#: LMDB's smallest map, so the large-batch scenarios make the engine grow it
#: mid-batch (LMDB's classic default was 10 MiB; raftstore starts bigger).
SMALL_MAP_SIZE = 1024 * 1024


class TestLmdbEngine(EveryCodec, RaftStoreConformance):
    """``lmdb://`` in a temporary directory: persistent, read-only opens, locking."""

    @pytest.fixture
    def open_store(self, tmp_path: Path, codec: str) -> OpenStore:
        """Open the store in ``tmp_path/db`` with this run's codec unless one is given."""
        return store_opener(tmp_path / "db", codec, engine="lmdb", map_size=SMALL_MAP_SIZE)
