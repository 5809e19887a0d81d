"""Export a store's metrics to Prometheus (``pip install 'raftstore[prometheus]'``).

::

    import prometheus_client, raftstore
    from raftstore.metrics.prometheus import PrometheusCollector

    collector = PrometheusCollector(labels={"node": "node1"})
    store = raftstore.open("/var/lib/node1/raft", metrics=collector)
    prometheus_client.start_http_server(9100)

Counters become ``raftstore_<name>_total``, gauges ``raftstore_<name>``, and
samples histograms ``raftstore_<name>`` (latencies in seconds, batch sizes in
entries). Metrics are created on first use, in *registry* (the default
registry of ``prometheus_client`` unless given).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

try:
    import prometheus_client
except ImportError as exc:  # pragma: no cover - depends on the installation
    from raftstore.errors import EngineUnavailableError

    raise EngineUnavailableError(
        "the Prometheus adapter needs the prometheus_client package:"
        " pip install 'raftstore[prometheus]'"
    ) from exc

__all__ = ["PrometheusCollector"]

#: Histogram buckets for latencies: 25 µs to 1 s.
_SECONDS_BUCKETS = (
    25e-6,
    50e-6,
    100e-6,
    250e-6,
    500e-6,
    1e-3,
    2.5e-3,
    5e-3,
    10e-3,
    25e-3,
    50e-3,
    100e-3,
    250e-3,
    1.0,
)
#: Histogram buckets for batch sizes, in entries.
_COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class PrometheusCollector:
    """A `raftstore.metrics.MetricsCollector` that feeds ``prometheus_client`` metrics."""

    def __init__(
        self,
        *,
        prefix: str = "raftstore",
        labels: Mapping[str, str] | None = None,
        registry: Any = None,
    ) -> None:
        """Create metrics named ``<prefix>_<name>``, each with the constant *labels*."""
        self._prefix = prefix
        self._labels = dict(labels or {})
        self._registry = prometheus_client.REGISTRY if registry is None else registry
        self._metrics: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _metric(self, kind: str, name: str) -> Any:
        metric = self._metrics.get(name)
        if metric is None:
            with self._lock:
                metric = self._metrics.get(name)
                if metric is None:
                    metric = self._create(kind, name)
                    self._metrics[name] = metric
        return metric

    def _create(self, kind: str, name: str) -> Any:
        full = f"{self._prefix}_{name}"
        names = list(self._labels)
        what = f"raftstore {name.replace('_', ' ')}"
        metric: Any
        if kind == "counter":
            metric = prometheus_client.Counter(full, what, names, registry=self._registry)
        elif kind == "gauge":
            metric = prometheus_client.Gauge(full, what, names, registry=self._registry)
        else:
            buckets = _SECONDS_BUCKETS if name.endswith("_seconds") else _COUNT_BUCKETS
            metric = prometheus_client.Histogram(
                full, what, names, buckets=buckets, registry=self._registry
            )
        return metric.labels(**self._labels) if names else metric

    def incr(self, name: str, value: int = 1) -> None:
        """Add *value* to counter *name*."""
        self._metric("counter", name).inc(value)

    def gauge(self, name: str, value: float) -> None:
        """Set gauge *name* to *value*."""
        self._metric("gauge", name).set(value)

    def observe(self, name: str, value: float) -> None:
        """Record one sample of *name* in its histogram."""
        self._metric("histogram", name).observe(value)
