"""Compact JWS (RFC 7515), ES256 (ECDSA P-256 / SHA-256), with the signer's certificate chain in `x5c`.

Made with PyJWT's JWS layer (`jwt.api_jws`, pinned in requirements.lock) over keys from `cryptography`; the
signature is checked with PyJWT's ES256 algorithm (`jwt.algorithms`: the raw r‖s signature, the P-256 curve). The
payload is tongban's canonical JSON (sorted keys, no spaces), so the signed bytes of a receipt or a tree head are the
same on every machine. `verify` reads the leaf certificate from `x5c`, lets the caller decide whether that certificate
is acceptable (trust store, pinning), and then checks the signature with its public key; only ES256 is accepted (no
`none`, no HMAC confusion), and a header naming any critical extension (`crit`, e.g. an unencoded payload) is refused.

Why `verify` splits the compact form itself: the delivery worker checks one JWS per receipt, and PyJWT decodes
every segment with a per-character Python check, twice when the header is read before the signature (the `x5c`
chain makes the header the largest segment). Here each segment is decoded once, as strictly (base64url alphabet,
no padding, canonical trailing bits: one token has exactly one encoding), with the checks in C; the parsed `x5c`
certificates are kept by their bytes (a small bounded cache: parsing is not a trust decision, the caller's
`accept` still sees every certificate).
"""
from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tongban.bus.envelope import canonical_json

ALGORITHM = "ES256"


class JWSInvalid(ValueError):
    """The JWS is malformed, names no usable certificate, or its signature does not verify."""


@dataclass
class Verified:
    payload: dict[str, Any]
    header: dict[str, Any]
    certificate: x509.Certificate
    chain: list[x509.Certificate]


def _der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def sign(payload: dict[str, Any], key, chain: list[x509.Certificate], *, typ: str) -> str:
    """The compact JWS of `payload` (canonical JSON) signed with `key`; `chain` (leaf first) goes in `x5c`."""
    headers = {"typ": typ, "x5c": [_der_b64(c) for c in chain]}
    return jwt.api_jws.encode(canonical_json(payload), key, algorithm=ALGORITHM, headers=headers)


_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")
_ES256 = jwt.api_jws.PyJWS().get_algorithm_by_name(ALGORITHM)
_CERTS_KEPT = 64
_parsed: dict[tuple[str, ...], list[x509.Certificate]] = {}  # x5c entries -> their certificates (bounded)
_parsed_lock = threading.Lock()


def _segment(part: bytes, name: str) -> bytes:
    """One base64url segment of a compact JWS, decoded: its alphabet only, no padding, canonical (RFC 7515 §2)."""
    if not _SEGMENT.fullmatch(part) or len(part) % 4 == 1:
        raise JWSInvalid(f"the JWS {name} is not base64url without padding")
    decoded = base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != part:
        raise JWSInvalid(f"the JWS {name} is not canonical base64url")
    return decoded


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise JWSInvalid(f"the JWS {name} is not JSON") from None
    if not isinstance(value, dict):
        raise JWSInvalid(f"the JWS {name} is not a JSON object")
    return value


def _chain(header: dict[str, Any]) -> list[x509.Certificate]:
    entries = header.get("x5c") or []
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise JWSInvalid("the JWS header's x5c is not a list of base64 certificates")
    key = tuple(entries)
    chain = _parsed.get(key)
    if chain is None:
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(e, validate=True)) for e in entries]
        except (ValueError, TypeError) as exc:
            raise JWSInvalid(f"not a compact JWS with an x5c certificate chain ({exc})") from None
        with _parsed_lock:
            if len(_parsed) >= _CERTS_KEPT:
                _parsed.pop(next(iter(_parsed)))  # the oldest: a signer's chain changes seldom
            _parsed[key] = chain
    return list(chain)


def _parse(token: Any) -> tuple[bytes, dict[str, Any], bytes, bytes]:
    """(signing input, header, payload bytes, signature) of a compact JWS, each segment decoded once."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise JWSInvalid("not a compact JWS (three base64url parts separated by dots)")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise JWSInvalid("not a compact JWS (characters outside base64url)") from None
    header_part, payload_part, signature_part = raw.split(b".")
    header = _json_object(_segment(header_part, "header"), "header")
    return (header_part + b"." + payload_part, header, _segment(payload_part, "payload"),
            _segment(signature_part, "signature"))


def certificates(token: str) -> list[x509.Certificate]:
    """The `x5c` chain of a compact JWS (unverified)."""
    return _chain(_parse(token)[1])


def verify(token: str, accept: Callable[[x509.Certificate, list[x509.Certificate]], None]) -> Verified:
    """Check `token`: `accept(leaf, chain)` raises when the leaf certificate is not acceptable; then the ES256
    signature must verify under the leaf's key. Returns the payload, header and certificate."""
    signing_input, header, payload_bytes, signature = _parse(token)
    if header.get("alg") != ALGORITHM:
        raise JWSInvalid(f"the JWS does not verify: algorithm {header.get('alg')!r} is not allowed (only {ALGORITHM})")
    if "crit" in header or header.get("b64", True) is not True:
        raise JWSInvalid("the JWS header names critical extensions (crit, b64), which are not accepted")
    chain = _chain(header)
    if not chain:
        raise JWSInvalid("the JWS header carries no x5c certificate")
    accept(chain[0], chain[1:])
    try:
        key = _ES256.prepare_key(chain[0].public_key())
    except (jwt.PyJWTError, TypeError, ValueError) as exc:
        raise JWSInvalid(f"the JWS does not verify: the certificate's key is not a P-256 key ({exc})") from None
    if not _ES256.verify(signing_input, key, signature):
        raise JWSInvalid(f"the ES256 signature does not verify under the key of "
                         f"{chain[0].subject.rfc4514_string()}")
    payload = _json_object(payload_bytes, "payload")
    return Verified(payload, header, chain[0], chain)
