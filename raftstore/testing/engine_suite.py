"""The conformance suite on the engines named with ``--raftstore-engine`` (see `plugin`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import raftstore
from raftstore.registry import get_engine_class
from raftstore.testing import RaftStoreConformance


def pytest_generate_tests(metafunc: Any) -> None:
    """One run of the suite per engine named on the command line."""
    if "raftstore_engine_name" in metafunc.fixturenames:
        engines = metafunc.config.getoption("raftstore_engine")
        metafunc.parametrize("raftstore_engine_name", engines, ids=engines, scope="class")


class TestRaftStoreConformance(RaftStoreConformance):
    """The whole contract, on each engine named with ``--raftstore-engine``."""

    @pytest.fixture
    def open_store(
        self, tmp_path: Path, raftstore_engine_name: str, request: pytest.FixtureRequest
    ) -> Any:
        """Open the same store of the named engine again on every call."""
        engine_class = get_engine_class(raftstore_engine_name)
        target: Any = (
            tmp_path / "store" if engine_class.persistent else f"{raftstore_engine_name}://"
        )
        codec = request.config.getoption("raftstore_codec")

        def open_store(**options: Any) -> raftstore.RaftStore:
            options.setdefault("codec", codec)
            return raftstore.open(target, engine=raftstore_engine_name, **options)

        return open_store
