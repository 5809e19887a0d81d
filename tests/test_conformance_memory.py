"""The conformance suite against the in-memory engine, with every codec."""

from __future__ import annotations

import pytest
from conformance_support import EveryCodec, store_opener

from raftstore.testing import OpenStore, RaftStoreConformance


class TestMemoryEngine(EveryCodec, RaftStoreConformance):
    """``memory://``: not persistent, so every open starts empty and reopen tests are skipped."""

    @pytest.fixture
    def open_store(self, codec: str) -> OpenStore:
        """Open a fresh in-memory store with this run's codec unless one is given."""
        return store_opener("memory://", codec)
