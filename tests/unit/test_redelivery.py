"""RedeliveryPolicy.redeliver, the one redelivery step of every consumer that parks (the delivery worker, the bundle
worker, the flowback district deliverer): when a failed message waits in a delay queue and for how long, and when it is
parked instead."""
from __future__ import annotations

import random

import pytest

from tongban.bus import PublishError
from tongban.bus.envelope import Envelope
from tongban.bus.topology import WorkQueue
from tongban.delivery.retry import RedeliveryPolicy

WORK = WorkQueue("tongban.flowback", "tongban.flowback.500101", "500101")


class DelayBus:
    """Records publish_delayed calls; `refuse` makes them fail as a broker would."""

    def __init__(self, refuse: PublishError | None = None):
        self.delayed: list[tuple[str, str, float]] = []
        self.refuse = refuse

    def publish_delayed(self, work, env, seconds):
        if self.refuse is not None:
            raise self.refuse
        self.delayed.append((work.queue, env.message_id, seconds))


def _env(attempt: int = 0) -> Envelope:
    env = Envelope("flowback_record", "mps", "mps:R1:abc", {"target": "500101"})
    env.attempt = attempt
    return env


def _policy(**kw) -> RedeliveryPolicy:
    return RedeliveryPolicy(rng=random.Random(7), **kw)


def test_a_first_failure_waits_in_the_delay_queue_with_backoff_and_jitter():
    bus, parked = DelayBus(), []
    env = _env()
    detail = _policy(initial_delay=1.0, max_delay=120.0).redeliver(
        env, "503 from the sink", None, bus=bus, work=WORK, park=lambda e, why: parked.append(why))
    assert env.attempt == 1 and not parked
    ((queue, message_id, seconds),) = bus.delayed
    assert queue == WORK.queue and message_id == env.message_id
    assert 1.0 <= seconds <= 2.0  # backoff 1 s + jitter up to the initial delay
    assert detail == {"attempt": 1, "delay_s": round(seconds, 2), "reason": "503 from the sink"}


def test_the_delay_doubles_is_capped_and_never_undercuts_retry_after():
    policy = _policy(max_attempts=20, initial_delay=1.0, max_delay=10.0)
    bus = DelayBus()
    env = _env(attempt=2)  # the third failure: backoff 4 s
    policy.redeliver(env, "busy", None, bus=bus, work=WORK, park=lambda e, why: None)
    env.attempt = 9  # the tenth: backoff 512 s, capped
    policy.redeliver(env, "busy", None, bus=bus, work=WORK, park=lambda e, why: None)
    env.attempt = 3
    policy.redeliver(env, "429", 60.0, bus=bus, work=WORK, park=lambda e, why: None)  # Retry-After above the cap
    (_, _, third), (_, _, capped), (_, _, after) = bus.delayed
    assert 4.0 <= third <= 5.0 and capped == 10.0 and after == 60.0


def test_the_last_attempt_parks_instead_of_delaying():
    bus, parked = DelayBus(), []
    env = _env(attempt=2)
    detail = _policy(max_attempts=3).redeliver(env, "503 again", None, bus=bus, work=WORK,
                                               park=lambda e, why: parked.append((e.message_id, why)))
    assert detail is None and not bus.delayed and env.attempt == 3
    assert parked == [(env.message_id, "gave up after 3 attempts: 503 again")]


def test_a_delay_queue_nobody_declared_parks_the_message_rather_than_loop():
    bus, parked = DelayBus(refuse=PublishError("NO_ROUTE", unroutable=True)), []
    env = _env()
    detail = _policy().redeliver(env, "503", None, bus=bus, work=WORK, park=lambda e, why: parked.append(why))
    assert detail is None and parked == ["cannot delay for a retry: NO_ROUTE"]


def test_connection_trouble_while_delaying_is_raised_not_parked():
    bus, parked = DelayBus(refuse=PublishError("connection lost")), []
    with pytest.raises(PublishError, match="connection lost"):
        _policy().redeliver(_env(), "503", None, bus=bus, work=WORK, park=lambda e, why: parked.append(why))
    assert not parked  # the message goes back to its queue and is tried again
