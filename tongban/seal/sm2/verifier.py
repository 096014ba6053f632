"""Verify an SM2-sealed document (GB/T 38540 SES_Signature in tongban's container) with the same verdicts as the
XAdES verifier (`tongban.seal.verifier`), so callers, the ledger and the quarantine see one vocabulary:

    valid              the seal checks out; `element` is the verified XML document, `signed_data` its bytes
    bad_seal_structure not the GB/T 38540 shape: undecodable DER, wrong version/header/algorithm, a certificate
                       that is not SM2, or a signer certificate the seal was not made for
    missing            the container carries no SES_Signature
    digest_mismatch    the document's SM3 digest differs from dataHash, or the signer's or seal maker's SM2
                       signature does not verify (something changed after sealing)
    untrusted_issuer   the signer's (or seal maker's) certificate does not chain to a trusted SM2 CA
    expired / not_yet_valid
                       a certificate, or the seal itself (validStart … validEnd), is outside its validity at `now`
    revoked            the signer's or maker's certificate is on its CA's CRL
    key_usage          a certificate lacks KeyUsage digitalSignature
    malformed          the signed document itself is not safe, well-formed XML

Checks run in that order: the structure, then the signatures (integrity), then trust, then the seal's dates.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib

from asn1crypto import x509

from tongban.seal.truststore import CertificateProblem, TrustStore
from tongban.seal.verifier import SealResult
from tongban.seal.xmlsafe import MAX_DOCUMENT_BYTES, UnsafeXMLError, parse_untrusted

from . import primitives as sm2
from .structures import CERT_LIST_TYPE_CERTS, SESSeal, CONTAINER_FORMAT, SES_HEADER_ID, SES_VERSION, load_container
from .trust import SM2TrustStore, describe, subject_of

NO_SM2_TRUST = ("the trust store lists no SM2 CA (add sm2_ca / sm2_crl to trust.yaml, e.g. with "
                "`tongban certs init --sm2`)")


class _Rejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _structure(ok: bool, message: str) -> None:
    if not ok:
        raise _Rejected("bad_seal_structure", message)


@functools.lru_cache(maxsize=1024)
def _parsed_certificate(der: bytes) -> tuple[x509.Certificate, bytes]:
    """Parse a certificate once per process (seal certificates recur on every document they seal)."""
    cert = x509.Certificate.load(der, strict=True)
    cert.native  # noqa: B018 - parse every field now, so a fault is a structure error here, not later
    return cert, sm2.public_key_from_info(cert["tbs_certificate"]["subject_public_key_info"])


def _certificate(der: bytes, role: str) -> tuple[x509.Certificate, bytes]:
    try:
        return _parsed_certificate(bytes(der))
    except (ValueError, TypeError) as exc:
        raise _Rejected("bad_seal_structure", f"the {role} certificate is not an SM2 X.509 certificate: {exc}") \
            from None


def _octets(bit_string, what: str) -> bytes:
    """The bytes of a BIT STRING that must hold whole octets (a signature, a digest): unused bits must be 0."""
    contents = bit_string.contents or b""
    if not contents or contents[0] != 0:
        raise _Rejected("bad_seal_structure", f"{what} is not a whole-octet BIT STRING")
    return contents[1:]


def _verify_signature(public_key: bytes, data: bytes, signature: bytes, what: str) -> None:
    try:
        sm2.der_to_raw(signature)  # a signature that is not DER {r, s} is a structural fault, not a mismatch
        good = sm2.verify(public_key, data, signature)
    except sm2.SM2Error as exc:
        raise _Rejected("bad_seal_structure", f"{what}: {exc}") from None
    if not good:
        raise _Rejected("digest_mismatch", f"{what} does not verify: the seal or the signed data was changed")


@functools.lru_cache(maxsize=1024)
def _seal_signature_ok(maker_key: bytes, seal_der: bytes) -> bool:
    """Whether this exact seal (DER) verifies under this maker key, remembered (a pure function of the bytes)."""
    seal = SESSeal.load(seal_der)
    try:
        return sm2.verify(maker_key, seal.signed_part(), seal["signedValue"].contents[1:])  # octets checked by caller
    except sm2.SM2Error:
        return False


def sm2_trust_of(trust):
    """The SM2 part of a trust store (None, or the TrustConfigError saying why it is unusable)."""
    if isinstance(trust, SM2TrustStore):
        return trust
    return getattr(trust, "sm2", None)


def _refused(reason: str, message: str, document_digest: str) -> SealResult:
    return SealResult(False, reason, message, document_digest=document_digest, kind="sm2")


def verify_sm2_sealed(data: bytes, trust: TrustStore | SM2TrustStore | None, *, now: dt.datetime | None = None,
                      max_bytes: int = MAX_DOCUMENT_BYTES) -> SealResult:
    """Verify the SES_Signature in the container `data` against the SM2 part of `trust` at `now`."""
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    document_digest = hashlib.sha256(data).hexdigest()
    try:
        if len(data) > max_bytes:
            raise _Rejected("malformed", f"sealed document is larger than {max_bytes} bytes")
        try:
            container = load_container(data)
        except (ValueError, TypeError) as exc:
            raise _Rejected("bad_seal_structure", f"not a DER {CONTAINER_FORMAT} container: {exc}") from None
        _structure(container["format"].native == CONTAINER_FORMAT,
                   f"container format is {container['format'].native!r}, not {CONTAINER_FORMAT!r}")
        document = container["document"].native
        signature = container["signature"]
        if not signature or not signature["signature"].contents[1:]:
            raise _Rejected("missing", "the container carries no SES_Signature")
        result = _check(document, signature, sm2_trust_of(trust), now)
        media_type, signed_type = container["mediaType"].native, signature["toSign"]["propertyInfo"].native
        if media_type != signed_type:  # the container's copy is unsigned; only the signed one counts
            raise _Rejected("digest_mismatch", f"the container says {media_type!r} but the signature was made over "
                                               f"{signed_type!r} (propertyInfo)")
        element = parse_untrusted(document, max_bytes=max_bytes)
    except UnsafeXMLError as exc:
        return _refused("malformed", f"the signed document: {exc}", document_digest)
    except (_Rejected, CertificateProblem) as exc:
        return _refused(exc.reason, exc.message, document_digest)
    except (ValueError, TypeError, KeyError) as exc:  # hostile input must give a reason, never a crash
        return _refused("bad_seal_structure", f"unreadable SES_Signature: {exc}", document_digest)
    signer, signing_time = result
    subject = subject_of(signer)
    return SealResult(True, "valid", f"sealed by {subject} (SM2, GB/T 38540)", signer_subject=subject,
                      signer_certificate=signer, signing_time=signing_time,
                      digest=hashlib.sha256(document).hexdigest(), document_digest=document_digest,
                      element=element, signed_data=document, kind="sm2")


def _check(document: bytes, signature, trust, now: dt.datetime):
    to_sign = signature["toSign"]
    seal = to_sign["eseal"]
    info = seal["eSealInfo"]
    header, prop = info["header"], info["property"]
    _structure(to_sign["version"].native == SES_VERSION, f"TBS_Sign version is {to_sign['version'].native}, "
                                                         f"not {SES_VERSION}")
    _structure(header["ID"].native == SES_HEADER_ID and header["version"].native == SES_VERSION,
               f"SES_Header is {header['ID'].native!r} version {header['version'].native}, not 'ES' version 4")
    for where, oid in (("SES_Signature signatureAlgID", signature["signatureAlgID"]),
                       ("SES_Seal signAlgID", seal["signAlgID"])):
        _structure(oid.dotted == sm2.SM2_SM3_OID, f"{where} is {oid.dotted}, not SM2-with-SM3 {sm2.SM2_SM3_OID}")
    _structure(prop["certListType"].native == CERT_LIST_TYPE_CERTS,
               f"seal certListType {prop['certListType'].native} is not 1 (certificates)")
    signer, signer_key = _certificate(signature["cert"].native, "signer's")
    maker, maker_key = _certificate(seal["cert"].native, "seal maker's")

    # Integrity: the document against dataHash, the signer's signature over TBS_Sign, the maker's over the seal.
    if _octets(to_sign["dataHash"], "dataHash") != sm2.sm3(document):
        raise _Rejected("digest_mismatch", "the document's SM3 digest differs from the seal's dataHash: the "
                                           "document was changed after sealing")
    _verify_signature(signer_key, to_sign.dump(), _octets(signature["signature"], "the signature"),
                      "the signer's SM2 signature")
    # A seal is made once and used on many documents: its maker's signature is checked once per process.
    signed_value = _octets(seal["signedValue"], "the seal's signedValue")
    if not _seal_signature_ok(maker_key, seal.dump()):
        _verify_signature(maker_key, seal.signed_part(), signed_value,
                          "the seal maker's SM2 signature")  # raises with the reason
    listed = [bytes(cert.native) for cert in prop["certList"]]
    if signer.dump() not in listed:
        raise _Rejected("bad_seal_structure", f"the signer's certificate {describe(signer)} is not one the seal "
                                              f"{prop['name'].native!r} was made for")

    # Trust: both certificates chain to a trusted SM2 CA, are valid now and not revoked.
    if trust is None:
        raise _Rejected("untrusted_issuer", NO_SM2_TRUST)
    if isinstance(trust, Exception):
        raise _Rejected("untrusted_issuer", f"the SM2 trust store is unusable: {trust}")
    trust.validate(signer, now=now)
    if maker.dump() != signer.dump():
        trust.validate(maker, now=now)

    # The seal's own validity period.
    start, end = prop["validStart"].native, prop["validEnd"].native
    if now < start:
        raise _Rejected("not_yet_valid", f"the seal {prop['name'].native!r} is not valid before {start.isoformat()}")
    if now > end:
        raise _Rejected("expired", f"the seal {prop['name'].native!r} expired on {end.isoformat()}")
    return signer, to_sign["timeInfo"].native
