"""Client of the 渝快办 platform: the one seam every platform endpoint is called through.

Numbering (统一赋码, `case_number`), case push (`push_event`; `push_batch`, 批量推送, when `batch_limit` says the
platform has it), sealed documents (`push_sealed`, used by
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

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import quote

import httpx

from tongban.bus.envelope import canonical_json, content_digest
from tongban.retry import RetryPolicy, is_transient_status
from tongban.settings import Settings
from tongban.tls import client_context

from .auth import IDEMPOTENCY_HEADER, PlatformAuth, signed_headers, verify_receipt
from .errors import (
    PlatformRejected, PlatformTransient, ReceiptInvalid, SealRejected, json_object, reason_from, reason_of,
    retry_after_of,
)

NUMBERING_PATH = "/api/v1/numbering"
CASE_EVENTS_PATH = "/api/v1/case-events"
SEALED_DOCUMENTS_PATH = "/api/v1/sealed-documents"
RESOLVE_USER_PATH = "/api/v1/users/resolve"
CATALOG_PATH = "/api/v1/catalog"
STATS_PATH = "/api/v1/stats"
CASES_PATH = "/api/v1/cases"
CAPABILITIES_PATH = "/api/v1/capabilities"
CASE_EVENTS_BATCH_PATH = "/api/v1/case-events/batch"

# The quick in-call retry: blips only (the bus's delay queues take anything longer).
QUICK_INITIAL_WAIT = 0.05
QUICK_MAX_WAIT = 0.5

_NETWORK_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, PlatformTransient)


@dataclass
class BatchOutcome:
    """One event's result in a batch push: its verified `receipt`, or the `error` the single push would have raised
    for it (PlatformRejected, PlatformTransient or ReceiptInvalid)."""
    idempotency_key: str
    receipt: dict | None = None
    error: Exception | None = None


def batch_body(events: Sequence[bytes], keys: Sequence[str]) -> bytes:
    """canonical_json({"events": [{"idempotency_key": key, "event": event} …]}) from each event's canonical bytes:
    the same bytes (sorted keys, no whitespace), without serialising the events a second time."""
    return b'{"events":[' + b",".join(b'{"event":' + event + b',"idempotency_key":' + canonical_json(key) + b"}"
                                      for event, key in zip(events, keys)) + b"]}"


class PlatformClient:
    """Every platform endpoint behind one signed, retried httpx client (see the module docstring)."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None, timeout: float = 5.0,
                 quick_attempts: int = 2, retry: RetryPolicy | None = None):
        self.settings = settings
        self._transport = transport if transport is not None else httpx.HTTPTransport(verify=client_context())
        self.client = httpx.Client(base_url=settings.platform_url, timeout=timeout, transport=self._transport,
                                   auth=PlatformAuth(settings.platform_access_key, settings.platform_secret),
                                   follow_redirects=False)
        # What the client would add to every request, made once (see _attempt).
        self._headers = dict(self.client.headers)
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._urls: dict[str, httpx.URL] = {}
        self.retry = retry or RetryPolicy(attempts=quick_attempts, initial_wait=QUICK_INITIAL_WAIT,
                                          max_wait=QUICK_MAX_WAIT)

    # --- the one path -------------------------------------------------------------------------------
    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            base = self.client.base_url  # joined as httpx.Client joins its base_url and a path (query included)
            url = base.copy_with(raw_path=base.raw_path + httpx.URL(path).raw_path.lstrip(b"/"))
            if len(self._urls) < 256:  # the endpoints' paths; per-case paths beyond that are parsed each time
                self._urls[path] = url
        return url

    def _request(self, method: str, path: str, content: bytes | None, headers: dict[str, str]) -> httpx.Response:
        """One signed request straight through the client's transport: what httpx.Client.request does for this client
        (base URL, default headers, timeout, PlatformAuth's signature, no redirects, no cookies) without its
        per-request machinery, which cost more CPU than the rest of a delivery (the worker pushes one event a call)."""
        request = httpx.Request(method, self._url(path), headers={**self._headers, **headers}, content=content,
                                extensions={"timeout": self._timeout})
        url = request.url
        # Each attempt carries its own date and nonce (PlatformAuth signs the same way for client.request).
        request.headers.update(signed_headers(
            method, f"{url.path}?{url.query.decode('ascii')}", self.settings.platform_access_key,
            self.settings.platform_secret, body=content, idempotency_key=headers.get(IDEMPOTENCY_HEADER)))
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        response.request = request
        return response

    def _attempt(self, method: str, path: str, content: bytes | None, headers: dict[str, str]) -> httpx.Response:
        try:
            response = self._request(method, path, content, headers)
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
              retry: RetryPolicy | None = None, content: bytes | None = None) -> dict:
        """`content`: the body already serialised (canonical JSON) by the caller, instead of `body`."""
        if content is None and body is not None:
            content = canonical_json(body)
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
        body = canonical_json(event)  # once: the request body, and its SHA-256 is what the receipt must name
        return self._checked(self._json("POST", CASE_EVENTS_PATH, content=body, idempotency_key=idempotency_key),
                             event, idempotency_key, digest=hashlib.sha256(body).hexdigest())

    def _checked(self, receipt: Any, event: dict, idempotency_key: str, *, digest: str | None = None) -> dict:
        """The receipt, if it is the platform's (HMAC) and acknowledges exactly this event; else ReceiptInvalid."""
        if not isinstance(receipt, dict) or not verify_receipt(receipt, self.settings.platform_secret):
            raise ReceiptInvalid("the platform's receipt signature does not verify")
        if receipt.get("idempotency_key") != idempotency_key:
            raise ReceiptInvalid("the receipt names another idempotency key")
        if receipt.get("digest") != (digest or content_digest(event)):
            # Non-repudiation of receipt: the platform must acknowledge exactly what we sent.
            raise ReceiptInvalid("the receipt's digest does not match the event sent")
        return receipt

    def batch_limit(self) -> int:
        """How many case events one batch push (批量推送) may carry: the platform's capabilities answer, or 0 when it
        offers no batch push (no capabilities endpoint, or none named). Transient failures raise PlatformTransient."""
        try:
            answer = self._json("GET", CAPABILITIES_PATH)
        except PlatformRejected as exc:
            if exc.status in (404, 405):
                return 0
            raise
        offer = answer.get("case_events_batch")
        limit = offer.get("max_events") if isinstance(offer, dict) else None
        if offer is not None and offer.get("path") not in (None, CASE_EVENTS_BATCH_PATH):
            return 0  # a batch path this client does not know: push one at a time
        return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 1 else 0

    def push_batch(self, events: Sequence[tuple[dict, str]]) -> list[BatchOutcome]:
        """Push several case events, `(event, idempotency_key)` each, in one signed call; one outcome per event, in
        order. The call as a whole is retried like any other (a transient failure of the whole call, after the
        quick retry, raises PlatformTransient; a refusal of the whole call, PlatformRejected); per event, a refusal
        or a transient status becomes that event's error, and every receipt is checked as `push_event` checks it."""
        keys = [key for _, key in events]
        # The call's own Idempotency-Key (signed) names the batch; each event carries its own key in the body.
        call_key = "batch-" + hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()
        # Each event serialised once: its bytes go into the body, and their SHA-256 is what its receipt must name.
        sent = [canonical_json(event) for event, _ in events]
        body = self._json("POST", CASE_EVENTS_BATCH_PATH, content=batch_body(sent, keys), idempotency_key=call_key)
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(events):
            raise PlatformTransient(f"the batch answer carries {len(results) if isinstance(results, list) else 'no'}"
                                    f" results for {len(events)} events")
        return [self._outcome(result, event, key, hashlib.sha256(raw).hexdigest())
                for result, (event, key), raw in zip(results, events, sent)]

    def _outcome(self, result: Any, event: dict, key: str, digest: str) -> BatchOutcome:
        if not isinstance(result, dict) or result.get("idempotency_key") != key:
            return BatchOutcome(key, error=ReceiptInvalid("the batch result at this event's place names another "
                                                          "idempotency key"))
        status = result.get("status")
        if status == 200:
            try:
                return BatchOutcome(key, receipt=self._checked(result.get("receipt"), event, key, digest=digest))
            except ReceiptInvalid as exc:
                return BatchOutcome(key, error=exc)
        error = result.get("error") if isinstance(result.get("error"), dict) else {}
        reason = reason_from(error) if error else f"HTTP {status}"
        if isinstance(status, int) and is_transient_status(status):
            return BatchOutcome(key, error=PlatformTransient(f"HTTP {status} for this event of a batch: {reason}"))
        return BatchOutcome(key, error=PlatformRejected(status if isinstance(status, int) else 400, reason, error))

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
    "BatchOutcome", "CAPABILITIES_PATH", "CASE_EVENTS_BATCH_PATH", "CASES_PATH", "CASE_EVENTS_PATH", "CATALOG_PATH", "NUMBERING_PATH", "RESOLVE_USER_PATH", "SEALED_DOCUMENTS_PATH", "STATS_PATH",
    "PlatformClient", "PlatformRejected", "PlatformTransient", "ReceiptInvalid", "SealRejected",
]
