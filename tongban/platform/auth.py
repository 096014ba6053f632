"""Signing of platform calls and of the platform's receipts (HMAC-SHA256, access key + secret).

Requests (scheme `TB-HMAC-SHA256-2`, docs/platform-auth.md): every call to the 渝快办 API carries

    X-Access-Key      the access key
    X-Date            RFC 1123 date; the platform refuses more than ±5 minutes from its clock
    X-Nonce           a fresh random value per request (an attempt retried gets a new one)
    X-Content-SHA256  hex SHA-256 of the body bytes exactly as sent (of b"" when there is none)
    X-Signature       base64(HMAC-SHA256(secret, string to sign))

and the string to sign is, one per line: the scheme name, METHOD, the path (percent-decoded), the query (parameters
decoded and sorted, re-encoded), the access key, the date, the nonce, the body's SHA-256 and the `Idempotency-Key`
header ("" when absent). So a captured request cannot be sent again with another body, another idempotency key,
another path or later than the window, nor as it is: the platform remembers each nonce until its date leaves the
window (`NonceMemory`) and refuses one seen before.

The request verifier (`RequestVerifier`, used by the mock platform) refuses, with the reason as its answer:
    missing header …          one of the five headers above is absent
    unknown access key        not the access key the platform issued
    X-Date is not …           not an RFC 1123 date
    X-Date is N s away …      outside ±MAX_CLOCK_SKEW_SECONDS
    body does not match …     the body's SHA-256 is not the X-Content-SHA256 that was signed
    signature does not match  the HMAC over the string to sign differs (wrong secret, anything signed changed)
    nonce already used        a replay of a request already accepted
    too old to check …        older than what the bounded nonce memory still covers (only under a flood)

Receipts: `signature` = base64(HMAC-SHA256(secret, canonical JSON of the receipt without "signature")),
canonical JSON as in `tongban.bus.envelope.canonical_json`.

tongban's platform client (through `PlatformAuth`, an httpx.Auth) and the mock platform (sandbox/platform.py) both
use this module; nothing else signs or checks a platform request.
"""
from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import re
import secrets
import threading
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Generator, Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import httpx

from tongban.bus.envelope import canonical_json

SCHEME = "TB-HMAC-SHA256-2"
ACCESS_KEY_HEADER = "X-Access-Key"
DATE_HEADER = "X-Date"
NONCE_HEADER = "X-Nonce"
CONTENT_SHA256_HEADER = "X-Content-SHA256"
SIGNATURE_HEADER = "X-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REQUIRED_HEADERS = (ACCESS_KEY_HEADER, DATE_HEADER, NONCE_HEADER, CONTENT_SHA256_HEADER, SIGNATURE_HEADER)
# A signed request older or newer than this is refused, so that a captured request cannot be replayed later.
MAX_CLOCK_SKEW_SECONDS = 300
# Nonces remembered at most (about 100 bytes each); beyond, the oldest go and the window shrinks (see NonceMemory).
MAX_REMEMBERED_NONCES = 200_000
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac_b64(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()).decode("ascii")


def canonical_query(query: str) -> str:
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def body_sha256(body: bytes | None) -> str:
    return hashlib.sha256(body or b"").hexdigest()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)  # 144 random bits, 24 characters


def string_to_sign(method: str, path: str, query: str, access_key: str, date: str, *, nonce: str,
                   content_sha256: str, idempotency_key: str = "") -> str:
    return "\n".join([SCHEME, method.upper(), unquote(path or "/"), canonical_query(query or ""), access_key, date,
                      nonce, content_sha256, idempotency_key])


def sign_request(method: str, path: str, query: str, access_key: str, secret: str, date: str, *, nonce: str,
                 content_sha256: str, idempotency_key: str = "") -> str:
    """base64 HMAC-SHA256 of the string to sign (see the module docstring)."""
    text = string_to_sign(method, path, query, access_key, date, nonce=nonce, content_sha256=content_sha256,
                          idempotency_key=idempotency_key)
    return _hmac_b64(secret, text.encode("utf-8"))


def http_date(moment: datetime | None = None) -> str:
    """RFC 1123 date, e.g. 'Tue, 02 Apr 2024 10:00:00 GMT'."""
    return format_datetime((moment or datetime.now(timezone.utc)).astimezone(timezone.utc), usegmt=True)


def signed_headers(method: str, url: str, access_key: str, secret: str, *, body: bytes | None = None,
                   idempotency_key: str | None = None, date: str | None = None,
                   nonce: str | None = None) -> dict[str, str]:
    """The signing headers for one call to `url` (absolute or path + query) carrying `body`; the
    `Idempotency-Key` header is included when one is given (it is signed)."""
    parts = urlsplit(url)
    date = date or http_date()
    nonce = nonce or new_nonce()
    digest = body_sha256(body)
    headers = {
        ACCESS_KEY_HEADER: access_key,
        DATE_HEADER: date,
        NONCE_HEADER: nonce,
        CONTENT_SHA256_HEADER: digest,
        SIGNATURE_HEADER: sign_request(method, parts.path, parts.query, access_key, secret, date, nonce=nonce,
                                       content_sha256=digest, idempotency_key=idempotency_key or ""),
    }
    if idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = idempotency_key
    return headers


class PlatformAuth(httpx.Auth):
    """Signs every request an httpx client sends to the platform; each attempt gets a fresh date and nonce."""

    requires_request_body = True  # the body's digest is signed, so a streamed body is read first

    def __init__(self, access_key: str, secret: str):
        self.access_key, self._secret = access_key, secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        request.headers.update(signed_headers(
            request.method, f"{request.url.path}?{request.url.query.decode('ascii')}", self.access_key, self._secret,
            body=request.content, idempotency_key=key))
        yield request

    def __repr__(self) -> str:  # never show the secret
        return f"PlatformAuth(access_key={self.access_key!r})"


class NonceMemory:
    """The nonces of accepted requests, each kept until its request's date leaves the clock-skew window.

    Bounded: at `capacity` the entries closest to expiry are forgotten first, and the oldest date still covered
    moves up (`floor`); a request dated at or before the floor is refused, since its nonce can no longer be checked.
    Under normal load nothing is forgotten before it expires."""

    def __init__(self, window_seconds: float = MAX_CLOCK_SKEW_SECONDS, capacity: int = MAX_REMEMBERED_NONCES):
        self.window, self.capacity = window_seconds, capacity
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.floor = float("-inf")  # requests whose expiry is at or below this cannot be checked any more

    def __len__(self) -> int:
        return len(self._expiry)

    def check_and_remember(self, nonce: str, sent: float, now: float) -> str | None:
        expiry = sent + self.window
        with self._lock:
            while self._heap and self._heap[0][0] < now:  # expired: the date check refuses these anyway
                _, old = heapq.heappop(self._heap)
                self._expiry.pop(old, None)
            if nonce in self._expiry:
                return "nonce already used (a replayed request)"
            if expiry <= self.floor:
                return "request too old to check for replay under the current load; send it again with a fresh date"
            while len(self._expiry) >= self.capacity:
                gone_expiry, gone = heapq.heappop(self._heap)
                self._expiry.pop(gone, None)
                self.floor = max(self.floor, gone_expiry)
            self._expiry[nonce] = expiry
            heapq.heappush(self._heap, (expiry, nonce))
        return None


class RequestVerifier:
    """Server side of the scheme: `check(...)` says why a request is not acceptable, or None when it is.

    One verifier per platform, shared by all its routes, so a nonce used on one endpoint is spent on all."""

    def __init__(self, access_key: str, secret: str, *, max_skew: float = MAX_CLOCK_SKEW_SECONDS,
                 capacity: int = MAX_REMEMBERED_NONCES):
        self.access_key, self._secret, self.max_skew = access_key, secret, max_skew
        self.nonces = NonceMemory(max_skew, capacity)

    def check(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
              now: datetime | None = None) -> str | None:
        values = {name: headers.get(name) for name in REQUIRED_HEADERS}
        missing = [name for name, value in values.items() if not value]
        if missing:
            return f"missing header {', '.join(missing)}"
        if not hmac.compare_digest(values[ACCESS_KEY_HEADER].encode(), self.access_key.encode()):
            return "unknown access key"
        date = values[DATE_HEADER]
        try:
            sent = parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            sent = None
        if sent is None or sent.tzinfo is None:
            return f"{DATE_HEADER} is not an RFC 1123 date"
        now = now or datetime.now(timezone.utc)
        skew = abs((now - sent).total_seconds())
        if skew > self.max_skew:
            return f"{DATE_HEADER} is {int(skew)} s away from the platform clock (at most {int(self.max_skew)} s)"
        nonce = values[NONCE_HEADER]
        if not _NONCE.fullmatch(nonce):
            return f"{NONCE_HEADER} must be 16 to 128 characters of A-Z a-z 0-9 _ -"
        if not hmac.compare_digest(values[CONTENT_SHA256_HEADER].lower().encode(), body_sha256(body).encode()):
            return f"body does not match {CONTENT_SHA256_HEADER} (the body was changed after signing)"
        expected = sign_request(method, path, query, self.access_key, self._secret, date, nonce=nonce,
                                content_sha256=values[CONTENT_SHA256_HEADER].lower(),
                                idempotency_key=headers.get(IDEMPOTENCY_HEADER) or "")
        if not hmac.compare_digest(values[SIGNATURE_HEADER].encode(), expected.encode()):
            return "signature does not match"
        # Remembered only once the signature holds: unsigned noise cannot fill the memory.
        return self.nonces.check_and_remember(nonce, sent.timestamp(), now.timestamp())


def receipt_signature(receipt: Mapping[str, Any], secret: str) -> str:
    body = {key: value for key, value in receipt.items() if key != "signature"}
    return _hmac_b64(secret, canonical_json(body))


def sign_receipt(receipt: Mapping[str, Any], secret: str) -> dict[str, Any]:
    """The receipt with its `signature` (re)computed."""
    return {**receipt, "signature": receipt_signature(receipt, secret)}


def verify_receipt(receipt: Mapping[str, Any], secret: str) -> bool:
    """True when the receipt's signature matches its content under `secret`."""
    signature = receipt.get("signature") if isinstance(receipt, Mapping) else None
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(signature.encode(), receipt_signature(receipt, secret).encode())
