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

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raftstore.testing.conformance import (
        BOUNDARY_PAIRS,
        RaftStoreConformance,
        entries,
        payload,
    )
    from raftstore.testing.harness import OpenStore, StoreHarness, StoreUnderTest
    from raftstore.testing.machine import run_store_state_machine
    from raftstore.testing.model import StoreModel, assert_store_matches

_SUBMODULE_OF = {
    "BOUNDARY_PAIRS": "conformance",
    "RaftStoreConformance": "conformance",
    "entries": "conformance",
    "payload": "conformance",
    "OpenStore": "harness",
    "StoreHarness": "harness",
    "StoreUnderTest": "harness",
    "run_store_state_machine": "machine",
    "StoreModel": "model",
    "assert_store_matches": "model",
}


def _rewrite_asserts(pytest: Any) -> None:
    """Have pytest rewrite the suite's asserts (must happen before they are imported)."""
    pytest.register_assert_rewrite(
        "raftstore.testing.conformance",
        "raftstore.testing.harness",
        "raftstore.testing.machine",
        "raftstore.testing.model",
        "raftstore.testing.suite",
    )


# Under pytest, register at once: a test module may import a submodule
# directly rather than through the names below.
if "pytest" in sys.modules:
    _rewrite_asserts(sys.modules["pytest"])


def __getattr__(name: str) -> Any:
    """Import the suite on first use, so `raftstore.testing.faults` needs no pytest."""
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module 'raftstore.testing' has no attribute {name!r}")
    try:
        import hypothesis  # noqa: F401  - checked here so the error names the extra
        import pytest
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"raftstore.testing needs pytest and hypothesis ({exc.name} is missing):"
            " pip install 'raftstore[test]'"
        ) from exc
    _rewrite_asserts(pytest)
    import importlib

    value = getattr(importlib.import_module(f"raftstore.testing.{submodule}"), name)
    globals()[name] = value
    return value


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
