"""Sealed documents (电子证照, decisions) travelling the bus to 渝快办, with signed receipts back.

The flow, and who proves what:

    submit_sealed      verify the seal against the sender's trust store first: a bad seal (tampered, wrapped,
                       untrusted CA, expired, revoked …) is quarantined at once (stage "seal") with its reason
                       code and never reaches the bus; a good one is published as a KIND_SEALED envelope on
                       `tongban.sealed.deliver`, and the ledger records "sealed" (digest of the signed data,
                       signer, signing time) and "seal_verified" (the verification result).
    SealedDeliveryWorker
                       pushes the document bytes to the platform (PlatformClient.push_sealed: the one platform
                       client, its signing and its retry; a seal refusal comes back as SealRejected), which
                       verifies the seal with its own trust store and answers with a receipt it sealed itself
                       (XAdES). The worker verifies that receipt against our trust store and checks it acknowledges the SHA-256 of exactly the
                       bytes sent; only then is the delivery recorded ("delivered" + "receipt"), with the
                       document and the receipt kept in the deliveries table so an auditor can re-verify both
                       later (`prove_delivery`). A platform refusal (4xx, its reason code) is quarantined
                       (stage "platform_seal"); a receipt that does not verify parks the message.

The worker reuses the case delivery worker's machinery (idempotent consumer on the deliveries table, retries
through delay queues with `RedeliveryPolicy`, parking) and only replaces the push and the receipt check.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


from tongban.audit import ledger
from tongban.bus import outbox
from tongban.operator import quarantine as q
from adapters.safexml import MAX_SEALED_BYTES
from tongban.bus import Bus, Delivery
from tongban.bus.topology import WorkQueue
from tongban.delivery.retry import RedeliveryPolicy
from tongban.delivery.worker import DeliveryWorker
from tongban.bus.envelope import KIND_SEALED, Envelope, idempotency_key
from tongban.audit.ledger import LedgerEvent
from tongban.platform import SEALED_DOCUMENTS_PATH, PlatformClient, PlatformRejected, SealRejected
from tongban.seal import LicenceError, SealResult, TrustStore, parse_licence, verify_receipt, verify_sealed
from tongban.seal.licence import LICENCE_NS
from tongban.seal.receipt import document_id_of
from tongban.store import Store
from tongban.store import state as st

SEALED_EXCHANGE = "tongban.sealed"
SEALED_QUEUE = "tongban.sealed.deliver"
SEALED_KEY = "deliver"
SEALED = WorkQueue(SEALED_EXCHANGE, SEALED_QUEUE, SEALED_KEY)

SEALED_PATH = SEALED_DOCUMENTS_PATH
SENDER_STAGE = "seal"            # quarantine stage: our own check refused the seal before publishing
PLATFORM_STAGE = "platform_seal"  # quarantine stage: the platform refused the document


def sealed_work(prefix: str = "tongban") -> WorkQueue:
    """The sealed-document queues under a name prefix (tests and parallel sandboxes use their own prefix)."""
    return WorkQueue(f"{prefix}.sealed", f"{prefix}.sealed.deliver", SEALED_KEY)


# ------------------------------------------------------------------------------------------ submitting


@dataclass
class SubmitResult:
    ok: bool
    reason: str                       # "valid" or the seal/licence reason code
    message: str
    name: str                         # the file name (or "<bytes>")
    document_id: str | None = None    # 电子证照标识 when the document is a licence, else sha256:<digest>
    document_digest: str | None = None
    message_id: str | None = None
    idempotency_key: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def _read(path_or_bytes: str | Path | bytes) -> tuple[str, bytes]:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return "<bytes>", bytes(path_or_bytes)
    path = Path(path_or_bytes)
    with path.open("rb") as handle:
        # One byte over the bound lets the verifier report the size rule instead of us reading a huge file.
        return path.name, handle.read(MAX_SEALED_BYTES + 1)


def seal_summary(result: SealResult) -> dict:
    """What the ledger and the envelope say about a verified seal (digests and names, never the content)."""
    return {
        "result": result.reason,
        "kind": result.kind,   # xades or sm2 (GB/T 38540)
        "signer": result.signer_subject,
        "signing_time": result.signing_time.isoformat() if result.signing_time else None,
        "signed_data_digest": result.digest,
        "document_digest": result.document_digest,
        "certificate_serial": f"{result.signer_certificate.serial_number:x}" if result.signer_certificate else None,
    }


def _quarantine(store: Store, *, system: str, name: str, source_key: str, reason: str, message: str,
                document: bytes, detail: dict) -> None:
    digest = hashlib.sha256(document).hexdigest()
    with store.write() as conn:
        q.add(conn, q.QuarantineEntry(
            system, source_key, SENDER_STAGE, f"{reason}: {message}", field=reason, position=name,
            # The whole document is kept (base64), so an operator can inspect or resubmit it.
            record={"file": name, "document_digest": digest,
                    "document_b64": base64.b64encode(document).decode("ascii")}))
        ledger.append(conn, [LedgerEvent("quarantined", {"stage": SENDER_STAGE, "reason": reason, "file": name,
                                                         "document_digest": digest, **detail},
                                         system=system, source_key=source_key)])


def submit_sealed(path_or_bytes: str | Path | bytes, *, system: str, store: Store, bus: Bus, trust: TrustStore,
                  work: WorkQueue = SEALED) -> SubmitResult:
    """Verify the seal on one document and publish it for delivery; a bad seal is quarantined with its reason.

    Returns once the broker confirmed the publish (or the document is in quarantine)."""
    name, document = _read(path_or_bytes)
    digest = hashlib.sha256(document).hexdigest()
    result = verify_sealed(document, trust)
    if not result.ok:
        source_key = f"sha256:{digest}"
        _quarantine(store, system=system, name=name, source_key=source_key, reason=result.reason,
                    message=result.message, document=document, detail={})
        return SubmitResult(False, result.reason, result.message, name, source_key, digest)

    document_id = document_id_of(result) or f"sha256:{digest}"
    region = None
    if result.element.tag == f"{{{LICENCE_NS}}}Licence":
        try:
            region = parse_licence(result.element)["region"]  # only the verified element, never the raw tree
        except LicenceError as exc:
            _quarantine(store, system=system, name=name, source_key=document_id, reason="licence",
                        message=str(exc), document=document, detail={"field": exc.field})
            return SubmitResult(False, "licence", str(exc), name, document_id, digest)

    seal = seal_summary(result)
    env = Envelope(
        kind=KIND_SEALED, source=system, region=region,
        # Same bytes → same key: a document submitted twice is delivered once.
        idempotency_key=idempotency_key(system, document_id, digest),
        payload={"source_key": document_id, "file": name, "document_digest": digest, "seal": seal,
                 "document_b64": base64.b64encode(document).decode("ascii")},
    )
    bus.declare(work)
    keys = dict(system=system, message_id=env.message_id, idempotency_key=env.idempotency_key, source_key=document_id)
    sealed_detail = {"file": name, "document_digest": digest, "signed_data_digest": result.digest,
                     "signer": result.signer_subject, "signing_time": seal["signing_time"]}
    # The ledger events and the outbox row in one transaction, then the relay (returns once the broker confirmed).
    with store.write() as conn:
        ledger.append(conn, [LedgerEvent("sealed", sealed_detail, **keys),
                             LedgerEvent("seal_verified", {"by": "sender", **seal}, **keys),
                             LedgerEvent("published", {"kind": KIND_SEALED, "queue": work.queue}, **keys)])
        outbox.stage(conn, system, work, [env])
    outbox.relay(store, bus, system=system)
    return SubmitResult(True, "valid", result.message, name, document_id, digest, env.message_id, env.idempotency_key)


# ------------------------------------------------------------------------------------------ the worker


class SealedDeliveryWorker(DeliveryWorker):
    """Consume sealed documents, push each to the platform, verify the signed receipt, record the delivery."""

    def __init__(self, *, store: Store, bus: Bus, platform: PlatformClient, trust: TrustStore,
                 policy: RedeliveryPolicy | None = None, metrics=None, work: WorkQueue = SEALED):
        super().__init__(store=store, bus=bus, platform=platform, policy=policy, metrics=metrics, work=work)
        self.trust = trust
        self.rejected_reasons: Counter[str] = Counter()  # platform refusals by reason code

    def _reject(self, env: Envelope, exc: PlatformRejected) -> None:
        code = getattr(exc, "code", None) or f"http_{exc.status}"
        payload = env.payload
        with self.store.write() as conn:
            q.add(conn, q.QuarantineEntry(env.source, payload.get("source_key"), PLATFORM_STAGE, exc.reason,
                                          field=code, position=payload.get("file"), record={"envelope": env.__dict__}))
            ledger.append(conn, [self._ledger("rejected", env, {"status": exc.status, "reason": code,
                                                                "message": exc.reason, "by": "platform"})])
        self._count("rejected")
        self.rejected_reasons[code] += 1

    def handle(self, delivery: Delivery) -> None:
        env = delivery.envelope
        payload = env.payload
        with self.store.read() as conn:
            stored = st.delivered_receipt(conn, env.idempotency_key)
        if stored is not None:
            self._duplicate(delivery, {"receipt_digest": stored.get("receipt_digest")})
            return
        document = base64.b64decode(payload["document_b64"])
        receipt = self._attempt(env, lambda: self.platform.push_sealed(document, env.idempotency_key))
        if receipt is None:
            return
        # Non-repudiation of receipt: the platform must have sealed it, and it must acknowledge exactly our bytes.
        checked = verify_receipt(receipt, self.trust, document=document)
        if not checked.ok:
            self._park(env, f"receipt not accepted: {checked.reason}: {checked.message}")
            return
        if checked.fields.get("verification") != "valid":
            self._park(env, f"receipt not accepted: the platform's receipt says the seal is "
                            f"{checked.fields.get('verification')!r}")
            return
        fields = checked.fields
        receipt_digest = hashlib.sha256(receipt).hexdigest()
        record = {
            "kind": KIND_SEALED,
            "document_id": fields["document_id"],
            "document_digest": fields["document_digest"],
            "receipt_digest": receipt_digest,
            "receipt_signer": checked.seal.signer_subject,
            "receiver": fields["receiver"],
            "received_at": fields["received_at"].isoformat() if fields["received_at"] else None,
            # Both signed artefacts, so an auditor can re-verify sender and receiver seals later.
            "receipt_xml": receipt.decode("utf-8"),
            "document_b64": payload["document_b64"],
        }
        with self.store.write() as conn:
            fresh = st.record_delivery(conn, env.idempotency_key, env.message_id, env.correlation, None, record)
            if fresh:
                ledger.append(conn, [
                    self._ledger("delivered", env, {
                        "kind": KIND_SEALED, "document_digest": payload.get("document_digest"),
                        "attempts": env.attempt + 1, "seal": payload.get("seal"),
                        "platform_verification": fields["verification"],
                        **({"replay_of": env.replay_of} if env.replay_of else {})}),
                    self._ledger("receipt", env, {
                        "receipt_digest": receipt_digest, "signer": checked.seal.signer_subject,
                        "signing_time": checked.seal.signing_time.isoformat() if checked.seal.signing_time else None,
                        "acknowledged_digest": fields["document_digest"], "receiver": fields["receiver"],
                        "received_at": record["received_at"], "verification": fields["verification"],
                        "receipt_check": checked.reason}),
                ])
            else:
                ledger.append(conn, [self._ledger("duplicate", env, {"receipt_digest": receipt_digest,
                                                                     "concurrent": True})])
        self._count("delivered" if fresh else "duplicates")


# ------------------------------------------------------------------------------------------ the auditor


@dataclass
class DeliveryProof:
    ok: bool
    message: str
    seal: dict = field(default_factory=dict)
    receipt: dict = field(default_factory=dict)


def prove_delivery(store: Store, key: str, trust: TrustStore) -> DeliveryProof:
    """Re-verify, from what the store kept, who sealed the document delivered under idempotency key `key` and
    who acknowledged receiving exactly those bytes.

    Both seals are checked as of the moment the platform received the document, so a certificate that simply
    expired since then does not erase the proof; revocation is checked against the CRLs in force now."""
    with store.read() as conn:
        record = st.delivered_receipt(conn, key)
    if record is None or record.get("kind") != KIND_SEALED:
        return DeliveryProof(False, f"no sealed delivery recorded under {key!r}")
    document = base64.b64decode(record["document_b64"])
    receipt = record["receipt_xml"].encode("utf-8")
    at = dt.datetime.fromisoformat(record["received_at"]) if record.get("received_at") else None
    seal = verify_sealed(document, trust, now=at)
    checked = verify_receipt(receipt, trust, document=document, now=at)
    receipt_fields = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in checked.fields.items()}
    if not (seal.ok and checked.ok):
        return DeliveryProof(False, f"seal: {seal.reason}: {seal.message}; receipt: {checked.reason}: "
                                    f"{checked.message}", {"result": seal.reason}, receipt_fields)
    return DeliveryProof(True, f"{seal.signer_subject} sent {record['document_id']} (sha256 "
                               f"{seal.document_digest}); {checked.seal.signer_subject} acknowledged receiving "
                               f"exactly those bytes at {record['received_at']}",
                         seal_summary(seal), receipt_fields)


def quarantine_reasons(store: Store, system: str | None = None) -> dict[str, int]:
    """Open sealed-document quarantine entries by reason code (sender check and platform refusals)."""
    from sqlalchemy import func, select

    from tongban.store.tables import quarantine

    query = (select(quarantine.c.field, func.count())
             .where(quarantine.c.stage.in_([SENDER_STAGE, PLATFORM_STAGE]), quarantine.c.status == q.OPEN)
             .group_by(quarantine.c.field))
    if system:
        query = query.where(quarantine.c.system == system)
    with store.read() as conn:
        return {reason: n for reason, n in conn.execute(query)}


__all__ = [
    "PLATFORM_STAGE", "SEALED", "SENDER_STAGE", "DeliveryProof", "SealRejected", "SealedDeliveryWorker",
    "SubmitResult", "prove_delivery", "quarantine_reasons", "seal_summary", "sealed_work",
    "submit_sealed",
]
