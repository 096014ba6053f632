"""Signed ledger checkpoints: tree heads over the ledger's event hashes, signed with tongban's audit key.

A checkpoint is the RFC 6962 tree head (size, root) of the first `size` ledger events in `seq` order — leaf i is
the 32 bytes of event i's chain hash — plus the time, the last covered event, and the SHA-256 of the previous
checkpoint's JWS (so checkpoints form a chain of their own). It is signed as a compact JWS (tongban.audit.jws).

`verify_checkpoints` re-checks every checkpoint against the ledger as it is now: the signature (the certificate
must chain to the trust store), the link to the previous checkpoint, that the ledger still holds all the events it
covered (a removed tail is named), that the root recomputed from those events matches (a rewritten event is
located between two checkpoints), and the RFC 9162 consistency proof from each checkpoint to the next.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tongban.audit import jws
from tongban.audit.keys import AuditSigner
from tongban.audit.merkle import MerkleTree, leaf_hash, verify_consistency
from tongban.audit.tables import checkpoints, ensure_tables
from tongban.envelope import utcnow
from tongban.seal.truststore import CertificateProblem, TrustStore
from tongban.store import Store
from tongban.store.tables import ledger

KIND = "tongban-ledger-checkpoint/v1"
TYP = "tongban-checkpoint+jws"


def event_leaf(event_hash: str) -> bytes:
    """The leaf hash of one ledger event: SHA-256(0x00 || the 32 bytes of its chain hash)."""
    return leaf_hash(bytes.fromhex(event_hash))


def ledger_hashes(store: Store) -> list[tuple[int, str, str]]:
    """(seq, event_id, hash) of every ledger event, in seq order."""
    with store.read() as conn:
        return [tuple(r) for r in conn.execute(select(ledger.c.seq, ledger.c.event_id, ledger.c.hash)
                                               .order_by(ledger.c.seq))]


def jws_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def take_checkpoint(store: Store, signer: AuditSigner) -> dict[str, Any]:
    """Sign the current tree head and store it; returns the checkpoint (its fields and `jws`)."""
    ensure_tables(store)
    with store.write() as conn:  # the writers' lock: no event is appended between reading and storing the head
        rows = conn.execute(select(ledger.c.seq, ledger.c.hash).order_by(ledger.c.seq)).all()
        previous = conn.execute(select(checkpoints.c.jws).order_by(checkpoints.c.id.desc()).limit(1)).scalar()
        tree = MerkleTree([event_leaf(h) for _, h in rows])
        head = {"kind": KIND, "size": len(rows), "root": tree.root().hex(), "time": utcnow(),
                "last_seq": rows[-1][0] if rows else 0, "last_event_hash": rows[-1][1] if rows else None,
                "previous": jws_digest(previous) if previous else None}
        token = jws.sign(head, signer.key, list(signer.chain), typ=TYP)
        new_id = conn.execute(checkpoints.insert().values(at=head["time"], size=head["size"], root=head["root"],
                                                          last_seq=head["last_seq"], jws=token)).inserted_primary_key[0]
    return {"id": new_id, **head, "jws": token, "signer": signer.certificate.subject.rfc4514_string()}


def list_checkpoints(store: Store) -> list[dict[str, Any]]:
    ensure_tables(store)
    with store.read() as conn:
        return [dict(r) for r in conn.execute(select(checkpoints).order_by(checkpoints.c.id)).mappings()]


def accept_in(trust: TrustStore):
    """A JWS certificate check: the leaf must chain to `trust` (not revoked, may sign)."""
    def accept(leaf, intermediates) -> None:
        try:
            trust.validate(leaf, intermediates)
        except CertificateProblem as exc:
            raise jws.JWSInvalid(f"{exc.reason}: {exc}") from None
    return accept


def verify_head(token: str, trust: TrustStore) -> dict[str, Any]:
    """The signed tree head's fields, once its signature and certificate check out (raises JWSInvalid)."""
    head = jws.verify(token, accept_in(trust)).payload
    if head.get("kind") != KIND:
        raise jws.JWSInvalid(f"not a tongban ledger checkpoint (kind {head.get('kind')!r})")
    return head


@dataclass
class CheckpointCheck:
    ok: bool
    checkpoints: int
    latest_size: int | None = None
    bad_checkpoint: int | None = None
    bad_event_seq: int | None = None
    reason: str | None = None


def verify_checkpoints(store: Store, trust: TrustStore) -> CheckpointCheck:
    rows = list_checkpoints(store)
    events = ledger_hashes(store)
    tree = MerkleTree([event_leaf(h) for _, _, h in events])
    previous: tuple[dict, str] | None = None
    for position, row in enumerate(rows):
        def bad(reason: str, seq: int | None = None) -> CheckpointCheck:
            return CheckpointCheck(False, len(rows), rows[-1]["size"], row["id"], seq, reason)
        try:
            head = verify_head(row["jws"], trust)
        except jws.JWSInvalid as exc:
            return bad(f"checkpoint #{row['id']}: signature not accepted: {exc}")
        if (head["size"], head["root"]) != (row["size"], row["root"]):
            return bad(f"checkpoint #{row['id']}: the stored size/root differ from the signed tree head")
        expected_previous = jws_digest(previous[1]) if previous else None
        if head.get("previous") != expected_previous:
            return bad(f"checkpoint #{row['id']}: does not link to the checkpoint before it (one was removed or "
                       f"replaced)")
        size = head["size"]
        if size > len(events):
            seq = head.get("last_seq")
            return bad(f"checkpoint #{row['id']} covers {size} events but the ledger holds {len(events)}: "
                       f"{size - len(events)} covered events were removed after the checkpoint (the last it covered "
                       f"was event #{seq})", seq)
        if tree.root(size).hex() != head["root"]:
            low = previous[0]["size"] if previous else 0
            first = events[low][0] if low < len(events) else None
            return bad(f"checkpoint #{row['id']}: the ledger's tree head over its first {size} events does not match "
                       f"the signed root: an event among #{first}..#{head['last_seq']} was rewritten or removed "
                       f"(the checkpoint before it still matches)", first)
        if previous is not None:
            old = previous[0]
            proof = tree.consistency_proof(old["size"], size)
            if not verify_consistency(old["size"], size, bytes.fromhex(old["root"]), bytes.fromhex(head["root"]),
                                      proof):
                return bad(f"checkpoint #{row['id']} is not an append-only extension of the one before it")
        previous = (head, row["jws"])
    return CheckpointCheck(True, len(rows), rows[-1]["size"] if rows else None)


def covering_checkpoint(store: Store, last_seq: int, trust: TrustStore | None = None) -> dict[str, Any] | None:
    """The latest stored checkpoint that covers event `last_seq` (None when none does)."""
    for row in reversed(list_checkpoints(store)):
        if row["last_seq"] >= last_seq:
            return row
    return None
