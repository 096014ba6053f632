"""Operator actions on identities: look a person up (itself a ledger event), list and accept conflicts, and
retry unresolved applicants (the callable behind the retry DAG)."""
from __future__ import annotations

import json
import logging
import re
from typing import Any

from sqlalchemy import delete, func, select

from tongban import codes
from tongban.audit import ledger
from tongban.bus.envelope import utcnow
from tongban.audit.ledger import LedgerEvent
from tongban.settings import Settings, load
from tongban.store import Store, open_store

from .protect import decrypt, pii_hash
from .resolver import ACCEPTED, AMBIGUOUS, OPEN, PERSON_NUMBER_FOR_LEGAL_PERSON, RESOLVED, UNKNOWN, IdentityResolver
from .tables import identity_accounts, identity_conflicts, identity_users, identity_waiting
from .users import CREDIT_CODE, ID_CARD, IdentityThrottled, IdentityUnresolved

log = logging.getLogger("tongban.identity")


def _classify(number: str) -> tuple[str, str]:
    """(id_type, normalised number) of an operator-typed number; IdentityUnresolved if it is neither kind."""
    text = codes.normalise(number)
    try:
        # 17 digits + digit/X is an ID card number, and must then pass its own rules (a mistyped ID number
        # is not silently taken for a credit code, whose alphabet contains every digit).
        if re.fullmatch(r"\d{17}[\dX]", text):
            return ID_CARD, codes.parse_id_number(text).value
        return CREDIT_CODE, codes.parse_credit_code(text, strict=False).value
    except codes.CodeError as exc:
        raise IdentityUnresolved("invalid", "id_number", f"{codes.mask_id_number(text)}: {exc.field}: {exc.rule}") from None


def lookup(store: Store, number: str, *, operator: str, purpose: str | None = None,
           settings: Settings | None = None) -> dict[str, Any]:
    """What tongban knows about one person, masked; the lookup itself is recorded as a `pii_lookup` event."""
    key = (settings or load()).pii_key
    id_type, text = _classify(number)
    digest = pii_hash(text, key)
    with store.read() as conn:
        user = conn.execute(select(identity_users).where(identity_users.c.pii_hash == digest)).mappings().first()
        accounts = [dict(r) for r in conn.execute(select(identity_accounts.c.system, identity_accounts.c.account_id)
                                                  .where(identity_accounts.c.pii_hash == digest)).mappings()]
        conflicts = [dict(r) for r in conn.execute(
            select(identity_conflicts.c.id, identity_conflicts.c.kind, identity_conflicts.c.status,
                   identity_conflicts.c.detail).where(identity_conflicts.c.pii_hashes.contains(digest))).mappings()]
        waiting = conn.execute(select(func.count()).select_from(identity_waiting)
                               .where(identity_waiting.c.pii_hash == digest)).scalar() or 0
    result = {
        "id_number": codes.mask_id_number(text), "id_type": id_type, "found": user is not None,
        "status": user["status"] if user else None, "user_id": user["user_id"] if user else None,
        "reason": user["reason"] if user else None, "updated_at": user["updated_at"] if user else None,
        "accounts": accounts, "conflicts": conflicts, "waiting_cases": waiting,
    }
    # Who looked at whom and why: the subject is recorded masked and by a short keyed reference only.
    ledger.record(store, LedgerEvent("pii_lookup", {"operator": operator, "purpose": purpose or "",
                                                    "subject": codes.mask_id_number(text), "ref": digest[:16],
                                                    "found": user is not None}))
    return result


def list_conflicts(store: Store, *, status: str = OPEN) -> list[dict[str, Any]]:
    query = select(identity_conflicts.c.id, identity_conflicts.c.at, identity_conflicts.c.kind,
                   identity_conflicts.c.system, identity_conflicts.c.account_ids, identity_conflicts.c.detail,
                   identity_conflicts.c.status).order_by(identity_conflicts.c.id)
    if status != "all":
        query = query.where(identity_conflicts.c.status == status)
    with store.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def accept_conflict(store: Store, conflict_id: int, *, operator: str, note: str | None = None) -> str:
    """An operator decides the conflict is genuine (e.g. a re-issued ID number): its cases may go on."""
    with store.write() as conn:
        row = conn.execute(select(identity_conflicts).where(identity_conflicts.c.id == conflict_id)).mappings().first()
        if row is None:
            return f"no identity conflict #{conflict_id}"
        if row["kind"] == PERSON_NUMBER_FOR_LEGAL_PERSON:
            return (f"conflict #{conflict_id} ({row['kind']}) cannot be accepted: fix the legacy record or the "
                    f"mapping file, then replay its quarantined cases")
        if row["status"] == ACCEPTED:
            return f"conflict #{conflict_id} was already accepted"
        conn.execute(identity_conflicts.update().where(identity_conflicts.c.id == conflict_id)
                     .values(status=ACCEPTED, decided_by=operator, decided_at=utcnow()))
        ledger.append(conn, [LedgerEvent("identity_conflict", {"conflict_id": conflict_id, "kind": row["kind"],
                                                               "decision": "accepted", "operator": operator,
                                                               "note": codes.mask_text(note or "")},
                                         system=row["system"])])
    return f"conflict #{conflict_id} accepted; `tongban identity retry` replays its waiting cases"


def retry_unresolved(*, store: Store | None = None, platform: Any = None, bus: Any = None,
                     settings: Settings | None = None, mappings_dir=None, replay: bool = True) -> dict[str, Any]:
    """Ask the unified user service again about every waiting unknown/ambiguous applicant, then replay the
    quarantined cases whose applicant now resolves (or whose conflict an operator accepted).

    The callable behind the "retry unresolved identities" DAG; returns counts for its log."""
    from tongban.platform.client import PlatformClient

    settings = settings or load()
    store = store or open_store(settings.db_url)
    own_platform = platform is None
    platform = platform or PlatformClient(settings)
    resolver = IdentityResolver(store=store, platform=platform, settings=settings)
    summary = {"asked": 0, "resolved": 0, "still_unresolved": 0, "replayed": 0, "throttled": False, "waiting": 0}
    try:
        with store.read() as conn:
            pending = conn.execute(
                select(identity_users.c.pii_hash, identity_users.c.id_type, identity_users.c.cipher)
                .where(identity_users.c.status.in_([UNKNOWN, AMBIGUOUS]),
                       identity_users.c.pii_hash.in_(select(identity_waiting.c.pii_hash)
                                                     .where(identity_waiting.c.conflict_id.is_(None))))).all()
        for digest, id_type, cipher in pending:
            number = decrypt(cipher, settings.pii_key) if cipher else None
            if number is None:
                summary["still_unresolved"] += 1  # encrypted under a rotated key: needs the source record again
                continue
            try:
                status = resolver.refresh(digest, number, id_type)
            except IdentityThrottled:
                summary["throttled"] = True
                break
            summary["asked"] += 1
            summary["resolved" if status == RESOLVED else "still_unresolved"] += 1
        with store.read() as conn:
            ready = conn.execute(
                select(identity_waiting.c.system, identity_waiting.c.source_key)
                .select_from(identity_waiting
                             .outerjoin(identity_users, identity_users.c.pii_hash == identity_waiting.c.pii_hash)
                             .outerjoin(identity_conflicts, identity_conflicts.c.id == identity_waiting.c.conflict_id))
                .where(((identity_waiting.c.conflict_id.is_(None)) & (identity_users.c.status == RESOLVED))
                       | (identity_conflicts.c.status == ACCEPTED))).all()
        ids = _quarantine_ids(store, ready)
        if ready:
            # Forget the waiting rows first: a case that fails again is written back by the ingest it replays in.
            with store.write() as conn:
                for system, source_key in ready:
                    conn.execute(delete(identity_waiting).where(identity_waiting.c.system == system,
                                                                identity_waiting.c.source_key == source_key))
        if replay and ids:
            from tongban.operator.actions import replay_quarantine

            message = replay_quarantine(store, ids=ids, bus=bus, platform=platform, mappings_dir=mappings_dir)
            log.info("identity retry: %s", message)
            summary["replayed"] = len(ids)
        with store.read() as conn:
            summary["waiting"] = conn.execute(select(func.count()).select_from(identity_waiting)).scalar() or 0
    finally:
        if own_platform:
            platform.close()
    return summary


def _quarantine_ids(store: Store, keys) -> list[int]:
    from tongban.store.tables import quarantine

    ids: list[int] = []
    with store.read() as conn:
        for system, source_key in keys:
            ids += [r[0] for r in conn.execute(select(quarantine.c.id).where(
                quarantine.c.system == system, quarantine.c.source_key == source_key,
                quarantine.c.stage == "identity", quarantine.c.status == "open"))]
    return ids


def describe(row: dict) -> str:
    return codes.mask_text(json.dumps(row, ensure_ascii=False, default=str))
