"""The store a ``metrics=`` collector is attached to: `RaftStore`, timed and counted.

A subclass rather than checks inside `RaftStore`, so a store opened without
metrics runs exactly the code it ran before: no clock reads, no calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from raftstore.log import MAX_UINT64, Log
from raftstore.metrics import MetricsCollector
from raftstore.store import RaftStore

__all__ = ["MeteredStore"]

_clock = time.perf_counter


def _size(log: Log) -> int:
    return len(log.data) + len(log.extensions)


class MeteredStore(RaftStore):
    """A `RaftStore` that reports every operation to a `MetricsCollector`."""

    __slots__ = ("_metrics",)

    def __init__(self, *args: Any, metrics: MetricsCollector, **kwargs: Any) -> None:
        """Wrap an opened engine as `RaftStore` does; report to *metrics*."""
        self._metrics = metrics
        super().__init__(*args, **kwargs)
        self._counts.update(entries_read=0, bytes_read=0, stable_gets=0)

    def _bounds_gauges(self) -> None:
        metrics = self._metrics
        metrics.gauge("first_index", self._first)
        metrics.gauge("last_index", self._last)

    def get_log(self, index: int) -> Log:
        """`RaftStore.get_log`, timed and counted."""
        started = _clock()
        log = super().get_log(index)
        metrics = self._metrics
        metrics.observe("get_seconds", _clock() - started)
        size = _size(log)
        metrics.incr("entries_read")
        metrics.incr("bytes_read", size)
        counts = self._counts
        counts["entries_read"] += 1
        counts["bytes_read"] += size
        return log

    def iter_logs(self, low: int = 1, high: int = MAX_UINT64) -> Iterator[Log]:
        """`RaftStore.iter_logs`, counted."""
        metrics = self._metrics
        counts = self._counts
        for log in super().iter_logs(low, high):
            size = _size(log)
            metrics.incr("entries_read")
            metrics.incr("bytes_read", size)
            counts["entries_read"] += 1
            counts["bytes_read"] += size
            yield log

    def store_log(self, log: Log) -> None:
        """`RaftStore.store_log`, timed and counted."""
        started = _clock()
        super().store_log(log)
        self._note_append(started, 1, _size(log))

    def store_logs(self, logs: Iterable[Log]) -> None:
        """`RaftStore.store_logs`, timed and counted."""
        if isinstance(logs, Log):  # refused by the store, with its own message
            super().store_logs(logs)
        seen: list[Log] = []

        def recording() -> Iterator[Log]:
            # The store reads the batch (and reports a bad one) exactly as without metrics.
            for log in logs:
                seen.append(log)
                yield log

        started = _clock()
        before = self._counts["appends"]
        super().store_logs(recording())
        if self._counts["appends"] != before:  # an empty batch writes nothing
            self._note_append(started, len(seen), sum(map(_size, seen)))

    def _note_append(self, started: float, entries: int, size: int) -> None:
        metrics = self._metrics
        metrics.observe("store_seconds", _clock() - started)
        metrics.observe("batch_size", entries)
        metrics.incr("appends")
        metrics.incr("entries_written", entries)
        metrics.incr("bytes_written", size)
        self._bounds_gauges()

    def delete_range(self, min_index: int, max_index: int) -> None:
        """`RaftStore.delete_range`, counted as a head or tail truncation."""
        counts = self._counts
        before = {name: counts[name] for name in ("head_truncations", "tail_truncations")}
        super().delete_range(min_index, max_index)
        for name, count in before.items():
            if counts[name] != count:
                self._metrics.incr(name)
        self._bounds_gauges()

    def get(self, key: bytes) -> bytes | None:
        """`RaftStore.get`, counted (``get_uint64`` goes through it)."""
        value = super().get(key)
        self._metrics.incr("stable_gets")
        self._counts["stable_gets"] += 1
        return value

    def _put_stable(self, key: bytes, value: bytes, operation: str) -> None:
        super()._put_stable(key, value, operation)
        self._metrics.incr("stable_sets")

    def sync(self) -> None:
        """`RaftStore.sync`, timed and counted."""
        started = _clock()
        super().sync()
        self._metrics.observe("sync_seconds", _clock() - started)
        self._metrics.incr("syncs")

    def compact(self) -> None:
        """`RaftStore.compact`, then the disk usage gauge."""
        super().compact()
        self._metrics.gauge("disk_usage_bytes", self.disk_usage())

    def stats(self) -> dict[str, Any]:
        """`RaftStore.stats`, also setting the disk usage gauge."""
        snapshot = super().stats()
        self._metrics.gauge("disk_usage_bytes", snapshot["disk_usage_bytes"])
        return snapshot
