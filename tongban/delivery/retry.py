"""The bus's redelivery policy (Camel's dead-letter channel): the one retry policy of tongban.retry, in the
bus's words. A message that failed `attempt` times waits `delay(attempt, retry_after)` seconds in a delay queue
(the same backoff, jitter and cap as every in-call retry; the platform's Retry-After is a floor, never undercut),
and after `max_attempts` failures it is parked. Both buses honour the delay as computed: the embedded bus holds the
row until then, the RabbitMQ bus sends it with that TTL into the retry tier of that delay (tongban.bus.topology: never
earlier, at most a quarter later).

`RedeliveryPolicy.redeliver` is that whole step for a consumer that parks what it cannot deliver (the delivery worker,
the bundle worker): the consumer only records the `retried` ledger event it returns."""
from __future__ import annotations

import random
from typing import Callable

from tongban.bus import Bus, PublishError
from tongban.bus.envelope import Envelope
from tongban.bus.topology import WorkQueue
from tongban.retry import RetryPolicy

Park = Callable[[Envelope, str], None]  # park(env, reason): the consumer's own parking, ledger event included


def delay_or_park(bus: Bus, work: WorkQueue, env: Envelope, seconds: float, park: Park) -> bool:
    """Send the message round a delay (a retry tier); towards a work queue nobody declared it is parked rather than
    loop.
    False when it was parked."""
    try:
        bus.publish_delayed(work, env, seconds)
        return True
    except PublishError as exc:
        if not exc.unroutable:
            raise  # connection trouble: the message returns to its queue and is tried again
        park(env, f"cannot delay for a retry: {exc}")
        return False


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

    def redeliver(self, env: Envelope, reason: str, retry_after: float | None, *, bus: Bus, work: WorkQueue,
                  park: Park) -> dict | None:
        """One more failed try of `env` (its `attempt` goes up): parked once the attempts are spent, else sent round
        `work`'s delay queue for `delay(env.attempt, retry_after)` seconds. Returns the detail of the consumer's
        `retried` ledger event, or None when the message was parked instead."""
        env.attempt += 1
        if self.exhausted(env.attempt):
            park(env, f"gave up after {env.attempt} attempts: {reason}")
            return None
        seconds = self.delay(env.attempt, retry_after)
        if not delay_or_park(bus, work, env, seconds, park):
            return None
        return {"attempt": env.attempt, "delay_s": round(seconds, 2), "reason": reason}
