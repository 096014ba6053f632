"""Compact JWS (RFC 7515), ES256 (ECDSA P-256 / SHA-256), with the signer's certificate chain in `x5c`.

Made and checked with PyJWT's JWS layer (`jwt.api_jws`, pinned in requirements.lock) over keys from `cryptography`:
no hand-written JOSE. The payload is tongban's canonical JSON (sorted keys, no spaces), so the signed bytes of a
receipt or a tree head are the same on every machine. `verify` reads the leaf certificate from `x5c`, lets the
caller decide whether that certificate is acceptable (trust store, pinning), and then checks the signature with
its public key; only ES256 is accepted (no `none`, no HMAC confusion).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Callable

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tongban.envelope import canonical_json

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


def certificates(token: str) -> list[x509.Certificate]:
    """The `x5c` chain of a compact JWS (unverified)."""
    try:
        header = jwt.api_jws.get_unverified_header(token)
        return [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header.get("x5c") or []]
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise JWSInvalid(f"not a compact JWS with an x5c certificate chain ({exc})") from None


def verify(token: str, accept: Callable[[x509.Certificate, list[x509.Certificate]], None]) -> Verified:
    """Check `token`: `accept(leaf, chain)` raises when the leaf certificate is not acceptable; then the ES256
    signature must verify under the leaf's key. Returns the payload, header and certificate."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise JWSInvalid("not a compact JWS (three base64url parts separated by dots)")
    chain = certificates(token)
    if not chain:
        raise JWSInvalid("the JWS header carries no x5c certificate")
    accept(chain[0], chain[1:])
    try:
        decoded = jwt.api_jws.PyJWS().decode_complete(token, chain[0].public_key(), algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError:
        raise JWSInvalid(f"the ES256 signature does not verify under the key of "
                         f"{chain[0].subject.rfc4514_string()}") from None
    except jwt.PyJWTError as exc:
        raise JWSInvalid(f"the JWS does not verify: {exc}") from None
    try:
        payload = json.loads(decoded["payload"])
    except ValueError:
        raise JWSInvalid("the JWS payload is not JSON") from None
    if not isinstance(payload, dict):
        raise JWSInvalid("the JWS payload is not a JSON object")
    return Verified(payload, decoded["header"], chain[0], chain)
