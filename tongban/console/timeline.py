"""A case's timeline for the console: the events `tongban trace` finds (tongban.audit.ledger.trace, the one lineage
search), each with its hash, what its receipt signature check says and what its seal verdict is.

This module reads what the ledger holds and judges nothing itself: a receipt's status is whatever its event
recorded (the verification verdict of a platform-signed receipt, the check of a sealed receipt, or — for receipts
signed with the shared HMAC secret — that such a signature was recorded), a seal verdict is the `result` /
`verification` the seal events carry."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tongban.audit import ledger

# Detail keys that hold a receipt's signature verdict, most specific first (platform-signed receipts, sealed
# receipts, older spellings). The first present is shown as it is.
RECEIPT_VERDICT_KEYS = ("receipt_signature", "signature_status", "signature_check", "signature_verified",
                        "receipt_check", "verified", "verification")
SEAL_HOPS = ("sealed", "seal_verified")


@dataclass
class TimelineRow:
    seq: int
    at: str
    hop: str
    system: str
    message_id: str
    hash: str
    prev_hash: str
    detail: str
    receipt_status: str = ""
    seal_verdict: str = ""
    flags: list[str] = field(default_factory=list)


@dataclass
class Timeline:
    ident: str
    rows: list[TimelineRow]
    case_numbers: list[str]
    systems: list[str]
    source_keys: list[str]


def receipt_status(hop: str, detail: dict[str, Any]) -> str:
    """What the event says of its receipt's signature; "" for events that are not receipts."""
    if hop != "receipt":
        return ""
    for key in RECEIPT_VERDICT_KEYS:
        if key in detail and detail[key] not in (None, ""):
            value = detail[key]
            if isinstance(value, dict):
                value = value.get("status") or value.get("result") or json.dumps(value, ensure_ascii=False)
            return f"{key}: {value}"
    if isinstance(detail.get("jws"), str) and detail["jws"]:
        alg = _jws_alg(detail["jws"])
        return f"platform-signed receipt (JWS{' ' + alg if alg else ''}) recorded; verified before the ack"
    if detail.get("signature"):
        return "HMAC-SHA256 (shared secret) signature recorded; checked on receipt"
    return "no signature recorded"


def _jws_alg(token: str) -> str:
    """The `alg` of a compact JWS's protected header, as recorded ("" when it cannot be read)."""
    import base64

    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError):
        return ""
    alg = header.get("alg") if isinstance(header, dict) else None
    return alg if isinstance(alg, str) and alg.isalnum() else ""


def seal_verdict(hop: str, detail: dict[str, Any]) -> str:
    """The seal's verification result the event carries; "" when it carries none."""
    parts = []
    if hop in SEAL_HOPS and detail.get("result"):
        parts.append(f"{detail.get('by') or 'seal'}: {detail['result']}")
    seal = detail.get("seal")
    if isinstance(seal, dict) and seal.get("result"):
        parts.append(f"sender seal: {seal['result']}")
    if detail.get("platform_verification"):
        parts.append(f"platform: {detail['platform_verification']}")
    if hop == "receipt" and detail.get("verification"):
        parts.append(f"platform: {detail['verification']}")
    return "; ".join(parts)


def compact(detail: dict[str, Any]) -> str:
    """key=value pairs as `tongban trace` prints them; long digests and signatures shortened (kept whole in the
    ledger). Masking is the page's job (every value rendered is masked)."""
    parts = []
    for key, value in detail.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if (key.endswith("digest") or "signature" in key or key.endswith("_xml") or key == "jws") and len(text) > 20:
            text = text[:16] + "…"
        parts.append(f"{key}={text}")
    return " ".join(parts)


def build(store, ident: str) -> Timeline | None:
    events = ledger.trace(store, ident)
    if not events:
        return None
    rows = []
    for ev in events:
        detail = ev["detail"] if isinstance(ev["detail"], dict) else {"detail": ev["detail"]}
        flags = [f"replay of {detail['replay_of']}"] if detail.get("replay_of") else []
        rows.append(TimelineRow(ev["seq"], ev["at"], ev["hop"], ev["system"] or "", ev["message_id"] or "",
                                ev["hash"], ev["prev_hash"], compact(detail), receipt_status(ev["hop"], detail),
                                seal_verdict(ev["hop"], detail), flags))
    return Timeline(ident, rows,
                    sorted({e["case_number"] for e in events if e["case_number"]}),
                    sorted({e["system"] for e in events if e["system"]}),
                    sorted({e["source_key"] for e in events if e["source_key"]}))
