"""The redelivery policy (Camel's dead-letter channel): capped exponential backoff with jitter, a
maximum number of attempts, then parking. Retry-After from the platform is a floor, not a suggestion."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RedeliveryPolicy:
    max_attempts: int = 8
    initial_delay: float = 1.0
    max_delay: float = 120.0
    jitter: float = 0.5  # ± fraction of the delay

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number `attempt` + 1 (attempt counts failures so far, from 1)."""
        rng = rng or random
        base = min(self.max_delay, self.initial_delay * 2 ** (attempt - 1))
        delay = base * (1 + rng.uniform(-self.jitter, self.jitter))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_delay)

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
