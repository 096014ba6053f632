"""The bundle queue: steps of bundled applications (tongban.bundle.gather), with the usual delay queues."""
from __future__ import annotations

from tongban.bus.topology import WorkQueue

BUNDLES_KEY = "step"


def bundles_work(prefix: str = "tongban") -> WorkQueue:
    return WorkQueue(f"{prefix}.bundles", f"{prefix}.bundles.steps", BUNDLES_KEY)
