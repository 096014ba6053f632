"""Client of the 渝快办 platform: the one seam every platform endpoint is called through.

Numbering (统一赋码, `case_number`), case push (`push_event`), sealed documents (`push_sealed`, used by
tongban.seal.exchange), the unified user service (`resolve_user`, used by tongban.identity), the item catalogue
(`catalog`, used by tongban.catalog.sync) and reconciliation statistics (`stats`, used by tongban.audit.reconcile) all go
through `send`:

- one httpx client, built on the transport given (like httpx itself: `httpx.MockTransport` in tests, the default
  network transport otherwise);
- one signing path (`tongban.platform.auth.PlatformAuth`: the signature binds method, path, query, body digest,
  Idempotency-Key, date and a fresh nonce per attempt);
- one retry (`tongban.retry.RetryPolicy`, its one set of transient statuses and its Retry-After parser): a quick
  in-call retry that absorbs blips; a Retry-After longer than the policy's cap ends the call at once, and longer
  outages are the bus's job (delay queues, then parking). A caller that can afford to wait longer (the identity
  resolver) passes its own policy for its call;
- one mapping of failures (tongban.platform.errors): PlatformTransient, PlatformRejected (SealRejected for a
  seal refusal), ReceiptInvalid.

Redirects are never followed: a signed request goes to the configured platform or nowhere.
What this module refuses to know: queues, the ledger, the store. It sends, verifies what the platform signed,
and names what went wrong.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tongban.bus.envelope import canonical_json, content_digest
from tongban.retry import RetryPolicy, is_transient_status
from tongban.settings import Settings

from .auth import IDEMPOTENCY_HEADER, PlatformAuth, verify_receipt
from .errors import (
    PlatformRejected, PlatformTransient, ReceiptInvalid, SealRejected, json_object, reason_of, retry_after_of,
)

NUMBERING_PATH = "/api/v1/numbering"
CASE_EVENTS_PATH = "/api/v1/case-events"
SEALED_DOCUMENTS_PATH = "/api/v1/sealed-documents"
RESOLVE_USER_PATH = "/api/v1/users/resolve"
CATALOG_PATH = "/api/v1/catalog"
STATS_PATH = "/api/v1/stats"
CASES_PATH = "/api/v1/cases"

# The quick in-call retry: blips only (the bus's delay queues take anything longer).
QUICK_INITIAL_WAIT = 0.05
QUICK_MAX_WAIT = 0.5

_NETWORK_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, PlatformTransient)


class PlatformClient:
    """Every platform endpoint behind one signed, retried httpx client (see the module docstring)."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None, timeout: float = 5.0,
                 quick_attempts: int = 2, retry: RetryPolicy | None = None):
        self.settings = settings
        self.client = httpx.Client(base_url=settings.platform_url, timeout=timeout, transport=transport,
                                   auth=PlatformAuth(settings.platform_access_key, settings.platform_secret),
                                   follow_redirects=False)
        self.retry = retry or RetryPolicy(attempts=quick_attempts, initial_wait=QUICK_INITIAL_WAIT,
                                          max_wait=QUICK_MAX_WAIT)

    # --- the one path -------------------------------------------------------------------------------
    def _attempt(self, method: str, path: str, content: bytes | None, headers: dict[str, str]) -> httpx.Response:
        try:
            # Signed inside the request (PlatformAuth): each attempt carries its own date and nonce.
            response = self.client.request(method, path, content=content, headers=headers)
        except _NETWORK_ERRORS as exc:
            raise PlatformTransient(f"{type(exc).__name__} calling {method} {path}") from exc
        status = response.status_code
        if is_transient_status(status):
            raise PlatformTransient(f"HTTP {status} from {method} {path}: {reason_of(response)}",
                                    retry_after_of(response))
        if status >= 400:
            raise PlatformRejected(status, reason_of(response), json_object(response))
        if status >= 300:
            raise PlatformRejected(status, f"the platform redirected {path} to "
                                   f"{response.headers.get('Location', '?')}; redirects are not followed")
        return response

    def send(self, method: str, path: str, *, content: bytes | None = None, content_type: str = "application/json",
             idempotency_key: str | None = None, retry: RetryPolicy | None = None) -> httpx.Response:
        """One signed call (the client's retry, or `retry` for this call); returns the 2xx response or raises
        PlatformTransient / PlatformRejected."""
        headers = {"Content-Type": content_type}
        if idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        policy = retry or self.retry
        return policy.call(lambda: self._attempt(method, path, content, headers), retry_if=_retryable)

    def _json(self, method: str, path: str, body: Any = None, *, idempotency_key: str | None = None,
              retry: RetryPolicy | None = None) -> dict:
        content = canonical_json(body) if body is not None else None
        response = self.send(method, path, content=content, idempotency_key=idempotency_key, retry=retry)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise PlatformRejected(response.status_code,
                                   f"{method} {path} answered with something that is not a JSON object")
        return answer

    # --- endpoints ----------------------------------------------------------------------------------
    def case_number(self, source_system: str, source_key: str, item_code: str) -> str:
        """统一赋码: the platform's 办件编号 for a legacy case (idempotent on the platform's side)."""
        body = self._json("POST", NUMBERING_PATH,
                          {"source_system": source_system, "source_key": source_key, "item_code": item_code})
        number = body.get("case_number")
        if not isinstance(number, str) or not number or len(number) > 50:
            raise PlatformRejected(200, f"numbering service returned an unusable case number {number!r}")
        return number

    def push_event(self, event: dict, idempotency_key: str) -> dict:
        """Push one case event; returns the verified receipt."""
        receipt = self._json("POST", CASE_EVENTS_PATH, event, idempotency_key=idempotency_key)
        if not verify_receipt(receipt, self.settings.platform_secret):
            raise ReceiptInvalid("the platform's receipt signature does not verify")
        if receipt.get("idempotency_key") != idempotency_key:
            raise ReceiptInvalid("the receipt names another idempotency key")
        if receipt.get("digest") != content_digest(event):
            # Non-repudiation of receipt: the platform must acknowledge exactly what we sent.
            raise ReceiptInvalid("the receipt's digest does not match the event sent")
        return receipt

    def push_sealed(self, document: bytes, idempotency_key: str) -> bytes:
        """POST sealed XML; returns the platform's sealed receipt (bytes, verified by the caller against the
        trust store: tongban.seal.exchange). A seal refusal becomes SealRejected carrying the platform's reason code."""
        try:
            response = self.send("POST", SEALED_DOCUMENTS_PATH, content=document, content_type="application/xml",
                                 idempotency_key=idempotency_key)
        except PlatformRejected as exc:
            if exc.body.get("error") == "seal" and exc.body.get("reason"):
                raise SealRejected(exc.status, str(exc.body["reason"]), str(exc.body.get("message") or ""),
                                   exc.body) from None
            raise
        return response.content

    def resolve_user(self, id_type: str, id_number: str, *, retry: RetryPolicy | None = None) -> dict:
        """统一用户: the unified user service's answer for one identity number (404 unknown, 409 ambiguous).
        `retry`: the caller's policy when it can wait longer than the quick retry (throttling)."""
        return self._json("POST", RESOLVE_USER_PATH, {"id_type": id_type, "id_number": id_number}, retry=retry)

    def catalog(self, version: int | None = None) -> dict:
        """统一事项目录: the item catalogue, the latest or one `version`."""
        return self._json("GET", CATALOG_PATH + (f"?version={int(version)}" if version is not None else ""))

    def case(self, case_number: str) -> dict:
        """What the platform holds of one case (its events in order), by 办件编号."""
        return self._json("GET", f"{CASES_PATH}/{quote(case_number, safe='')}")

    def get(self, path: str) -> dict:
        """A signed GET of any platform path answering a JSON object (operators' and tests' look-ups)."""
        return self._json("GET", path)

    def stats(self) -> dict:
        """What the platform holds (counts per 实施编码 under `by_item`), for reconciliation."""
        return self._json("GET", STATS_PATH)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "PlatformClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


__all__ = [
    "CASES_PATH", "CASE_EVENTS_PATH", "CATALOG_PATH", "NUMBERING_PATH", "RESOLVE_USER_PATH", "SEALED_DOCUMENTS_PATH", "STATS_PATH",
    "PlatformClient", "PlatformRejected", "PlatformTransient", "ReceiptInvalid", "SealRejected",
]
