"""The RabbitMQ retry tiers (tongban.bus.topology): a retry waits in the tier of its delay, with the delay as its own
TTL, so it comes back no earlier than the policy said and at most a quarter later (RabbitMQ expires only at the head
of a queue: a retry can wait behind a longer one of its tier, never behind one of a longer tier)."""
from __future__ import annotations

import random

from tongban.bus.topology import RETRY_TIERS_MS, cases_work, delay_ms, retry_tier
from tongban.delivery.retry import RedeliveryPolicy


def _upper(tier: int) -> int | None:
    index = RETRY_TIERS_MS.index(tier)
    return RETRY_TIERS_MS[index + 1] if index + 1 < len(RETRY_TIERS_MS) else None


def test_every_delay_the_policy_makes_waits_at_most_a_quarter_longer_in_its_tier():
    policy = RedeliveryPolicy(max_attempts=20, rng=random.Random(11))
    delays = [delay_ms(policy.delay(attempt, retry_after)) for attempt in range(1, 12)
              for retry_after in (None, 0.5, 7, 90, 3600, 5 * 3600)]
    for ms in delays:
        tier = retry_tier(ms)
        upper = _upper(tier)
        assert tier <= ms and upper is not None and ms < upper
        assert upper <= max(ms * 1.25 + 1, 100)  # at most a quarter more (or 100 ms below the first tier)


def test_the_tiers_reach_hours_and_have_one_queue_each():
    assert RETRY_TIERS_MS[0] == 0 and RETRY_TIERS_MS[-1] >= 6 * 3600 * 1000
    assert list(RETRY_TIERS_MS) == sorted(set(RETRY_TIERS_MS))
    work = cases_work("t")
    assert len(set(work.retry_queues)) == len(RETRY_TIERS_MS) == len(work.retry_queues)
    assert not set(work.retry_queues) & set(work.own_queues)


def test_a_longer_retry_after_than_the_top_tier_still_gets_its_own_ttl_in_the_top_tier():
    huge = delay_ms(24 * 3600)
    assert retry_tier(huge) == RETRY_TIERS_MS[-1] and _upper(retry_tier(huge)) is None
