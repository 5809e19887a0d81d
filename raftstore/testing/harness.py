"""The per-test helper of the conformance suite: open, reopen, verify, skip.

`StoreHarness` owns every handle a test opens (and closes them when the test
ends), knows the store's `Capabilities`, and implements "check the store
against the model, then reopen and check again" for persistent stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest

from raftstore.protocols import Capabilities, RaftStoreProtocol
from raftstore.testing.model import StoreModel, assert_store_matches

__all__ = ["OpenStore", "StoreHarness", "StoreUnderTest"]

Capability = Literal["persistent", "monotonic", "read_only", "concurrent_readers", "locking"]


#: What the suite drives: any store with the whole `RaftStoreProtocol`.
StoreUnderTest = RaftStoreProtocol


#: The ``open_store`` fixture's value: ``open_store(**kw)`` opens the store under
#: test again (keywords at least ``codec``, ``sync``, ``read_only``).
OpenStore = Callable[..., StoreUnderTest]

_WHAT_IT_MEANS: dict[Capability, str] = {
    "persistent": "data does not survive close and reopen",
    "monotonic": "the store allows gaps and overwrites",
    "read_only": "read_only=True opens are not supported",
    "concurrent_readers": "a read-only handle cannot be open beside a writer",
    "locking": "a second writer open is not refused",
}


class StoreHarness:
    """Opens handles on the store under test, tracks them and compares with a model.

    ``store`` is the test's main handle, opened on first use; `reopen`
    replaces it. Every handle opened through the harness is closed when the
    test ends.
    """

    def __init__(self, open_store: OpenStore, capabilities: Capabilities) -> None:
        """Wrap the subclass's *open_store* and the store's *capabilities*."""
        self._open_store = open_store
        self.capabilities = capabilities
        self._handles: list[StoreUnderTest] = []
        self._main: StoreUnderTest | None = None

    def open(self, **options: Any) -> StoreUnderTest:
        """Open another handle (closed at the end of the test); *options* go to ``open_store``."""
        handle = self._open_store(**options)
        self._handles.append(handle)
        return handle

    @property
    def store(self) -> StoreUnderTest:
        """The main handle, opened with ``open_store()`` on first use."""
        if self._main is None:
            self._main = self.open()
        return self._main

    def reopen(self, **options: Any) -> StoreUnderTest:
        """Close the main handle and open a new one with *options*; return it."""
        if self._main is not None:
            self._main.close()
        self._main = None
        self._main = self.open(**options)
        return self._main

    def require(self, capability: Capability) -> None:
        """Skip the calling test unless the store has *capability*."""
        if not getattr(self.capabilities, capability):
            pytest.skip(f"needs capabilities.{capability}: {_WHAT_IT_MEANS[capability]}")

    def forbid(self, capability: Capability, reason: str) -> None:
        """Skip the calling test when the store has *capability* (*reason* says why)."""
        if getattr(self.capabilities, capability):
            pytest.skip(f"not for stores with capabilities.{capability}: {reason}")

    def verify(self, model: StoreModel, where: str = "") -> StoreUnderTest:
        """Check the main handle against *model*; for persistent stores reopen and check again.

        When the main handle was closed (or opened read-only) by the test, a
        persistent store is reopened first. Returns the (possibly new) main handle.
        """
        main = self._main
        if main is not None and (main.closed or getattr(main, "read_only", False)):
            assert self.capabilities.persistent, "verify() after close needs a persistent store"
            self.reopen()
        assert_store_matches(self.store, model, where)
        if self.capabilities.persistent:
            label = f"{where}, after reopen" if where else "after reopen"
            assert_store_matches(self.reopen(), model, label)
        return self.store

    def close_all(self) -> None:
        """Close every handle the test opened (close is idempotent)."""
        for handle in reversed(self._handles):
            handle.close()
        self._handles.clear()
        self._main = None
