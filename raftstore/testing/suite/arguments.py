"""Bad arguments: each raises the documented error and changes nothing."""

from __future__ import annotations

import pytest

from raftstore.testing.harness import StoreHarness
from raftstore.testing.model import assert_store_matches
from raftstore.testing.suite.cases import BAD_CALLS, Call, SuiteSettings, entries, populated

__all__ = ["ArgumentTests"]


class ArgumentTests(SuiteSettings):
    """Every method refuses wrong-typed and out-of-range arguments without changing the store."""

    @pytest.mark.parametrize(("call", "error"), BAD_CALLS)
    def test_bad_argument_raises_and_changes_nothing(
        self, harness: StoreHarness, call: Call, error: type[Exception]
    ) -> None:
        """A wrong-typed or out-of-range argument raises the documented error; nothing changes."""
        store = harness.store
        model = populated(store, entries(1, 5))
        with pytest.raises(error):
            call(store)
        assert_store_matches(store, model, "right after the refused call")
        more = entries(6, 6)
        store.store_logs(more)
        model.store_logs(more)
        harness.verify(model)
