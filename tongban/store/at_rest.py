"""Encryption at rest of the stored records that carry personal data (DESIGN.md promise 6).

Quarantine keeps whole legacy records, parking whole envelopes, change detection the last snapshot of each
case, the embedded bus its queued messages: all of them hold 证件号码, names and phone numbers. They are stored
Fernet-encrypted under a key derived (HKDF) from TONGBAN_PII_KEY, so a copied database file or dump does not
give them away. Values written before encryption was introduced (no prefix) are read as they are.

The key comes from the process's settings (`tongban.settings.current()`, read once), not from the environment
on every call; a caller holding other settings passes `key=`.
"""
from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1:"


class UnreadableRecord(Exception):
    """A stored record encrypted under another key (TONGBAN_PII_KEY changed without re-encrypting)."""


@lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"tongban stored-record encryption").derive(key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(derived))


def _key(key: str | None) -> str:
    if key is not None:
        return key
    from tongban.settings import current

    return current().pii_key


def protect(text: str | None, *, key: str | None = None) -> str | None:
    if text is None:
        return None
    return PREFIX + _fernet(_key(key)).encrypt(text.encode("utf-8")).decode("ascii")


def reveal(stored: str | None, *, key: str | None = None) -> str | None:
    if stored is None or not stored.startswith(PREFIX):
        return stored
    try:
        return _fernet(_key(key)).decrypt(stored[len(PREFIX):].encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise UnreadableRecord("a stored record was encrypted under another TONGBAN_PII_KEY") from None
