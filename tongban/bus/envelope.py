"""The one envelope for everything on the bus (DESIGN.md, "The message")."""
from __future__ import annotations

import hashlib
import json
import uuid
from urllib.parse import quote
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec

SCHEMA_VERSION = "1"

KIND_CASE_EVENT = "case_event"
KIND_FLOWBACK = "flowback_record"
KIND_SEALED = "sealed_document"
KIND_RECEIPT = "receipt"


# One encoder each, made once: json.dumps with options builds a new JSONEncoder on every call, and these run several
# times per message (digests, idempotency keys, the body on the bus). The bytes are the same as json.dumps's.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
# msgspec writes the same bytes as those two for text, integers, booleans, null, lists and objects with text keys
# (keys sorted by code point, the same escapes, UTF-8 unescaped) several times faster; a float (its shortest form
# differs: 1e+16 / 1e16, NaN) or any other type goes to json, so the bytes — and every digest over them — never
# depend on which encoder ran (tests/unit/test_envelope_json.py compares the two).
_FAST_CANONICAL = msgspec.json.Encoder(order="sorted")
_FAST_COMPACT = msgspec.json.Encoder()


def _plain(value: Any) -> bool:
    """Only str, int, bool, None, lists and dicts with str keys, however nested."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _plain(item):
                return False
        return True
    if kind is list:
        for item in value:
            if not _plain(item):
                return False
        return True
    return False


def canonical_json(value: Any) -> bytes:
    """Stable bytes for hashing: sorted keys, no whitespace, UTF-8."""
    if _plain(value):
        try:
            return _FAST_CANONICAL.encode(value)
        except (UnicodeEncodeError, OverflowError):  # a lone surrogate, a huge integer: json's behaviour, below
            pass
    return _CANONICAL.encode(value).encode("utf-8")


def compact_json(value: Any) -> bytes:
    """The same without sorting: keys in insertion order (the bytes on the bus)."""
    if _plain(value):
        try:
            return _FAST_COMPACT.encode(value)
        except (UnicodeEncodeError, OverflowError):
            pass
    return _COMPACT.encode(value).encode("utf-8")


def content_digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def idempotency_key(source: str, record_key: str, payload: Any) -> str:
    """source system + source record key + content digest (DESIGN.md promise 2).

    The key travels in an HTTP header, which must be ASCII: a legacy key in Chinese is percent-encoded."""
    return f"{quote(source, safe='')}:{quote(record_key, safe='#-_.')}:{content_digest(payload)[:32]}"


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Envelope:
    kind: str
    source: str
    idempotency_key: str
    payload: dict
    region: str | None = None
    correlation: str | None = None  # the 办件编号 where there is one
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: str = field(default_factory=utcnow)
    schema_version: str = SCHEMA_VERSION
    attempt: int = 0  # failed delivery attempts so far (bus retry topology)
    waits: int = 0  # times the ordering gate held it back for a predecessor
    replay_of: str | None = None  # set when an operator replays a parked or quarantined message

    def to_bytes(self) -> bytes:
        # The fields are plain JSON values already: no deep copy (dataclasses.asdict) on the hot path.
        return compact_json(self.__dict__)

    @classmethod
    def from_bytes(cls, body: bytes) -> "Envelope":
        data = json.loads(body)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
