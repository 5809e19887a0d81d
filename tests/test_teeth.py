"""The conformance suite has teeth: it fails stores that break one rule each.

Every broken store is a small proxy over a real LMDB store that breaks
exactly one rule of the contract (most of them after a bug a Go Raft store
really shipped). The suite runs against each proxy in a pytester sandbox and
must report failures, among them the scenario aimed at that rule. A control
proxy that breaks nothing must pass the whole suite, so the failures come
from the breakage and not from the proxy.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest

import raftstore
from raftstore import (
    Capabilities,
    InvalidArgumentError,
    InvalidLogError,
    Log,
    LogNotFoundError,
    RaftStore,
)
from raftstore.testing import OpenStore, StoreUnderTest

pytest_plugins = ["pytester"]

MASK_32 = 2**32 - 1


class PassthroughStore:
    """Forwards everything to a real store; each broken proxy overrides one thing."""

    def __init__(self, inner: RaftStore) -> None:
        """Wrap an opened store."""
        self.inner = inner

    @property
    def engine(self) -> str:
        """The wrapped store's engine name."""
        return self.inner.engine

    @property
    def codec(self) -> str:
        """The wrapped store's codec name."""
        return self.inner.codec

    @property
    def path(self) -> Path | None:
        """The wrapped store's path."""
        return self.inner.path

    @property
    def closed(self) -> bool:
        """Whether the wrapped store is closed."""
        return self.inner.closed

    @property
    def read_only(self) -> bool:
        """Whether the wrapped store was opened read-only."""
        return self.inner.read_only

    @property
    def is_monotonic(self) -> bool:
        """The wrapped store's monotonicity."""
        return self.inner.is_monotonic

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped store's capabilities."""
        return self.inner.capabilities

    def first_index(self) -> int:
        """Forwarded."""
        return self.inner.first_index()

    def last_index(self) -> int:
        """Forwarded."""
        return self.inner.last_index()

    def get_log(self, index: int) -> Log:
        """Forwarded."""
        return self.inner.get_log(index)

    def store_log(self, log: Log) -> None:
        """Same as ``store_logs([log])``, through this proxy's store_logs."""
        self.store_logs([log])

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Forwarded."""
        self.inner.store_logs(logs)

    def delete_range(self, min_index: int, max_index: int) -> None:
        """Forwarded."""
        self.inner.delete_range(min_index, max_index)

    def set(self, key: bytes, value: bytes) -> None:
        """Forwarded."""
        self.inner.set(key, value)

    def get(self, key: bytes) -> bytes | None:
        """Forwarded."""
        return self.inner.get(key)

    def set_uint64(self, key: bytes, value: int) -> None:
        """Forwarded."""
        self.inner.set_uint64(key, value)

    def get_uint64(self, key: bytes) -> int:
        """Forwarded."""
        return self.inner.get_uint64(key)

    def iter_logs(self, low: int = 1, high: int = 2**64 - 1) -> Iterator[Log]:
        """Forwarded."""
        return self.inner.iter_logs(low, high)

    def sync(self) -> None:
        """Forwarded."""
        self.inner.sync()

    def close(self) -> None:
        """Forwarded."""
        self.inner.close()

    def __enter__(self) -> Self:
        """The proxy itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close through the proxy."""
        self.close()


class ExclusiveDeleteEnd(PassthroughStore):
    """delete_range treats max_index as exclusive (RocksDB's native delete_range)."""

    def delete_range(self, min_index: int, max_index: int) -> None:
        """Deletes ``min_index .. max_index - 1``."""
        if type(min_index) is int and type(max_index) is int and 0 <= min_index < max_index < 2**64:
            self.inner.delete_range(min_index, max_index - 1)
        else:
            self.inner.delete_range(min_index, max_index)  # errors and no-ops as before


class TruncatedUint64(PassthroughStore):
    """set_uint64 keeps only the low 32 bits."""

    def set_uint64(self, key: bytes, value: int) -> None:
        """Stores ``value & 0xFFFFFFFF`` (after the store checked the value)."""
        self.inner.set_uint64(key, value)
        self.inner.set_uint64(key, value & MASK_32)


class NonAtomicBatch(PassthroughStore):
    """store_logs writes entries one at a time, so a bad item mid-batch leaves a prefix."""

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Stores each entry of a list with its own write."""
        if not isinstance(logs, list) or not logs:
            self.inner.store_logs(logs)  # odd arguments and no-ops as before
            return
        for log in logs:
            self.inner.store_logs([log])


class DroppedEntryInLargeBatch(PassthroughStore):
    """store_logs splits batches in chunks of 256 and skips the first entry of each later chunk.

    The Go badger store's batch splitting did exactly this.
    """

    chunk = 256

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Stores a list minus the entries at positions 256, 512, ..."""
        if not isinstance(logs, list):
            self.inner.store_logs(logs)  # odd arguments as before
            return
        self.inner.store_logs(
            [log for position, log in enumerate(logs) if position == 0 or position % self.chunk]
        )


class EmptyFirstIndexOne(PassthroughStore):
    """first_index of an empty store is 1, not 0."""

    def first_index(self) -> int:
        """1 when the store is empty."""
        return self.inner.first_index() or 1


class MissingKeyEmptyBytes(PassthroughStore):
    """get of a missing stable key returns b"" instead of None."""

    def get(self, key: bytes) -> bytes | None:
        """b"" for an absent key."""
        value = self.inner.get(key)
        return b"" if value is None else value


class MissingLogNone(PassthroughStore):
    """get_log of a missing index returns None instead of raising LogNotFoundError."""

    def get_log(self, index: int) -> Log:
        """None for an absent index."""
        try:
            return self.inner.get_log(index)
        except LogNotFoundError:
            return None  # type: ignore[return-value]


class StableNotPersisted(PassthroughStore):
    """Stable values live in a dict in the proxy, so they vanish on reopen."""

    def __init__(self, inner: RaftStore) -> None:
        """Wrap *inner* with an empty in-memory stable store."""
        super().__init__(inner)
        self.values: dict[bytes, bytes] = {}

    def _check(self, key: bytes) -> bytes:
        if self.inner.closed:
            self.inner.get(key)  # raises StoreClosedError
        if type(key) is not bytes:
            raise InvalidArgumentError(f"stable key must be bytes, got {type(key).__name__}")
        return key

    def set(self, key: bytes, value: bytes) -> None:
        """Keeps *value* in the proxy only."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(f"stable value must be bytes, got {type(value).__name__}")
        self.values[self._check(key)] = bytes(value)

    def get(self, key: bytes) -> bytes | None:
        """Reads the proxy's dict."""
        return self.values.get(self._check(key))

    def set_uint64(self, key: bytes, value: int) -> None:
        """Keeps *value* in the proxy only."""
        if type(value) is not int or not 0 <= value < 2**64:
            raise InvalidArgumentError(f"uint64 value out of range: {value!r}")
        self.values[self._check(key)] = value.to_bytes(8, "big")

    def get_uint64(self, key: bytes) -> int:
        """Reads the proxy's dict."""
        value = self.values.get(self._check(key))
        if value is None:
            return 0
        if len(value) != 8:
            raise raftstore.CorruptionError(f"{len(value)} bytes is not a uint64")
        return int.from_bytes(value, "big")


class NoErrorAfterClose(PassthroughStore):
    """After close every call quietly goes to a fresh in-memory store instead of raising."""

    was_closed = False

    def close(self) -> None:
        """Closes the real store, then swaps in an in-memory one."""
        if not self.was_closed:
            self.inner.close()
            self.inner = raftstore.open("memory://")
            self.was_closed = True

    @property
    def closed(self) -> bool:
        """Reports the close honestly; only the calls made afterwards are wrong."""
        return self.was_closed


class StaleLastIndex(PassthroughStore):
    """last_index is cached and only raised by store_logs: a suffix delete leaves it stale."""

    def __init__(self, inner: RaftStore) -> None:
        """Wrap *inner*, caching its last index."""
        super().__init__(inner)
        self.last = inner.last_index()

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Forwarded; raises the cached last index."""
        self.inner.store_logs(logs)
        if isinstance(logs, list) and logs:
            self.last = max(self.last, *(log.index for log in logs))

    def last_index(self) -> int:
        """The cached value."""
        self.inner.last_index()  # keeps the closed check
        return self.last


class MonotonicOnly(PassthroughStore):
    """A correct monotonic store: appends only after the last index, truncates only at the ends.

    Not broken: the suite must pass it, skipping the gap and overwrite scenarios.
    """

    @property
    def is_monotonic(self) -> bool:
        """True."""
        return True

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped store's capabilities, monotonic."""
        return dataclasses.replace(self.inner.capabilities, monotonic=True)

    def store_logs(self, logs: Iterable[Log]) -> None:
        """Refuses a batch that does not continue the log (any start when the log is empty)."""
        if isinstance(logs, list) and logs and all(type(log) is Log for log in logs):
            indexes = [log.index for log in logs]
            start = self.inner.last_index() + 1 if self.inner.last_index() else indexes[0]
            if indexes != list(range(start, start + len(indexes))):
                raise InvalidLogError(
                    f"monotonic store: batch {indexes[:5]}... must start at {start}"
                )
        self.inner.store_logs(logs)

    def delete_range(self, min_index: int, max_index: int) -> None:
        """Refuses a range that would leave entries on both sides of it."""
        if type(min_index) is int and type(max_index) is int and min_index <= max_index:
            first, last = self.inner.first_index(), self.inner.last_index()
            if first and min_index > first and max_index < last:
                raise InvalidArgumentError("monotonic store: truncate at the head or the tail only")
        self.inner.delete_range(min_index, max_index)


PROXIES: dict[str, type[PassthroughStore]] = {
    proxy.__name__: proxy
    for proxy in (
        PassthroughStore,
        ExclusiveDeleteEnd,
        TruncatedUint64,
        NonAtomicBatch,
        DroppedEntryInLargeBatch,
        EmptyFirstIndexOne,
        MissingKeyEmptyBytes,
        MissingLogNone,
        StableNotPersisted,
        NoErrorAfterClose,
        StaleLastIndex,
        MonotonicOnly,
    )
}

#: For each broken proxy, a scenario aimed at the rule it breaks (it must fail),
#: and whether the random state machine must catch it too.
EXPECTED: dict[str, tuple[str, bool]] = {
    "ExclusiveDeleteEnd": ("test_delete_range_is_inclusive_at_both_ends", True),
    "TruncatedUint64": ("test_uint64_round_trips", True),
    "NonAtomicBatch": ("test_bad_item_mid_batch_stores_nothing", True),
    "DroppedEntryInLargeBatch": ("test_large_batch_is_atomic_and_complete", False),
    "EmptyFirstIndexOne": ("test_empty_store", True),
    "MissingKeyEmptyBytes": ("test_get_of_a_missing_key_is_none_not_empty", True),
    "MissingLogNone": ("test_empty_store", True),
    "StableNotPersisted": ("test_reopen_keeps_everything", True),
    "NoErrorAfterClose": ("test_every_method_after_close_raises", False),
    "StaleLastIndex": ("test_new_term_after_suffix_delete", True),
}


def opener(proxy_name: str, directory: Path) -> OpenStore:
    """``open_store`` for the sandboxed suite: an LMDB store in *directory* behind a proxy."""
    proxy = PROXIES[proxy_name]

    def open_proxied(**options: Any) -> StoreUnderTest:
        options.setdefault("codec", "msgpack")
        options.setdefault("sync", False)  # no fsync: the rules broken here are not durability
        return proxy(raftstore.open(directory / "db", engine="lmdb", **options))

    return open_proxied


SANDBOX_SUITE = """
import sys

import pytest
from hypothesis import HealthCheck, Phase, settings

from raftstore.testing import RaftStoreConformance

teeth = sys.modules[{module!r}]


class TestProxiedStore(RaftStoreConformance):
    large_prefix_count = 1_500
    large_batch_count = 600
    large_batch_entry_size = 2048
    concurrent_batches = 25
    reader_max_ops = 2_000
    state_machine_settings = settings(
        max_examples=15,
        stateful_step_count=20,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )

    @pytest.fixture
    def open_store(self, tmp_path):
        return teeth.opener({proxy!r}, tmp_path)
"""


@dataclasses.dataclass
class Outcome:
    """Names of the tests (without parameters) that failed, passed and were skipped."""

    failed: set[str]
    passed: set[str]
    skipped: set[str]


def run_suite(pytester: pytest.Pytester, proxy: str) -> Outcome:
    """Run the whole suite in a sandbox against *proxy* and sort its tests by outcome."""
    pytester.makepyfile(SANDBOX_SUITE.format(module=__name__, proxy=proxy))
    recorder = pytester.inline_run("-p", "no:cacheprovider", "-q", "--tb=no")
    passed, skipped, failed = recorder.listoutcomes()

    def names(reports: Iterable[Any]) -> set[str]:
        return {report.nodeid.rsplit("::", 1)[-1].split("[", 1)[0] for report in reports}

    return Outcome(names(failed), names(passed), names(skipped))


def test_control_proxy_passes_the_whole_suite(pytester: pytest.Pytester) -> None:
    """The suite passes a proxy that breaks nothing, so the failures below come from breakage."""
    outcome = run_suite(pytester, "PassthroughStore")
    assert outcome.failed == set()
    assert {"test_state_machine", "test_empty_store", "test_reopen_keeps_everything"} <= (
        outcome.passed
    )


def test_correct_monotonic_store_passes(pytester: pytest.Pytester) -> None:
    """A monotonic store passes: gap and overwrite scenarios are skipped, not demanded."""
    outcome = run_suite(pytester, "MonotonicOnly")
    assert outcome.failed == set()
    assert {"test_gaps_are_allowed", "test_overwrite_replaces_entries"} <= outcome.skipped
    assert {"test_state_machine", "test_new_term_after_suffix_delete"} <= outcome.passed


@pytest.mark.parametrize("proxy", sorted(EXPECTED))
def test_suite_fails_a_broken_store(pytester: pytest.Pytester, proxy: str) -> None:
    """The suite fails each broken proxy, in the scenario aimed at the rule it breaks."""
    failed = run_suite(pytester, proxy).failed
    aimed, machine_catches = EXPECTED[proxy]
    assert aimed in failed, f"{proxy}: {aimed} passed; failures: {sorted(failed)}"
    if machine_catches:
        assert "test_state_machine" in failed, f"{proxy}: the state machine missed it"


FORGETFUL_SUITE = textwrap.dedent(
    """
    from raftstore.testing import RaftStoreConformance


    class TestForgetful(RaftStoreConformance):
        pass
    """
)


def test_subclass_without_open_store_fails_loudly(pytester: pytest.Pytester) -> None:
    """A subclass that forgets open_store fails every test with a message saying what to do."""
    pytester.makepyfile(FORGETFUL_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) > 50
    assert "passed" not in outcomes
    assert "skipped" not in outcomes
    result.stdout.fnmatch_lines(["*TestForgetful*does not override the `open_store` fixture*"])


def test_base_class_is_not_collected(pytester: pytest.Pytester) -> None:
    """Importing RaftStoreConformance into a test module does not run it on its own."""
    pytester.makepyfile("from raftstore.testing import RaftStoreConformance\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
