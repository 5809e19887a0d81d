"""The conformance suite against the ``wal`` engine, with every codec.

Segments are kept small so the scenarios rotate through many of them, and
truncations cross segment boundaries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_support import EveryCodec, store_opener

from raftstore.testing import OpenStore, RaftStoreConformance

#: Small segments: most scenarios rotate, seal and drop several.
SMALL_SEGMENT = 16 * 1024


class TestWalEngine(EveryCodec, RaftStoreConformance):
    """``wal://`` in a temporary directory: persistent, monotonic, locking."""

    @pytest.fixture
    def open_store(self, tmp_path: Path, codec: str) -> OpenStore:
        """Open the store in ``tmp_path/db`` with this run's codec unless one is given."""
        return store_opener(tmp_path / "db", codec, engine="wal", segment_size=SMALL_SEGMENT)
