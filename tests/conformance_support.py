"""What the per-engine conformance modules share: every codec, and how a store is opened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import raftstore
from raftstore.testing import OpenStore

CODECS = ["msgpack", "pickle", "cbor"]


class EveryCodec:
    """Mixin for a `RaftStoreConformance` subclass: each test runs once per codec."""

    @pytest.fixture(params=CODECS)
    def codec(self, request: pytest.FixtureRequest) -> str:
        """The codec the store is created with (each test runs once per codec)."""
        codec: str = request.param
        return codec


def store_opener(target: str | Path, codec: str, **defaults: Any) -> OpenStore:
    """Return an ``open_store`` that opens *target* again on every call.

    The store is opened with *codec* and the *defaults* (``engine`` among
    them), each unless the call gives its own.
    """

    def open_store(**options: Any) -> raftstore.RaftStore:
        return raftstore.open(target, **{"codec": codec, **defaults, **options})

    return open_store
