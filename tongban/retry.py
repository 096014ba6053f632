"""The one retry policy of tongban: how often, how long between tries, and what counts as transient.

Every outbound call that retries inside itself (the REST, SOAP and SFTP adapters, the platform client
tongban.platform, the identity resolver through it) builds a `RetryPolicy` and runs its attempt through
`RetryPolicy.call`; the bus's redelivery (tongban.delivery.retry.RedeliveryPolicy, a RetryPolicy) takes its delays
from `wait_seconds`, and both buses honour them exactly. This is the only module that sets up tenacity.

- **attempts**: the total number of tries, the first included (`attempts: 1` never retries);
- **backoff**: before try n+1 it waits `initial_wait * 2**(n-1)` plus a random jitter of up to `initial_wait`
  (so that many workers do not retry in step), never more than `max_wait`;
- **Retry-After**: when the failure carries the server's Retry-After (seconds or an HTTP date, see
  `retry_after_seconds`), the wait is never shorter than it; a Retry-After longer than `max_wait` is not
  waited out inside the call: the call gives up at once and the caller's later retry (the bus, Airflow) honours it;
- **deadline**: an optional monotonic deadline; no wait runs past it and no new try starts after it;
- **transient**: `TRANSIENT_STATUS` is the one set of HTTP statuses worth another try. Everything else in 4xx is
  the caller's permanent error. Timeouts and connection errors are transient too, but which exceptions those are
  is the caller's protocol knowledge (httpx, zeep, asyncssh): the caller raises `Retryable` for them.

What this module refuses to know: protocols and error messages. A caller turns its protocol's failure into
`Retryable` (or any exception its `retry_if` accepts) and turns the final exception into its own error type.
Tenacity does the looping; this module only fixes its parameters so that they are the same everywhere.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, TypeVar

import tenacity
from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

# Request timeout, too early, too many requests, and the server-side failures that pass.
TRANSIENT_STATUS: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUS


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: `"120"`, `"0.5"` or an HTTP date
    (`"Wed, 21 Oct 2026 07:28:00 GMT"`). A date in the past gives 0; anything unreadable gives None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a number of seconds
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class Retryable(Exception):
    """One attempt failed in a way worth another try; `retry_after` is the server's wish in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: "RetryPolicy", deadline: float | None, clock: Callable[[], float]):
        self.policy, self.deadline, self.clock = policy, deadline, clock

    def __call__(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        wait = self.policy.wait_seconds(state.attempt_number, getattr(exc, "retry_after", None))
        if self.deadline is not None:
            wait = max(0.0, min(wait, self.deadline - self.clock()))
        return wait


class _Stop(tenacity.stop.stop_base):
    def __init__(self, policy: "RetryPolicy", deadline: float | None, clock: Callable[[], float]):
        self.policy, self.deadline, self.clock = policy, deadline, clock

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= self.policy.attempts:
            return True
        if self.deadline is not None and self.clock() >= self.deadline:
            return True
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return retry_after is not None and retry_after > self.policy.max_wait


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts, backoff with jitter, cap (see the module docstring). `rng` and `sleep` are test seams."""

    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.initial_wait < 0 or self.max_wait < 0:
            raise ValueError("waits must not be negative")

    def backoff(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (1-based), before jitter and Retry-After."""
        return min(self.max_wait, self.initial_wait * 2 ** (attempt - 1))

    def wait_seconds(self, attempt: int, retry_after: float | None = None) -> float:
        wait = min(self.max_wait, self.backoff(attempt) + self.rng.uniform(0, self.initial_wait))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def call(self, attempt: Callable[[], T], *, retry_if: Callable[[BaseException], bool] | None = None,
             deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
             before_sleep: Callable[[BaseException, int, float], None] | None = None) -> T:
        """Run `attempt` until it returns, raises something not retryable, or the policy gives up; then the
        last exception is raised as it was, with `.attempts` (how many tries were made) set on it."""
        predicate = retry_if or (lambda exc: isinstance(exc, Retryable))

        def notify(state: tenacity.RetryCallState) -> None:
            if before_sleep is not None and state.outcome is not None and state.next_action is not None:
                before_sleep(state.outcome.exception(), state.attempt_number, state.next_action.sleep)

        retrying = tenacity.Retrying(
            stop=_Stop(self, deadline, clock), wait=_Wait(self, deadline, clock),
            retry=tenacity.retry_if_exception(predicate), sleep=self.sleep, before_sleep=notify, reraise=True)
        tries = 0

        def counted() -> T:
            nonlocal tries
            tries += 1
            return attempt()

        try:
            return retrying(counted)
        except BaseException as exc:
            try:
                exc.attempts = tries  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover - exceptions with __slots__
                pass
            raise


class RetrySettings(BaseModel):
    """The `retry:` setting of an adapter (the same three keys everywhere)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"attempts": 5, "initial_wait": 0.5, "max_wait": 30}]})

    attempts: int = Field(5, ge=1, le=100, description="Tries per call, the first included (1: never retry).")
    initial_wait: float = Field(0.5, ge=0, le=600, description=(
        "Seconds before the first retry; doubled before each next one, plus a random jitter of up to this much."))
    max_wait: float = Field(30.0, ge=0, le=3600, description=(
        "Cap on one wait in seconds. A server's Retry-After longer than this ends the call at once "
        "(the next scheduled run tries again)."))

    def policy(self, **seams: Any) -> RetryPolicy:
        return RetryPolicy(attempts=self.attempts, initial_wait=self.initial_wait, max_wait=self.max_wait, **seams)
