"""Signed receipts (回执): the receiver's proof of what it received and what it concluded.

A receipt carries the SHA-256 of the document bytes exactly as received, the digest of the data the seal covered,
the document id, the receiver, the time, and the verification result — and is itself sealed (XAdES) by the
receiver, so the sender can later prove delivery and the receiver cannot deny it (non-repudiation of receipt, as in
EU eDelivery AS4).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from lxml import etree

from .signer import Signer
from .truststore import TrustStore
from .verifier import SealResult, verify_sealed

RECEIPT_NS = "urn:tongban:seal:receipt:1"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
_FIELDS = ("DocumentId", "DocumentDigest", "SignedDataDigest", "Receiver", "ReceivedAt", "Sender")


def _q(tag: str) -> str:
    return f"{{{RECEIPT_NS}}}{tag}"


def document_id_of(result: SealResult) -> str | None:
    """The document's own identifier (a licence's 电子证照标识), when the verified data has one."""
    if result.element is None:
        return None
    for child in result.element:
        if isinstance(child.tag, str) and etree.QName(child).localname == "Identifier" and child.text:
            return child.text.strip()
    return None


def build_receipt(received: bytes, result: SealResult, signer: Signer, *, receiver: str,
                  document_id: str | None = None, received_at: dt.datetime | None = None) -> bytes:
    """Build and seal the receipt for `received` (the bytes as they arrived) given its verification `result`."""
    if not receiver:
        raise ValueError("receipt: field 'receiver' must name the receiving party")
    received_at = (received_at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    document_id = document_id or document_id_of(result) or f"sha256:{hashlib.sha256(received).hexdigest()}"
    root = etree.Element(_q("Receipt"), nsmap={None: RECEIPT_NS}, version="1")
    etree.SubElement(root, _q("DocumentId")).text = document_id
    etree.SubElement(root, _q("DocumentDigest"), Algorithm=SHA256_URI).text = hashlib.sha256(received).hexdigest()
    if result.digest:
        etree.SubElement(root, _q("SignedDataDigest"), Algorithm=SHA256_URI).text = result.digest
    etree.SubElement(root, _q("Receiver")).text = receiver
    etree.SubElement(root, _q("ReceivedAt")).text = received_at.isoformat(timespec="seconds")
    if result.signer_subject:
        etree.SubElement(root, _q("Sender")).text = result.signer_subject
    etree.SubElement(root, _q("Verification"), result=result.reason).text = result.message
    return signer.sign(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


@dataclass
class ReceiptResult:
    ok: bool
    reason: str
    message: str
    fields: dict = field(default_factory=dict)  # document_id, document_digest, receiver, received_at, verification …
    seal: SealResult | None = None

    def __bool__(self) -> bool:
        return self.ok


def _read_fields(element: etree._Element) -> dict:
    fields = {}
    for tag in _FIELDS:
        node = element.find(_q(tag))
        fields[tag] = node.text.strip() if node is not None and node.text else None
    verification = element.find(_q("Verification"))
    return {
        "document_id": fields["DocumentId"],
        "document_digest": fields["DocumentDigest"],
        "signed_data_digest": fields["SignedDataDigest"],
        "receiver": fields["Receiver"],
        "received_at": dt.datetime.fromisoformat(fields["ReceivedAt"]) if fields["ReceivedAt"] else None,
        "sender": fields["Sender"],
        "verification": verification.get("result") if verification is not None else None,
        "verification_message": verification.text if verification is not None else None,
    }


def verify_receipt(receipt: bytes, trust: TrustStore, *, document: bytes | None = None,
                   now: dt.datetime | None = None) -> ReceiptResult:
    """Verify the receipt's seal and, when `document` (the bytes sent) is given, that it acknowledges exactly them."""
    seal = verify_sealed(receipt, trust, now=now)
    if not seal.ok:
        return ReceiptResult(False, seal.reason, f"receipt seal: {seal.message}", seal=seal)
    if seal.element.tag != _q("Receipt"):
        return ReceiptResult(False, "malformed", f"sealed document is <{seal.element.tag}>, not a receipt", seal=seal)
    try:
        fields = _read_fields(seal.element)  # read only from the verified element
    except ValueError as exc:
        return ReceiptResult(False, "malformed", f"receipt field ReceivedAt: {exc}", seal=seal)
    missing = [name for name in ("document_id", "document_digest", "receiver", "verification") if not fields[name]]
    if missing:
        return ReceiptResult(False, "malformed", f"receipt lacks required fields {missing}", fields, seal)
    if document is not None and hashlib.sha256(document).hexdigest() != fields["document_digest"]:
        return ReceiptResult(False, "digest_mismatch",
                             f"receipt for {fields['document_id']} acknowledges different bytes than the document sent",
                             fields, seal)
    return ReceiptResult(True, "valid", f"receipt from {seal.signer_subject} for {fields['document_id']}: "
                                        f"{fields['verification']}", fields, seal)
