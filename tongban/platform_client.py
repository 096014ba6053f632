"""Client of the 渝快办 platform: the one seam every platform endpoint is called through.

Numbering (统一赋码), case push, sealed documents (`push_sealed`, used by tongban.seal.exchange), the unified user
service (`resolve_user`, used by tongban.identity), the item catalogue (`catalog`) and reconciliation statistics
(`stats`) all go through `send`: one httpx client, one signing path (`tongban.platform_auth.PlatformAuth`: the signature binds
method, path, query, body digest, Idempotency-Key, date and a fresh nonce per attempt), one mapping of failures
and one quick in-call retry (tenacity) that absorbs blips; longer outages are the bus's job (delay queues, then
parking). Redirects are never followed: a signed request goes to the configured platform or nowhere.
"""
from __future__ import annotations

from typing import Any

import httpx
import tenacity

from tongban.bus.envelope import canonical_json, content_digest
from tongban.platform_auth import IDEMPOTENCY_HEADER, PlatformAuth, verify_receipt
from tongban.settings import Settings

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
NUMBERING_PATH = "/api/v1/numbering"
CASE_EVENTS_PATH = "/api/v1/case-events"
SEALED_DOCUMENTS_PATH = "/api/v1/sealed-documents"
RESOLVE_USER_PATH = "/api/v1/users/resolve"
CATALOG_PATH = "/api/v1/catalog"
STATS_PATH = "/api/v1/stats"


class PlatformTransient(Exception):
    """Worth retrying later: timeout, connection error, 5xx, 429."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PlatformRejected(Exception):
    """The platform refused the request for good (4xx): not retried; quarantined with its reason.
    `body` is the platform's JSON answer ({} when it was not a JSON object)."""

    def __init__(self, status: int, reason: str, body: dict | None = None):
        super().__init__(f"platform rejected (HTTP {status}): {reason}")
        self.status, self.reason, self.body = status, reason, body or {}


class ReceiptInvalid(Exception):
    pass


def _json_object(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("error", "rule", "reason", "details") if body.get(k)]
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
        self.client = httpx.Client(base_url=settings.platform_url, timeout=timeout, transport=transport,
                                   auth=PlatformAuth(settings.platform_access_key, settings.platform_secret),
                                   follow_redirects=False)
        self.quick_attempts = quick_attempts

    # --- the one path -------------------------------------------------------------------------------
    def send(self, method: str, path: str, *, content: bytes | None = None, content_type: str = "application/json",
             idempotency_key: str | None = None) -> httpx.Response:
        """One signed call (quick retry included); returns the 2xx response or raises PlatformTransient /
        PlatformRejected."""
        headers = {"Content-Type": content_type}
        if idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = idempotency_key

        def attempt() -> httpx.Response:
            try:
                # Signed inside the request (PlatformAuth): each attempt carries its own date and nonce.
                response = self.client.request(method, path, content=content, headers=headers)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise PlatformTransient(f"{type(exc).__name__} calling {path}") from exc
            if response.status_code in TRANSIENT_STATUS:
                raise PlatformTransient(f"HTTP {response.status_code} from {path}: {_reason(response)}",
                                        _retry_after(response))
            if response.status_code >= 400:
                raise PlatformRejected(response.status_code, _reason(response), _json_object(response))
            if response.status_code >= 300:
                raise PlatformRejected(response.status_code, f"the platform redirected {path} to "
                                       f"{response.headers.get('Location', '?')}; redirects are not followed")
            return response

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.quick_attempts),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=0.5),
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, PlatformTransient) and (e.retry_after or 0) <= 0.5),
            reraise=True)
        return retrying(attempt)

    def _call(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> dict:
        key = (headers or {}).get(IDEMPOTENCY_HEADER)
        content = canonical_json(body) if body is not None else None
        response = self.send(method, path, content=content, idempotency_key=key)
        try:
            return response.json()
        except ValueError:
            raise PlatformRejected(response.status_code, f"{path} answered with something that is not JSON") from None

    # --- endpoints ----------------------------------------------------------------------------------
    def get(self, path: str) -> dict:
        return self._call("GET", path)

    def post_json(self, path: str, body: Any) -> dict:
        return self._call("POST", path, body)

    def case_number(self, source_system: str, source_key: str, item_code: str) -> str:
        """统一赋码: the platform's 办件编号 for a legacy case (idempotent on the platform's side)."""
        body = self.post_json(NUMBERING_PATH,
                              {"source_system": source_system, "source_key": source_key, "item_code": item_code})
        number = body.get("case_number")
        if not number or len(number) > 50:
            raise PlatformRejected(200, f"numbering service returned an unusable case number {number!r}")
        return number

    def push_event(self, event: dict, idempotency_key: str) -> dict:
        """Push one case event; returns the verified receipt."""
        receipt = self._call("POST", CASE_EVENTS_PATH, event, {IDEMPOTENCY_HEADER: idempotency_key})
        if not isinstance(receipt, dict) or not verify_receipt(receipt, self.settings.platform_secret):
            raise ReceiptInvalid("the platform's receipt signature does not verify")
        if receipt.get("idempotency_key") != idempotency_key:
            raise ReceiptInvalid("the receipt names another idempotency key")
        if receipt.get("digest") != content_digest(event):
            # Non-repudiation of receipt: the platform must acknowledge exactly what we sent.
            raise ReceiptInvalid("the receipt's digest does not match the event sent")
        return receipt

    def resolve_user(self, id_type: str, id_number: str) -> dict:
        """统一用户: the unified user service's answer for one identity number (404 unknown, 409 ambiguous)."""
        return self.post_json(RESOLVE_USER_PATH, {"id_type": id_type, "id_number": id_number})

    def catalog(self, version: int | None = None) -> dict:
        """统一事项目录: the item catalogue, the latest or one `version`."""
        return self.get(CATALOG_PATH + (f"?version={int(version)}" if version is not None else ""))

    def stats(self) -> dict:
        """What the platform holds (counts per 实施编码 under `by_item`), for reconciliation."""
        return self.get(STATS_PATH)

    def push_sealed(self, document: bytes, idempotency_key: str) -> bytes:
        """POST sealed XML; returns the platform's sealed receipt (bytes, verified by the caller against the
        trust store: tongban.seal.exchange)."""
        return self.send("POST", SEALED_DOCUMENTS_PATH, content=document, content_type="application/xml",
                         idempotency_key=idempotency_key).content

    def close(self) -> None:
        self.client.close()
