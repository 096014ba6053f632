"""Exchange and queue names, in one place.

Case events go to one quorum queue that any number of workers compete on. Order per case is kept by
the delivery worker's ordering gate (an event waits until its predecessor's receipt is recorded), not
by pinning cases to consumers, so competing workers scale without a partition rebalancer.
Retries are delay queues: a message sits in `<queue>.delay.<ms>ms` for the delay the redelivery policy computed
(tongban.delivery.retry, jitter included; to 10 ms), then dead-letters back to the exchange with the routing key of
its work queue. One queue per distinct delay, because RabbitMQ expires messages only at the head of a queue: a
per-message TTL in one shared queue would hold a 1 s retry behind a 120 s one. Each delay queue deletes itself
(`x-expires`) a while after its last message left. The ordering gate's short wait has its own fixed queue
(`<queue>.gate`).

The gate's wait queue is a quorum queue that dead-letters at least once (x-dead-letter-strategy at-least-once, which
RabbitMQ >= 3.10 allows with x-overflow reject-publish): an expired message stays in it until the work queue has
confirmed it. A classic queue's TTL dead-lettering is at most once, and a broker restart lost events on that hop
(7-16 of ~410 in the restart test, tests/e2e/test_restarts.py). Its name is new (`<queue>.gate`): the old classic
`<queue>.wait` cannot be redeclared with other arguments (406 PRECONDITION_FAILED), so it gets no new messages,
what it holds returns to the work queue by its TTL, and `declare` deletes it only once it is empty.

The retry delay queues stay classic. On RabbitMQ 3.10 a quorum delay queue with x-expires deleted itself with
retries still in it: publishing to it and redeclaring it did not count as use, only consumers do (the chaos test,
tests/e2e/test_chaos.py, lost 19 of 10,000 events that way). Without x-expires, one quorum queue per distinct delay
would pile up for ever. So a retry waiting in a delay queue while the broker restarts can still be lost on the
dead-letter hop: a known limit (docs/performance.md, "What is left").
"""
from __future__ import annotations

from dataclasses import dataclass

CASES_EXCHANGE = "tongban.cases"
CASES_QUEUE = "tongban.cases.deliver"
CASES_KEY = "deliver"

WAIT_SECONDS = 0.2  # the ordering gate's short wait (its own fixed queue)
# A delay queue outlives its last message by this much, then RabbitMQ deletes it (x-expires, renewed by each
# publish's declare). Fixed, so that every publisher declares a given delay queue with the same arguments.
DELAY_QUEUE_LINGER_MS = 60_000


# Delays are kept to this resolution: 5 ms at most off the policy's delay, far inside its jitter (at least
# `initial_wait` wide: 100 distinct delays per second of jitter), while the delay queues alive at once stay in the
# hundreds rather than one per retried message.
DELAY_RESOLUTION_MS = 10


def delay_ms(seconds: float) -> int:
    """A delay as RabbitMQ's TTL counts it (milliseconds), to DELAY_RESOLUTION_MS; never negative."""
    return max(0, round(seconds * 1000 / DELAY_RESOLUTION_MS) * DELAY_RESOLUTION_MS)


@dataclass(frozen=True)
class WorkQueue:
    exchange: str
    queue: str
    routing_key: str

    def delay_queue(self, milliseconds: int) -> str:
        """The delay queue whose messages wait exactly `milliseconds` before returning to the work queue."""
        return f"{self.queue}.delay.{int(milliseconds)}ms"

    @property
    def wait_queue(self) -> str:
        return f"{self.queue}.gate"

    @property
    def legacy_wait_queue(self) -> str:
        """The classic wait queue of earlier versions (at-most-once dead-lettering): drained, then deleted."""
        return f"{self.queue}.wait"

    @property
    def fixed_queues(self) -> list[str]:
        """The queues `declare` makes (the delay queues come and go with the retries: Bus.queues)."""
        return [self.queue, self.wait_queue]


CASES = WorkQueue(CASES_EXCHANGE, CASES_QUEUE, CASES_KEY)


def cases_work(prefix: str = "tongban") -> WorkQueue:
    """The case-event queues under a name prefix (tests and parallel sandboxes use their own prefix)."""
    return WorkQueue(f"{prefix}.cases", f"{prefix}.cases.deliver", CASES_KEY)
