"""The conformance suite's tests, one topic mixin per module (as in SQLAlchemy's testing/suite).

`raftstore.testing.RaftStoreConformance` combines every mixin here with the
``open_store``, ``capabilities`` and ``harness`` fixtures; subclass that, not
the mixins. A mixin alone is never collected: its name does not start with
``Test``. A new test goes into the mixin of its topic; a new topic is a new
module here, its mixin listed in `RaftStoreConformance`'s bases. What the
modules share (entry builders, data tables, scenario sizes) is in `cases`.
"""

from __future__ import annotations

from raftstore.testing.suite.access import AccessTests
from raftstore.testing.suite.arguments import ArgumentTests
from raftstore.testing.suite.batches import BatchTests
from raftstore.testing.suite.cases import SuiteSettings
from raftstore.testing.suite.commit import CommitTrackingTests
from raftstore.testing.suite.delete_range import DeleteRangeTests
from raftstore.testing.suite.lifecycle import LifecycleTests
from raftstore.testing.suite.logs import LogTests
from raftstore.testing.suite.stable import StableTests
from raftstore.testing.suite.state_machine import StateMachineTests
from raftstore.testing.suite.threads import ThreadTests

__all__ = [
    "AccessTests",
    "ArgumentTests",
    "BatchTests",
    "CommitTrackingTests",
    "DeleteRangeTests",
    "LifecycleTests",
    "LogTests",
    "StableTests",
    "StateMachineTests",
    "SuiteSettings",
    "ThreadTests",
]
