"""Evidence packages (证据包): one case's history, receipts, seals and proofs, checkable on another machine.

`export_package(store, identifier, out)` collects everything `tongban trace` finds for `identifier` into an ASiC-E
style container (tongban.audit.asic), signed with tongban's audit key:

    mimetype                      application/vnd.etsi.asic-e+zip (stored, first)
    package.json                  what this is: identifier, time, masked or not, who exported it
    events.json                   the case's ledger events as stored (fields, prev_hash, hash, seq)
    checkpoint.jws                a signed tree head covering every one of those events (taken when none does)
    proofs.json                   each event's RFC 6962 inclusion proof into that tree head
    receipts/NNN.jws              the platform-signed case receipts (回执), verbatim from the ledger
    sealed/NNN.receipt.xml        the platform's sealed receipts of sealed documents (XAdES)
    sealed/NNN.document.xml|.sm2  the sealed documents themselves (only with --unmasked: they name people)
    certs/sm2-ca-N.pem            the SM2 CAs 国密 seals chain to (GB/T 38540), when the trust store has them
    seals.json                    the seal verification of each sealed document at export time
    certs/*.pem                   the audit certificate and the CA certificates of the trust store
    META-INF/ASiCManifest.xml     SHA-256 of every member, signed (XAdES) by the audit key

Personal data: ledger events never hold it in clear (tongban.audit.ledger); any text the PII masking (tongban.codes) would
still change is masked and the event marked `"masked": true` (its hash is then checked by inclusion only). Sealed
documents stay out unless `unmasked=True`, which is itself recorded in the ledger (`evidence_exported`, with the
actor) before the package is made, so the package shows it. `verify_package` is tongban.audit.package_verify.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import pathlib
from typing import Any

from sqlalchemy import select

from tongban.audit import ledger
from tongban.audit import asic
from tongban.audit.checkpoints import covering_checkpoint, event_leaf, ledger_hashes, take_checkpoint, verify_head
from tongban.audit.keys import AuditSigner, audit_signer, trust_config
from tongban.audit.merkle import MerkleTree
from tongban.audit.package_verify import PackageResult, verify_package  # noqa: F401 - the module's other half
from tongban.codes import mask_text
from tongban.bus.envelope import KIND_SEALED, utcnow
from tongban.seal import TrustStore, XadesSigner, verify_sealed
from tongban.store import Store
from tongban.store import state as st
from tongban.store.tables import ledger as ledger_table

FORMAT = "tongban-evidence/v1"
_TEXT_FIELDS = ("system", "message_id", "idempotency_key", "case_number", "source_key", "detail")


class EvidenceError(LookupError):
    """Nothing to export for this identifier."""


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")


def _raw_events(store: Store, identifier: str) -> list[dict[str, Any]]:
    """The events `tongban trace` finds, as stored (detail as its stored text, so hashes recompute); a flowback
    record's routing is its routed_chunk event, whole (the list the hash covers)."""
    from tongban.flowback.trace import trace

    ids = sorted({e["event_id"] for e in trace(store, identifier)})
    if not ids:
        return []
    with store.read() as conn:
        rows = conn.execute(select(ledger_table).where(ledger_table.c.event_id.in_(ids))
                            .order_by(ledger_table.c.seq)).mappings().all()
    return [dict(r) for r in rows]


def _masked(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    changed = False
    for name in _TEXT_FIELDS:
        value = out.get(name)
        if isinstance(value, str):
            masked = mask_text(value)
            if masked != value:
                out[name], changed = masked, True
    out["masked"] = changed
    return out


def _sealed_members(store: Store, events: list[dict], trust: TrustStore, unmasked: bool) -> tuple[dict, list]:
    members: dict[str, bytes] = {}
    seals: list[dict] = []
    keys = sorted({e["idempotency_key"] for e in events if e["hop"] == "delivered" and e["idempotency_key"]})
    with store.read() as conn:
        records = {key: st.delivered_receipt(conn, key) for key in keys}
    n = 0
    for key, record in records.items():
        if not record or record.get("kind") != KIND_SEALED:
            continue
        n += 1
        document = base64.b64decode(record["document_b64"])
        at = dt.datetime.fromisoformat(record["received_at"]) if record.get("received_at") else None
        seal = verify_sealed(document, trust, now=at)
        members[f"sealed/{n:03d}.receipt.xml"] = record["receipt_xml"].encode("utf-8")
        if unmasked:  # an SM2-sealed document is tongban's DER container (0x30 first), an XAdES one XML
            members[f"sealed/{n:03d}.document.{'sm2' if document[:1] == b'0' else 'xml'}"] = document
        seals.append({"n": n, "idempotency_key": key, "document_id": record.get("document_id"),
                      "document_digest": record.get("document_digest"), "received_at": record.get("received_at"),
                      "seal": seal.reason, "seal_message": mask_text(seal.message), "signer": seal.signer_subject,
                      "document_included": unmasked})
    return members, seals


def export_package(store: Store, identifier: str, out_path, *, unmasked: bool = False,
                   actor: str | None = None) -> pathlib.Path:
    """Write the evidence package of `identifier` (anything `tongban trace` accepts) to `out_path`; returns it.
    Raises EvidenceError when the ledger names nothing under `identifier`, AuditKeyMissing without an audit key."""
    from tongban.settings import current

    settings = current()
    signer: AuditSigner = audit_signer(settings)
    trust = TrustStore.load(trust_config(settings))
    from tongban.flowback.trace import trace

    if not trace(store, identifier):  # a flowback record routed but not yet delivered has only its chunk's event
        raise EvidenceError(f"no ledger event names {identifier!r} (a message id, idempotency key, 办件编号 or "
                            f"legacy key): nothing to export")
    if unmasked:
        first = trace(store, identifier)[0]
        ledger.record(store, ledger.LedgerEvent("evidence_exported", {"unmasked": True, "actor": actor or "unknown",
                                                                      "identifier": mask_text(identifier)},
                                                system=first["system"], case_number=first["case_number"],
                                                source_key=first["source_key"], message_id=first["message_id"]))
    events = _raw_events(store, identifier)
    last_seq = events[-1]["seq"]
    checkpoint = covering_checkpoint(store, last_seq) or take_checkpoint(store, signer)
    head = verify_head(checkpoint["jws"], trust)
    hashes = ledger_hashes(store)[: head["size"]]
    index = {seq: i for i, (seq, _, _) in enumerate(hashes)}
    tree = MerkleTree([event_leaf(h) for _, _, h in hashes])
    proofs = [{"event_id": e["event_id"], "seq": e["seq"], "index": index[e["seq"]], "hash": e["hash"],
               "path": [p.hex() for p in tree.inclusion_proof(index[e["seq"]], head["size"])]} for e in events]

    members: dict[str, bytes] = {}
    receipts = [e for e in events if e["hop"] == "receipt" and json.loads(e["detail"]).get("jws")]
    for n, event in enumerate(receipts, 1):
        members[f"receipts/{n:03d}.jws"] = json.loads(event["detail"])["jws"].encode("ascii")
    sealed, seals = _sealed_members(store, events, trust, unmasked)
    members.update(sealed)
    shown = events if unmasked else [_masked(e) for e in events]
    members["events.json"] = _json(shown)
    members["checkpoint.jws"] = checkpoint["jws"].encode("ascii")
    members["proofs.json"] = _json({"tree_size": head["size"], "root": head["root"], "proofs": proofs})
    members["seals.json"] = _json(seals)
    members["certs/audit-signer.pem"] = _pem(signer.certificate)
    for n, ca in enumerate(trust.ca_certificates, 1):
        members[f"certs/ca-{n}.pem"] = _pem(ca)
    sm2 = trust.sm2 if not isinstance(trust.sm2, Exception) else None
    for n, ca in enumerate(getattr(sm2, "ca_certificates", ()), 1):  # 国密 SM2 seals chain to these (GB/T 38540)
        from tongban.seal.sm2.ca import certificate_pem

        members[f"certs/sm2-ca-{n}.pem"] = certificate_pem(ca)
    members["package.json"] = _json({
        "format": FORMAT, "identifier": identifier if unmasked else mask_text(identifier), "exported_at": utcnow(),
        "masked": not unmasked, "actor": actor, "events": len(events), "receipts": len(receipts),
        "sealed_documents": len(seals), "checkpoint": {"size": head["size"], "root": head["root"],
                                                        "time": head["time"]},
        "sandbox_key": signer.sandbox})
    manifest = XadesSigner(signer.cert_path, signer.key_path).sign(asic.build_manifest(members))
    return asic.write_container(pathlib.Path(out_path), members, manifest)
