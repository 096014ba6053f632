"""The bus's redelivery policy (Camel's dead-letter channel): the one retry policy of tongban.retry, in the
bus's words. A message that failed `attempt` times waits `delay(attempt, retry_after)` seconds in a delay queue
(the same backoff, jitter and cap as every in-call retry; the platform's Retry-After is a floor, never undercut),
and after `max_attempts` failures it is parked. Both buses honour the delay as computed: the embedded bus holds the
row until then, the RabbitMQ bus gives it a delay queue of exactly that TTL (tongban.bus.rabbit)."""
from __future__ import annotations

import random

from tongban.retry import RetryPolicy


class RedeliveryPolicy(RetryPolicy):
    """`RetryPolicy(attempts=max_attempts, initial_wait=initial_delay, max_wait=max_delay)` with the bus's
    defaults: 8 attempts, 1 s doubling up to 120 s."""

    def __init__(self, max_attempts: int = 8, initial_delay: float = 1.0, max_delay: float = 120.0, *,
                 rng: random.Random | None = None):
        super().__init__(attempts=max_attempts, initial_wait=initial_delay, max_wait=max_delay,
                         **({"rng": rng} if rng is not None else {}))

    @property
    def max_attempts(self) -> int:
        return self.attempts

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before try number `attempt` + 1 (`attempt` counts the failures so far, from 1)."""
        return self.wait_seconds(attempt, retry_after)

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.attempts
