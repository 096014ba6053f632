"""Waiting for a delivery worker running in a thread of the benchmark: the end of a timed delivery."""
from __future__ import annotations

import time


def delivered_all(worker, expected: int, timeout: float = 900.0) -> float:
    """perf_counter() once the worker has recorded every event's outcome (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = worker.stats
        if stats.delivered + stats.parked + stats.rejected >= expected:
            return time.perf_counter()
        time.sleep(0.005)
    raise TimeoutError(f"the worker did not deliver {expected} events in {timeout:.0f}s: {worker.stats}")
