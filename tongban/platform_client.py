"""Client of the 渝快办 platform: numbering (统一赋码) and the case-push API, signed per request.

Every call carries HMAC-SHA256 request-signing headers (tongban.platform_auth). A quick in-call retry
(tenacity) absorbs blips; longer outages are the bus's job (delay queues, then parking).
"""
from __future__ import annotations

from typing import Any

import httpx
import tenacity

from tongban.envelope import canonical_json, content_digest
from tongban.platform_auth import signed_headers, verify_receipt
from tongban.settings import Settings

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class PlatformTransient(Exception):
    """Worth retrying later: timeout, connection error, 5xx, 429."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PlatformRejected(Exception):
    """The platform refused the request for good (4xx): not retried; quarantined with its reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"platform rejected (HTTP {status}): {reason}")
        self.status, self.reason = status, reason


class ReceiptInvalid(Exception):
    pass


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("error", "rule", "details") if body.get(k)]
        return ": ".join(parts) or str(body)[:300]
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


class PlatformClient:
    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None, timeout: float = 5.0,
                 quick_attempts: int = 2):
        self.settings = settings
        self.client = httpx.Client(base_url=settings.platform_url, timeout=timeout, transport=transport)
        self.quick_attempts = quick_attempts

    def _call(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> dict:
        content = canonical_json(body) if body is not None else None
        url = httpx.URL(self.settings.platform_url).join(path)

        def attempt() -> dict:
            all_headers = signed_headers(method, str(url), self.settings.platform_access_key, self.settings.platform_secret)
            all_headers["Content-Type"] = "application/json"
            all_headers.update(headers or {})
            try:
                response = self.client.request(method, path, content=content, headers=all_headers)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise PlatformTransient(f"{type(exc).__name__} calling {path}") from exc
            if response.status_code in TRANSIENT_STATUS:
                raise PlatformTransient(f"HTTP {response.status_code} from {path}: {_reason(response)}",
                                        _retry_after(response))
            if response.status_code >= 400:
                raise PlatformRejected(response.status_code, _reason(response))
            return response.json()

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.quick_attempts),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=0.5),
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, PlatformTransient) and (e.retry_after or 0) <= 0.5),
            reraise=True)
        return retrying(attempt)

    def case_number(self, source_system: str, source_key: str, item_code: str) -> str:
        """统一赋码: the platform's 办件编号 for a legacy case (idempotent on the platform's side)."""
        body = self._call("POST", "/api/v1/numbering",
                          {"source_system": source_system, "source_key": source_key, "item_code": item_code})
        number = body.get("case_number")
        if not number or len(number) > 50:
            raise PlatformRejected(200, f"numbering service returned an unusable case number {number!r}")
        return number

    def push_event(self, event: dict, idempotency_key: str) -> dict:
        """Push one case event; returns the verified receipt."""
        receipt = self._call("POST", "/api/v1/case-events", event, {"Idempotency-Key": idempotency_key})
        if not verify_receipt(receipt, self.settings.platform_secret):
            raise ReceiptInvalid("the platform's receipt signature does not verify")
        if receipt.get("idempotency_key") != idempotency_key:
            raise ReceiptInvalid("the receipt names another idempotency key")
        if receipt.get("digest") != content_digest(event):
            # Non-repudiation of receipt: the platform must acknowledge exactly what we sent.
            raise ReceiptInvalid("the receipt's digest does not match the event sent")
        return receipt

    def get(self, path: str) -> dict:
        return self._call("GET", path)

    def close(self) -> None:
        self.client.close()
