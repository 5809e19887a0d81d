"""The conformance suite against the in-memory engine, with every codec."""

from __future__ import annotations

from typing import Any

import pytest

import raftstore
from raftstore.testing import OpenStore, RaftStoreConformance

CODECS = ["msgpack", "pickle", "cbor"]


class TestMemoryEngine(RaftStoreConformance):
    """``memory://``: not persistent, so every open starts empty and reopen tests are skipped."""

    @pytest.fixture(params=CODECS)
    def codec(self, request: pytest.FixtureRequest) -> str:
        """The codec the store is opened with (each test runs once per codec)."""
        codec: str = request.param
        return codec

    @pytest.fixture
    def open_store(self, codec: str) -> OpenStore:
        """Open a fresh in-memory store with this run's codec unless one is given."""

        def open_memory_store(**options: Any) -> raftstore.RaftStore:
            options.setdefault("codec", codec)
            return raftstore.open("memory://", **options)

        return open_memory_store
