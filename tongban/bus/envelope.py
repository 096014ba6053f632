"""The one envelope for everything on the bus (DESIGN.md, "The message")."""
from __future__ import annotations

import hashlib
import json
import uuid
from urllib.parse import quote
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = "1"

KIND_CASE_EVENT = "case_event"
KIND_FLOWBACK = "flowback_record"
KIND_SEALED = "sealed_document"
KIND_RECEIPT = "receipt"


# One encoder each, made once: json.dumps with options builds a new JSONEncoder on every call, and these run several
# times per message (digests, idempotency keys, the body on the bus). The bytes are the same as json.dumps's.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_json(value: Any) -> bytes:
    """Stable bytes for hashing: sorted keys, no whitespace, UTF-8."""
    return _CANONICAL.encode(value).encode("utf-8")


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
        return _COMPACT.encode(self.__dict__).encode("utf-8")

    @classmethod
    def from_bytes(cls, body: bytes) -> "Envelope":
        data = json.loads(body)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
