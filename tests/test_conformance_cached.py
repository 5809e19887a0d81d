"""The conformance suite against `raftstore.LogCache` in front of real stores.

A small ring (16 entries) so that every scenario fills, evicts and
invalidates it: the cached store must keep the whole contract, not only the
happy path of the newest entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import raftstore
from raftstore.testing import OpenStore, RaftStoreConformance

CAPACITY = 16


def cached_opener(target: str | Path, **defaults: Any) -> OpenStore:
    """An ``open_store`` that opens *target* again and wraps it in a `LogCache`."""

    def open_store(**options: Any) -> raftstore.LogCache:
        return raftstore.LogCache(raftstore.open(target, **{**defaults, **options}), CAPACITY)

    return open_store


class TestCachedMemory(RaftStoreConformance):
    """``memory://`` behind a 16-entry `LogCache`."""

    @pytest.fixture
    def open_store(self) -> OpenStore:
        """A fresh cached in-memory store."""
        return cached_opener("memory://")


class TestCachedLmdb(RaftStoreConformance):
    """``lmdb://`` behind a 16-entry `LogCache`: reopen, read-only and locking included."""

    @pytest.fixture
    def open_store(self, tmp_path: Path) -> OpenStore:
        """The cached LMDB store in ``tmp_path/db``."""
        return cached_opener(tmp_path / "db", engine="lmdb")


class TestCachedRocksDB(RaftStoreConformance):
    """``rocksdb://`` behind a 16-entry `LogCache`."""

    @pytest.fixture
    def open_store(self, tmp_path: Path) -> OpenStore:
        """The cached RocksDB store in ``tmp_path/db``."""
        pytest.importorskip("rocksdict", reason="the rocksdb engine needs raftstore[rocksdb]")
        return cached_opener(tmp_path / "db", engine="rocksdb")
