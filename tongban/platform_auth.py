"""Signing of platform calls and of the platform's receipts (HMAC-SHA256, access key + secret).

Requests: every call to the 渝快办 API carries `X-Access-Key`, `X-Date` (RFC 1123) and
`X-Signature` = base64(HMAC-SHA256(secret, "METHOD\\npath\\nquery\\naccess-key\\ndate")), the scheme a
provincial gateway uses (reference/standards.md). To survive HTTP stacks that encode the same URL
differently, the path is signed percent-decoded and the query with its parameters decoded and sorted.
The body is not covered by the request signature; the receipt's `digest` binds what was stored.

Receipts: `signature` = base64(HMAC-SHA256(secret, canonical JSON of the receipt without "signature")),
canonical JSON as in `tongban.envelope.canonical_json`.

tongban's platform client and the mock platform (sandbox/platform.py) both use these functions.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from tongban.envelope import canonical_json

ACCESS_KEY_HEADER = "X-Access-Key"
DATE_HEADER = "X-Date"
SIGNATURE_HEADER = "X-Signature"
# A signed request older or newer than this is refused, so that a captured request cannot be replayed later.
MAX_CLOCK_SKEW_SECONDS = 900


def _hmac_b64(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()).decode("ascii")


def canonical_query(query: str) -> str:
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def string_to_sign(method: str, path: str, query: str, access_key: str, date: str) -> str:
    return "\n".join([method.upper(), unquote(path or "/"), canonical_query(query or ""), access_key, date])


def sign_request(method: str, path: str, query: str, access_key: str, secret: str, date: str) -> str:
    """base64 HMAC-SHA256 of "METHOD\\npath\\nquery\\naccess-key\\ndate" (path and query canonicalised)."""
    return _hmac_b64(secret, string_to_sign(method, path, query, access_key, date).encode("utf-8"))


def http_date(moment: datetime | None = None) -> str:
    """RFC 1123 date, e.g. 'Tue, 02 Apr 2024 10:00:00 GMT'."""
    return format_datetime((moment or datetime.now(timezone.utc)).astimezone(timezone.utc), usegmt=True)


def signed_headers(method: str, url: str, access_key: str, secret: str, date: str | None = None) -> dict[str, str]:
    """The three signing headers for a call to `url` (absolute or path + query)."""
    parts = urlsplit(url)
    date = date or http_date()
    return {
        ACCESS_KEY_HEADER: access_key,
        DATE_HEADER: date,
        SIGNATURE_HEADER: sign_request(method, parts.path, parts.query, access_key, secret, date),
    }


def check_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    access_key: str,
    secret: str,
    now: datetime | None = None,
) -> str | None:
    """Server side: why the request's signature is not acceptable, or None when it is."""
    given_key = headers.get(ACCESS_KEY_HEADER)
    date = headers.get(DATE_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    missing = [name for name, value in ((ACCESS_KEY_HEADER, given_key), (DATE_HEADER, date), (SIGNATURE_HEADER, signature)) if not value]
    if missing:
        return f"missing header {', '.join(missing)}"
    if not hmac.compare_digest(given_key.encode(), access_key.encode()):
        return "unknown access key"
    try:
        sent = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        sent = None
    if sent is None or sent.tzinfo is None:
        return f"{DATE_HEADER} is not an RFC 1123 date"
    skew = abs(((now or datetime.now(timezone.utc)) - sent).total_seconds())
    if skew > MAX_CLOCK_SKEW_SECONDS:
        return f"{DATE_HEADER} is {int(skew)} s away from the platform clock (at most {MAX_CLOCK_SKEW_SECONDS} s)"
    expected = sign_request(method, path, query, access_key, secret, date)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return "signature does not match"
    return None


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
