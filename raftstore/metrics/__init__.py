"""Metrics: what a store reports while it works, to a collector of your choice.

Off by default: a store opened without ``metrics=`` does no timing and
calls nothing, so its hot paths are unchanged. With
``raftstore.open(..., metrics=collector)`` the store calls the collector's
three methods on every operation:

- ``incr(name, value)`` for counters,
- ``gauge(name, value)`` for levels,
- ``observe(name, value)`` for samples (latencies in seconds, batch sizes).

The names, modelled on hashicorp's raft-boltdb and raft-wal metrics:

============================  =========  ============================================
name                          kind       meaning
============================  =========  ============================================
``appends``                   counter    ``store_log``/``store_logs`` calls that wrote
``entries_written``           counter    log entries written
``bytes_written``             counter    bytes of entry data and extensions written
``entries_read``              counter    entries returned by ``get_log``/``iter_logs``
``bytes_read``                counter    bytes of entry data and extensions read
``head_truncations``          counter    ``delete_range`` calls that cut the head
``tail_truncations``          counter    ``delete_range`` calls that cut the tail
``stable_gets``               counter    ``get``/``get_uint64`` calls
``stable_sets``               counter    ``set``/``set_uint64`` calls
``syncs``                     counter    ``sync`` calls
``batch_size``                sample     entries per append
``store_seconds``             sample     latency of an append
``get_seconds``               sample     latency of a ``get_log``
``sync_seconds``              sample     latency of a ``sync``
``disk_usage_bytes``          gauge      bytes on disk (set by ``stats`` and ``compact``)
``first_index``/``last_index``  gauge    the log's bounds after each write
============================  =========  ============================================

`InMemoryCollector` keeps everything in dictionaries (for tests and for a
quick look); `raftstore.metrics.prometheus.PrometheusCollector` (extra
``raftstore[prometheus]``) exports to ``prometheus_client``.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

__all__ = ["InMemoryCollector", "MetricsCollector"]


@runtime_checkable
class MetricsCollector(Protocol):
    """Receives a store's metrics. Called from the store's threads: be thread-safe and quick."""

    def incr(self, name: str, value: int = 1) -> None:
        """Add *value* to counter *name*."""

    def gauge(self, name: str, value: float) -> None:
        """Set gauge *name* to *value*."""

    def observe(self, name: str, value: float) -> None:
        """Record one sample of *name* (seconds for ``*_seconds``, a count otherwise)."""


class InMemoryCollector:
    """A `MetricsCollector` that keeps counters, gauges and every sample in memory."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.gauges: dict[str, float] = {}
        self.samples: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def incr(self, name: str, value: int = 1) -> None:
        """Add *value* to counter *name*."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + value

    def gauge(self, name: str, value: float) -> None:
        """Set gauge *name* to *value*."""
        with self._lock:
            self.gauges[name] = value

    def observe(self, name: str, value: float) -> None:
        """Record one sample of *name*."""
        with self._lock:
            self.samples.setdefault(name, []).append(value)
