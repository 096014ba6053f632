"""Keyed hashes and encryption of identity numbers (DESIGN.md promise 6).

Lookups use HMAC-SHA256 under TONGBAN_PII_KEY, so a stolen database does not give the numbers away by
hashing every possible ID number (there are only about 10^10 of them: a plain hash would). The number
itself is kept only Fernet-encrypted, under a key derived from the same secret (HKDF), so that a retry
can ask the platform again.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def pii_hash(number: str, key: str) -> str:
    """The lookup key of a normalised identity number."""
    return hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=8)
def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"tongban identity-number encryption").derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(number: str, key: str) -> str:
    return _fernet(key).encrypt(number.encode()).decode("ascii")


def decrypt(token: str, key: str) -> str | None:
    """The number, or None when the token was made under another key (TONGBAN_PII_KEY was rotated)."""
    try:
        return _fernet(key).decrypt(token.encode("ascii")).decode()
    except InvalidToken:
        return None
