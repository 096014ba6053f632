"""Exchange and queue names, in one place.

Case events go to one quorum queue that any number of workers compete on. Order per case is kept by
the delivery worker's ordering gate (an event waits until its predecessor's receipt is recorded), not
by pinning cases to consumers, so competing workers scale without a partition rebalancer.
Retries are delay queues: a message sits in `retry.<n>` for its TTL, then dead-letters back to the
exchange with the routing key of its work queue.
"""
from __future__ import annotations

from dataclasses import dataclass

CASES_EXCHANGE = "tongban.cases"
CASES_QUEUE = "tongban.cases.deliver"
CASES_KEY = "deliver"

# Delay steps (seconds) of the retry ladder; the worker picks the step by attempt number, adds jitter
# by choosing per-message expiration within the step's queue TTL is not possible, so jitter is added
# by spreading attempts over neighbouring steps (see delivery.retry).
RETRY_STEPS = (1, 5, 30, 120)
WAIT_SECONDS = 0.2  # the ordering gate's short wait


@dataclass(frozen=True)
class WorkQueue:
    exchange: str
    queue: str
    routing_key: str

    def retry_queue(self, seconds: float) -> str:
        return f"{self.queue}.retry.{seconds:g}s"

    @property
    def wait_queue(self) -> str:
        return f"{self.queue}.wait"


CASES = WorkQueue(CASES_EXCHANGE, CASES_QUEUE, CASES_KEY)


def cases_work(prefix: str = "tongban") -> WorkQueue:
    """The case-event queues under a name prefix (tests and parallel sandboxes use their own prefix)."""
    return WorkQueue(f"{prefix}.cases", f"{prefix}.cases.deliver", CASES_KEY)
