"""What a platform call can fail with, and how an HTTP answer becomes one of these (tongban.platform.client).

    PlatformTransient  worth retrying later: timeout, connection error, a status in tongban.retry.TRANSIENT_STATUS
                       (`retry_after`: the platform's Retry-After in seconds, dates included, when it sent one)
    PlatformRejected   refused for good (4xx, a redirect, an answer that is not what the endpoint promises):
                       not retried; quarantined with `reason` (the platform's own words) and `body` (its JSON)
    SealRejected       a PlatformRejected of the sealed-document endpoint carrying the platform's seal reason `code`
    ReceiptInvalid     the platform's receipt does not prove it received exactly what was sent
"""
from __future__ import annotations

import httpx

from tongban.retry import Retryable, retry_after_seconds


class PlatformTransient(Retryable):
    """Worth retrying later: timeout, connection error, 5xx, 429 (`retry_after` from the platform, if any)."""


class PlatformRejected(Exception):
    """The platform refused the request for good (4xx): not retried; quarantined with its reason.
    `body` is the platform's JSON answer ({} when it was not a JSON object)."""

    def __init__(self, status: int, reason: str, body: dict | None = None):
        super().__init__(f"platform rejected (HTTP {status}): {reason}")
        self.status, self.reason, self.body = status, reason, body or {}


class SealRejected(PlatformRejected):
    """The platform refused a sealed document; `code` is its seal reason code (revoked, digest_mismatch …)."""

    def __init__(self, status: int, code: str, message: str, body: dict | None = None):
        super().__init__(status, f"{code}: {message}" if message else code, body)
        self.code = code


class ReceiptInvalid(Exception):
    """The platform's receipt does not verify, or acknowledges something other than what was sent."""


def json_object(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def reason_of(response: httpx.Response) -> str:
    """The platform's reason in its own words (its JSON error fields, else the start of the body)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return reason_from(body)


def reason_from(body) -> str:
    """The reason in a platform's JSON error answer (a whole response's, or one event's in a batch)."""
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("error", "rule", "reason", "details") if body.get(k)]
        return ": ".join(parts) or str(body)[:300]
    return str(body)[:300]


def retry_after_of(response: httpx.Response) -> float | None:
    return retry_after_seconds(response.headers.get("Retry-After"))
