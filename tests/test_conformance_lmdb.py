"""The conformance suite against the LMDB engine, with every codec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import raftstore
from raftstore.testing import OpenStore, RaftStoreConformance

CODECS = ["msgpack", "pickle", "cbor"]

#: LMDB's smallest map, so the large-batch scenarios make the engine grow it
#: mid-batch (LMDB's classic default was 10 MiB; raftstore starts bigger).
SMALL_MAP_SIZE = 1024 * 1024


class TestLmdbEngine(RaftStoreConformance):
    """``lmdb://`` in a temporary directory: persistent, read-only opens, locking."""

    @pytest.fixture(params=CODECS)
    def codec(self, request: pytest.FixtureRequest) -> str:
        """The codec the store is created with (each test runs once per codec)."""
        codec: str = request.param
        return codec

    @pytest.fixture
    def open_store(self, tmp_path: Path, codec: str) -> OpenStore:
        """Open the store in ``tmp_path/db`` with this run's codec unless one is given."""

        def open_lmdb_store(**options: Any) -> raftstore.RaftStore:
            options.setdefault("codec", codec)
            options.setdefault("map_size", SMALL_MAP_SIZE)
            return raftstore.open(tmp_path / "db", engine="lmdb", **options)

        return open_lmdb_store
