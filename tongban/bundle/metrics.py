"""Prometheus counters of the bundle scatter-gather (served with the worker's /metrics when one runs)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class BundleMetrics:
    """`count(name)` for the worker's stats; `late` is also labelled by department (预警 per department)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.steps = Counter("tongban_bundle_steps", "bundle scatter-gather steps", ["step"], registry=self.registry)
        self.late = Counter("tongban_bundle_members_late", "members past their 承诺时限 (预警)", ["department"],
                            registry=self.registry)

    def count(self, name: str, department: str | None = None) -> None:
        self.steps.labels(step=name.removeprefix("bundle_")).inc()
        if name == "bundle_late" and department:
            self.late.labels(department=department).inc()
