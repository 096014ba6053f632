"""Exchange and queue names, in one place.

Case events go to one quorum queue that any number of workers compete on. Order per case is kept by
the delivery worker's ordering gate (an event waits until its predecessor's receipt is recorded), not
by pinning cases to consumers, so competing workers scale without a partition rebalancer.

Retries wait in a fixed set of long-lived retry queues, the tiers `<exchange>.retry.<lower>ms`: quorum queues that
dead-letter at least once (x-dead-letter-strategy at-least-once, which RabbitMQ >= 3.10 allows with x-overflow
reject-publish), so an expired retry stays in its tier until the work queue has confirmed it, broker restart or not
(a classic queue's TTL dead-lettering is at most once: a restart lost retries on that hop). Each retry carries its
own TTL (the message's `expiration`, the policy's delay to DELAY_RESOLUTION_MS, jitter included); the tier only
bounds how long it can be held behind another one. RabbitMQ expires a message only at the head of its queue, so
in a tier [lower, upper) a retry waits at least its own delay and at most `upper`: up to a quarter longer
(RETRY_TIER_RATIO; below RETRY_TIER_FIRST_MS, up to that much), never shorter — a platform's Retry-After is never
undercut. The top tier is open-ended (from about 7 h): a retry there may wait behind a longer Retry-After.

The tiers belong to the exchange, not to one work queue: the exchange `<exchange>.retry` (headers) routes a retry
to its tier by the `tongban-retry-tier` header, and a tier dead-letters to the work exchange with the message's own
routing key (no x-dead-letter-routing-key), which brings it back to its own work queue. So the flowback's 39
district queues share one set of tiers instead of 39 × 58 quorum queues. A tier is made by the first retry that
waits in it (RabbitBus.publish_delayed), not by `declare`: all 58 took about a second per exchange, and most runs use a
few; a tier never used does not exist, and listing, depths, purge and delete take that as empty. No x-expires:
on RabbitMQ 3.10 a quorum queue with x-expires deleted itself with retries still in it (publishing and redeclaring
do not count as use, only consumers do: the chaos test, tests/e2e/test_chaos.py, lost 19 of 10,000 that way).
A retry that comes due while the broker is down is kept, but RabbitMQ 3.10 recovers queues before exchanges, so it
returns only after the broker's dead_letter_worker_publisher_confirm_timeout (180 s unless advanced.config or
`rabbitmqctl eval` lowers it; docs/performance.md).

Earlier versions used one classic queue per distinct delay, `<queue>.delay.<ms>ms`, deleting itself (x-expires).
Nothing publishes there any more: what an upgraded broker still holds returns to the work queue by its TTL, and the
queue deletes itself a minute after.

The ordering gate's short wait has its own fixed queue (`<queue>.gate`), quorum and at-least-once in the same way,
with a queue TTL. Its name is new: the old classic `<queue>.wait` cannot be redeclared with other arguments (406
PRECONDITION_FAILED), so it gets no new messages, what it holds returns to the work queue by its TTL, and `declare`
deletes it only once it is empty.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

CASES_EXCHANGE = "tongban.cases"
CASES_QUEUE = "tongban.cases.deliver"
CASES_KEY = "deliver"

WAIT_SECONDS = 0.2  # the ordering gate's short wait (its own fixed queue)

# Delays are kept to this resolution: 5 ms at most off the policy's delay, far inside its jitter.
DELAY_RESOLUTION_MS = 10

# The retry tiers: [0, 100 ms), then geometric from 100 ms by 1.25 up to the first bound past 6 h (58 tiers). The
# ratio is what a retry may wait beyond its delay (a quarter at most); the top covers Retry-After floors of hours.
RETRY_TIER_FIRST_MS = 100
RETRY_TIER_RATIO = 1.25
RETRY_TIER_TOP_MS = 6 * 3600 * 1000
RETRY_TIER_HEADER = "tongban-retry-tier"  # the retry exchange routes on it (a headers exchange)


def _tier_bounds() -> tuple[int, ...]:
    bounds, k = [0], 0
    while bounds[-1] < RETRY_TIER_TOP_MS:
        bounds.append(round(RETRY_TIER_FIRST_MS * RETRY_TIER_RATIO ** k))
        k += 1
    return tuple(bounds)


RETRY_TIERS_MS = _tier_bounds()  # each tier's lower bound; a tier ends where the next begins


def retry_tier(milliseconds: int) -> int:
    """The lower bound of the tier a retry of `milliseconds` waits in."""
    return RETRY_TIERS_MS[bisect.bisect_right(RETRY_TIERS_MS, milliseconds) - 1]


def delay_ms(seconds: float) -> int:
    """A delay as RabbitMQ's TTL counts it (milliseconds), to DELAY_RESOLUTION_MS; never negative."""
    return max(0, round(seconds * 1000 / DELAY_RESOLUTION_MS) * DELAY_RESOLUTION_MS)


@dataclass(frozen=True)
class WorkQueue:
    exchange: str
    queue: str
    routing_key: str

    @property
    def wait_queue(self) -> str:
        return f"{self.queue}.gate"

    @property
    def legacy_wait_queue(self) -> str:
        """The classic wait queue of earlier versions (at-most-once dead-lettering): drained, then deleted."""
        return f"{self.queue}.wait"

    @property
    def retry_exchange(self) -> str:
        """Routes a retry to its tier (headers exchange); shared by every work queue of this exchange."""
        return f"{self.exchange}.retry"

    def retry_queue(self, tier_ms: int) -> str:
        """The tier whose lower bound is `tier_ms` (RETRY_TIERS_MS)."""
        return f"{self.exchange}.retry.{int(tier_ms)}ms"

    @property
    def retry_queues(self) -> list[str]:
        return [self.retry_queue(tier) for tier in RETRY_TIERS_MS]

    @property
    def own_queues(self) -> list[str]:
        """The queues only this work queue's messages use: itself and its gate (the retry tiers are shared)."""
        return [self.queue, self.wait_queue]

    @property
    def fixed_queues(self) -> list[str]:
        """Every queue `declare` makes and a message of this work queue may wait in."""
        return [*self.own_queues, *self.retry_queues]


CASES = WorkQueue(CASES_EXCHANGE, CASES_QUEUE, CASES_KEY)


def cases_work(prefix: str = "tongban") -> WorkQueue:
    """The case-event queues under a name prefix (tests and parallel sandboxes use their own prefix)."""
    return WorkQueue(f"{prefix}.cases", f"{prefix}.cases.deliver", CASES_KEY)
