"""The model-based state machine: random operations against a plain-dict model."""

from __future__ import annotations

from raftstore.testing.harness import StoreHarness
from raftstore.testing.machine import run_store_state_machine
from raftstore.testing.suite.cases import SuiteSettings

__all__ = ["StateMachineTests"]


class StateMachineTests(SuiteSettings):
    """Hypothesis drives the store and `raftstore.testing.model.StoreModel` side by side."""

    def test_state_machine(self, harness: StoreHarness) -> None:
        """Random operations keep the store equal to a dict model after every step."""
        run_store_state_machine(harness, self.state_machine_settings)
