"""The one retry policy (tongban/retry.py), pinned once: attempts, backoff with jitter and cap, Retry-After
(seconds and HTTP dates), the one set of transient statuses, deadlines."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from pydantic import ValidationError

from tongban.retry import TRANSIENT_STATUS, RetryPolicy, RetrySettings, Retryable, retry_after_seconds

NOW = datetime(2026, 12, 2, 8, 0, 0, tzinfo=timezone.utc)


def _policy(**kw):
    sleeps: list[float] = []
    return RetryPolicy(rng=random.Random(1), sleep=sleeps.append, **kw), sleeps


def test_the_transient_statuses_are_one_set():
    assert TRANSIENT_STATUS == {408, 425, 429, 500, 502, 503, 504}
    assert not {400, 401, 403, 404, 409, 422} & TRANSIENT_STATUS


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), ("0.5", 0.5), (" 3 ", 3.0), ("-4", 0.0),
    (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),   # IMF-fixdate
    ("Wednesday, 02-Dec-26 08:01:30 GMT", 90.0),                           # RFC 850
    (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),        # a date in the past: go now
    ("soon", None), ("", None), (None, None), ("nan", None),
])
def test_retry_after_in_seconds_or_http_dates(value, expected):
    assert retry_after_seconds(value, now=NOW) == expected


def test_backoff_doubles_with_jitter_and_is_capped():
    policy, sleeps = _policy(attempts=6, initial_wait=1.0, max_wait=5.0)
    calls = []

    def always_busy():
        calls.append(1)
        raise Retryable("busy")

    with pytest.raises(Retryable) as caught:
        policy.call(always_busy)
    assert len(calls) == 6 and caught.value.attempts == 6 and len(sleeps) == 5
    for n, slept in enumerate(sleeps, start=1):
        base = min(5.0, 2 ** (n - 1))
        assert base <= slept <= min(5.0, base + 1.0)
    assert sleeps[-1] == 5.0  # the cap


def test_retry_after_is_never_undercut_and_a_longer_one_gives_up_at_once():
    policy, sleeps = _policy(attempts=5, initial_wait=0.01, max_wait=10)
    answers = iter([Retryable("429", retry_after=2.0), None])

    def attempt():
        exc = next(answers)
        if exc:
            raise exc
        return "ok"

    assert policy.call(attempt) == "ok" and sleeps == [2.0]
    policy, sleeps = _policy(attempts=5, initial_wait=0.01, max_wait=10)
    with pytest.raises(Retryable) as caught:
        policy.call(lambda: (_ for _ in ()).throw(Retryable("503", retry_after=3600)))
    assert caught.value.attempts == 1 and sleeps == []


def test_only_what_retry_if_accepts_is_retried():
    policy, sleeps = _policy(attempts=5, initial_wait=0.01)
    calls = []

    def permanent():
        calls.append(1)
        raise ValueError("HTTP 403")

    with pytest.raises(ValueError):
        policy.call(permanent)
    assert calls == [1] and sleeps == []
    with pytest.raises(KeyError) as caught:
        policy.call(lambda: calls.append(2) or {}["x"], retry_if=lambda e: isinstance(e, KeyError))
    assert caught.value.attempts == 5


def test_no_wait_runs_past_the_deadline_and_no_try_starts_after_it():
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    policy = RetryPolicy(attempts=50, initial_wait=1.0, max_wait=30, rng=random.Random(2), sleep=sleep)
    with pytest.raises(Retryable) as caught:
        policy.call(lambda: (_ for _ in ()).throw(Retryable("busy")), deadline=110.0, clock=lambda: now[0])
    assert now[0] == pytest.approx(110.0) and caught.value.attempts < 50


def test_settings_model_gives_the_policy_and_refuses_unknown_keys():
    assert RetrySettings().policy().attempts == 5
    policy = RetrySettings.model_validate({"attempts": 2, "initial_wait": 0.1, "max_wait": 1}).policy()
    assert (policy.attempts, policy.initial_wait, policy.max_wait) == (2, 0.1, 1)
    with pytest.raises(ValidationError, match="retries"):
        RetrySettings.model_validate({"retries": 3})
    with pytest.raises(ValidationError):
        RetrySettings.model_validate({"attempts": 0})


def test_the_bus_redelivers_on_the_same_policy():
    """The bus's redelivery is this policy with the bus's defaults: the same delays, Retry-After as a floor (a wish
    longer than the cap is honoured there: the message waits in a delay queue, not inside a call), parked after
    `max_attempts` failures."""
    from tongban.delivery.retry import RedeliveryPolicy

    bus = RedeliveryPolicy(max_attempts=4, initial_delay=1.0, max_delay=5.0, rng=random.Random(3))
    same = RetryPolicy(attempts=4, initial_wait=1.0, max_wait=5.0, rng=random.Random(3))
    assert [bus.delay(n) for n in range(1, 6)] == [same.wait_seconds(n) for n in range(1, 6)]
    assert bus.delay(1, retry_after=600) == 600
    assert [bus.exhausted(n) for n in (3, 4)] == [False, True]
    assert RedeliveryPolicy().attempts == 8 and RedeliveryPolicy().max_wait == 120
