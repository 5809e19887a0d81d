"""`RaftStoreConformance`: the contract of DESIGN §3, §4 and §6 as pytest tests.

Subclass it in a test module and override the ``open_store`` fixture; every
test then runs against your store. Tests that need a capability your store
does not declare (persistence, read-only opens, locking; or the absence of
monotonicity) are skipped with the reason. Every scenario ends by comparing
the store with a plain-dict model, and for persistent stores by closing,
reopening and comparing again.

This module holds the hooks; the tests live in `raftstore.testing.suite`,
one mixin per topic.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raftstore.protocols import Capabilities
from raftstore.testing.harness import OpenStore, StoreHarness
from raftstore.testing.model import BOUNDARY_PAIRS
from raftstore.testing.suite import (
    AccessTests,
    ArgumentTests,
    BatchTests,
    CommitTrackingTests,
    DeleteRangeTests,
    LifecycleTests,
    LogTests,
    StableTests,
    StateMachineTests,
    ThreadTests,
)
from raftstore.testing.suite.cases import entries, payload

__all__ = ["BOUNDARY_PAIRS", "RaftStoreConformance", "entries", "payload"]


class ConformanceHooks:
    """The fixtures every test of the suite builds on; `open_store` must be overridden."""

    @pytest.fixture
    def open_store(self) -> OpenStore:
        """Return ``open_store(**kw)`` opening the store under test; subclasses must override it."""
        pytest.fail(
            f"{type(self).__name__} subclasses RaftStoreConformance but does not override the"
            " `open_store` fixture. Define it as a method of the class (a fixture of the same"
            " name in a conftest.py is shadowed by this one), e.g.\n\n"
            "    @pytest.fixture\n"
            "    def open_store(self, tmp_path):\n"
            "        return lambda **kw: raftstore.open(\n"
            "            tmp_path / 'db', engine='myengine', **kw)\n",
            pytrace=False,
        )

    @pytest.fixture
    def capabilities(self, open_store: OpenStore) -> Capabilities:
        """The store's `Capabilities`, read from a freshly opened handle's ``capabilities``."""
        store = open_store()
        try:
            declared = getattr(store, "capabilities", None)
        finally:
            store.close()
        if not isinstance(declared, Capabilities):
            pytest.fail(
                f"{type(store).__name__} has no `capabilities` attribute holding a"
                " raftstore.Capabilities; add one, or override the `capabilities` fixture",
                pytrace=False,
            )
        return declared

    @pytest.fixture
    def harness(self, open_store: OpenStore, capabilities: Capabilities) -> Iterator[StoreHarness]:
        """A `StoreHarness` over the store; closes every handle the test opened."""
        harness = StoreHarness(open_store, capabilities)
        yield harness
        harness.close_all()


# pytest runs the tests of base classes in reverse MRO order, so the topics
# below run bottom-up: the logs first, the state machine last.
class RaftStoreConformance(
    ConformanceHooks,
    StateMachineTests,
    CommitTrackingTests,
    ArgumentTests,
    ThreadTests,
    AccessTests,
    LifecycleTests,
    StableTests,
    BatchTests,
    DeleteRangeTests,
    LogTests,
):
    """The conformance suite: subclass it and override the ``open_store`` fixture.

    ``open_store(**kw)`` must open the same store again on every call (after
    the previous handle was closed) and accept at least ``codec``, ``sync``
    and ``read_only``. Capabilities come from the opened store's
    ``capabilities`` attribute; override the ``capabilities`` fixture for a
    store that has none. Class attributes size the heavy scenarios
    (``large_prefix_count``, ``large_batch_count``, ``large_batch_entry_size``,
    ``concurrent_batches``, ``concurrent_readers``, ``reader_max_ops``,
    ``state_machine_settings``: see `raftstore.testing.suite.cases.SuiteSettings`);
    override any of them in the subclass.
    """
