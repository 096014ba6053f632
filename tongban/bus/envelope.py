"""The one envelope for everything on the bus (DESIGN.md, "The message")."""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from functools import lru_cache
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


_SCALARS = frozenset({str, int, bool, type(None)})
_NESTED = frozenset({dict, list})
_STR = {str}


def _plain(value: Any) -> bool:
    """Only str, int, bool, None, lists and dicts with str keys, however nested. The types of a container's items are
    taken as one set (map(type, …) runs in C): a record of text fields costs two set builds, not a call per field."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            if item and set(map(type, item)) != _STR:
                return False
            kinds = set(map(type, item.values()))
            items = item.values()
        elif kind is list:
            kinds = set(map(type, item))
            items = item
        else:
            return kind in _SCALARS
        if kinds <= _SCALARS:
            continue
        if not kinds <= _SCALARS | _NESTED:
            return False
        pending.extend(x for x in items if type(x) in _NESTED)
    return True


def canonical_json(value: Any) -> bytes:
    """Stable bytes for hashing: sorted keys, no whitespace, UTF-8."""
    if _plain(value):
        try:
            return _FAST_CANONICAL.encode(value)
        except (UnicodeEncodeError, OverflowError):  # a lone surrogate, a huge integer: json's behaviour, below
            pass
    return _CANONICAL.encode(value).encode("utf-8")


def canonical_text(record: dict[str, str]) -> bytes:
    """canonical_json of a dict whose keys and values the caller knows are all text (no check made here)."""
    try:
        return _FAST_CANONICAL.encode(record)
    except UnicodeEncodeError:
        return _CANONICAL.encode(record).encode("utf-8")  # a lone surrogate: json's own error


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
    return f"{_quoted_source(source)}:{_quoted_key(record_key)}:{content_digest(payload)[:32]}"


def text_idempotency_key(source: str, record_key: str, record: dict[str, str]) -> str:
    """`idempotency_key` of a record the caller knows is text only (a normalised national record): the same key."""
    return f"{_quoted_source(source)}:{_quoted_key(record_key)}:{hashlib.sha256(canonical_text(record)).hexdigest()[:32]}"


def digest_idempotency_key(source: str, record_key: str, digest_hex: str) -> str:
    """`text_idempotency_key` when the caller holds the SHA-256 (hex) of the record's canonical_text already."""
    return f"{_quoted_source(source)}:{_quoted_key(record_key)}:{digest_hex[:32]}"


@lru_cache(maxsize=256)
def _quoted_source(source: str) -> str:
    return quote(source, safe='')


_KEY_AS_IS = re.compile(r"[A-Za-z0-9#\-_.~]*")  # what quote(key, safe='#-_.') leaves unchanged


def _quoted_key(record_key: str) -> str:
    return record_key if _KEY_AS_IS.fullmatch(record_key) else quote(record_key, safe='#-_.')


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version nibble and the variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)        # version 4, RFC 4122 variant


_ids = threading.local()


def _id_stream():
    """uuid4 hex ids from one os.urandom call per 256 (a system call per id cost more than the rest of it)."""
    while True:
        raw = os.urandom(16 * 256)
        for start in range(0, len(raw), 16):
            yield f"{int.from_bytes(raw[start:start + 16], 'big') & _UUID4_CLEAR | _UUID4_SET:032x}"


def _forget_ids() -> None:
    global _ids
    _ids = threading.local()  # a forked child must not repeat its parent's buffered ids


os.register_at_fork(after_in_child=_forget_ids)


def new_id() -> str:
    """`uuid.uuid4().hex` (random, version 4, RFC 4122 variant), without building a UUID object per id."""
    stream = getattr(_ids, "stream", None)
    if stream is None:
        stream = _ids.stream = _id_stream()
    return next(stream)


_UUID7_SET = (0x7000 << 64) | (0x8000 << 48)        # version 7, RFC 9562 variant


def _random_stream():
    """80-bit random integers from one os.urandom call per 256."""
    while True:
        raw = os.urandom(10 * 256)
        for start in range(0, len(raw), 10):
            yield int.from_bytes(raw[start:start + 10], 'big')


def ordered_id() -> str:
    """A time-ordered id (RFC 9562 UUIDv7 as 32 hex digits: Unix milliseconds, then 74 random bits), the same width
    as `new_id`. Ids made one after the other sort one after the other (to the millisecond), so a table or index
    keyed by them appends at its end instead of splitting a random page of its B-tree for every row: the flowback
    router makes one per routed record (flowback_records' and flowback_deliveries' message ids)."""
    stream = getattr(_ids, "random", None)
    if stream is None:
        stream = _ids.random = _random_stream()  # buffered randomness: no system call per id
    return f"{((time.time_ns() // 1_000_000) << 80 | next(stream)) & _UUID4_CLEAR | _UUID7_SET:032x}"


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
    message_id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utcnow)
    schema_version: str = SCHEMA_VERSION
    attempt: int = 0  # failed delivery attempts so far (bus retry topology)
    waits: int = 0  # times the ordering gate held it back for a predecessor
    replay_of: str | None = None  # set when an operator replays a parked or quarantined message

    def to_bytes(self) -> bytes:
        # The fields are plain JSON values already: no deep copy (dataclasses.asdict) on the hot path.
        # The other fields are text, integers or null by construction: only the payload decides the encoder.
        if _plain(self.payload):
            try:
                return _FAST_COMPACT.encode(self.__dict__)
            except (UnicodeEncodeError, OverflowError):
                pass
        return _COMPACT.encode(self.__dict__).encode("utf-8")

    @classmethod
    def from_bytes(cls, body: bytes) -> "Envelope":
        data = json.loads(body)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class TextEnvelope(Envelope):
    """An envelope whose maker built its payload from text, integers, booleans, null, lists and dicts with text keys
    only (a flowback record: its national fields, route and batch ids): its bytes go straight to msgspec, without
    `_plain`'s walk. The same bytes as Envelope.to_bytes; it reads back as an Envelope."""

    def to_bytes(self) -> bytes:
        try:
            return _FAST_COMPACT.encode(self.__dict__)
        except (UnicodeEncodeError, OverflowError, TypeError):  # not what the maker promised: the checked way
            return super().to_bytes()
