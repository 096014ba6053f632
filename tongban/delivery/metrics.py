"""Prometheus metrics of a delivery worker (`tongban worker --metrics-port N` serves /metrics)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

_COUNTERS = ("delivered", "duplicates", "retried", "parked", "rejected", "waited")


class _StoreCollector:
    """Parked and quarantined counts read from the store at scrape time (they are shared by all workers)."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        from tongban.operator import quarantine as q

        counts = q.counts(self.store)
        yield GaugeMetricFamily("tongban_parked", "Parked deliveries awaiting an operator", value=counts["parked"])
        yield GaugeMetricFamily("tongban_quarantined", "Quarantined records awaiting an operator", value=counts["quarantined"])


class Metrics:
    def __init__(self, store=None):
        self.registry = CollectorRegistry()
        self.counters = {name: Counter(f"tongban_{name}", f"case events {name}", registry=self.registry)
                         for name in _COUNTERS}
        self.latency = Histogram("tongban_push_seconds", "time to push one event and get its receipt",
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        if store is not None:
            self.registry.register(_StoreCollector(store))

    def count(self, name: str, seconds: float | None = None) -> None:
        if name in self.counters:
            self.counters[name].inc()
        if seconds is not None:
            self.latency.observe(seconds)

    @classmethod
    def serve(cls, port: int, *, store=None, addr: str = "127.0.0.1") -> "Metrics":
        metrics = cls(store)
        start_http_server(port, addr=addr, registry=metrics.registry)
        return metrics
