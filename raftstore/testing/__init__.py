"""The raftstore conformance suite, shipped so any engine can prove it keeps the contract.

Subclass `RaftStoreConformance` in a test module and override the
``open_store`` fixture; each call must open the same store again::

    import pytest
    import raftstore
    from raftstore.testing import RaftStoreConformance

    class TestMyEngine(RaftStoreConformance):
        @pytest.fixture
        def open_store(self, tmp_path):
            return lambda **kw: raftstore.open(tmp_path / "db", engine="myengine", **kw)

Needs pytest and Hypothesis (``pip install 'raftstore[test]'``). Importing
this package does not happen at ``import raftstore`` time.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401  - checked here so the error names the extra
    import pytest
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"raftstore.testing needs pytest and hypothesis ({exc.name} is missing):"
        " pip install 'raftstore[test]'"
    ) from exc

# Rewrite the suite's asserts so failures show the compared values; this has
# to happen before the submodules are imported.
pytest.register_assert_rewrite(
    "raftstore.testing.conformance",
    "raftstore.testing.harness",
    "raftstore.testing.machine",
    "raftstore.testing.model",
)

from raftstore.testing.conformance import (  # noqa: E402
    BOUNDARY_PAIRS,
    RaftStoreConformance,
    entries,
    payload,
)
from raftstore.testing.harness import OpenStore, StoreHarness, StoreUnderTest  # noqa: E402
from raftstore.testing.machine import run_store_state_machine  # noqa: E402
from raftstore.testing.model import StoreModel, assert_store_matches  # noqa: E402

__all__ = [
    "BOUNDARY_PAIRS",
    "OpenStore",
    "RaftStoreConformance",
    "StoreHarness",
    "StoreModel",
    "StoreUnderTest",
    "assert_store_matches",
    "entries",
    "payload",
    "run_store_state_machine",
]
