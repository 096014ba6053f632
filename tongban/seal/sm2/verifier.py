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
from dataclasses import dataclass

from asn1crypto import x509

from adapters.safexml import MAX_SEALED_BYTES, XMLRejected, parse_untrusted

from tongban.seal.truststore import CertificateProblem, TrustStore
from tongban.seal.verifier import SealResult

from . import primitives as sm2
from .structures import CERT_LIST_TYPE_CERTS, SESSeal, CONTAINER_FORMAT, SES_HEADER_ID, SES_VERSION, load_container
from .trust import SM2TrustStore, describe, subject_of

NO_SM2_TRUST = ("the trust store lists no SM2 CA (add sm2_ca / sm2_crl to trust.yaml, e.g. with "
                "`tongban certs init --sm2`)")


class _Rejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


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


def sm2_trust_of(trust):
    """The SM2 part of a trust store (None, or the TrustConfigError saying why it is unusable)."""
    if isinstance(trust, SM2TrustStore):
        return trust
    return getattr(trust, "sm2", None)


def _refused(reason: str, message: str, document_digest: str) -> SealResult:
    return SealResult(False, reason, message, document_digest=document_digest, kind="sm2")


def verify_sm2_sealed(data: bytes, trust: TrustStore | SM2TrustStore | None, *, now: dt.datetime | None = None,
                      max_bytes: int = MAX_SEALED_BYTES) -> SealResult:
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
        if container["format"].native != CONTAINER_FORMAT:
            raise _Rejected("bad_seal_structure", f"container format is {container['format'].native!r}, not "
                                                  f"{CONTAINER_FORMAT!r}")
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
    except XMLRejected as exc:
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


@dataclass(frozen=True)
class _SealFacts:
    """What a seal says, read once per exact seal bytes (a seal is made once and used on many documents)."""
    name: str
    maker: x509.Certificate
    maker_der: bytes
    maker_key: bytes
    listed: frozenset[bytes]          # DER of the certificates the seal was made for
    valid_start: dt.datetime
    valid_end: dt.datetime


@functools.lru_cache(maxsize=1024)
def _seal_facts(seal_der: bytes) -> _SealFacts:
    """Check the SES_Seal's structure and its maker's signature; raises _Rejected (not cached) when either fails."""
    seal = SESSeal.load(seal_der)
    info = seal["eSealInfo"]
    header, prop = info["header"], info["property"]
    if header["ID"].native != SES_HEADER_ID or header["version"].native != SES_VERSION:
        raise _Rejected("bad_seal_structure", f"SES_Header is {header['ID'].native!r} version "
                                              f"{header['version'].native}, not 'ES' version 4")
    if seal["signAlgID"].dotted != sm2.SM2_SM3_OID:
        raise _Rejected("bad_seal_structure", f"SES_Seal signAlgID is {seal['signAlgID'].dotted}, not SM2-with-SM3 "
                                              f"{sm2.SM2_SM3_OID}")
    if prop["certListType"].native != CERT_LIST_TYPE_CERTS:
        raise _Rejected("bad_seal_structure", f"seal certListType {prop['certListType'].native} is not 1 "
                                              "(certificates)")
    maker_der = bytes(seal["cert"].native)
    maker, maker_key = _certificate(maker_der, "seal maker's")
    _verify_signature(maker_key, seal.signed_part(), _octets(seal["signedValue"], "the seal's signedValue"),
                      "the seal maker's SM2 signature")
    return _SealFacts(prop["name"].native, maker, maker_der, maker_key, frozenset(bytes(c.native) for c in prop["certList"]),
                      prop["validStart"].native, prop["validEnd"].native)


def _check(document: bytes, signature, trust, now: dt.datetime):
    to_sign = signature["toSign"]
    if to_sign["version"].native != SES_VERSION:
        raise _Rejected("bad_seal_structure", f"TBS_Sign version is {to_sign['version'].native}, not {SES_VERSION}")
    if signature["signatureAlgID"].dotted != sm2.SM2_SM3_OID:
        raise _Rejected("bad_seal_structure", f"SES_Signature signatureAlgID is {signature['signatureAlgID'].dotted}, "
                                              f"not SM2-with-SM3 {sm2.SM2_SM3_OID}")
    signer_der = bytes(signature["cert"].native)
    signer, signer_key = _certificate(signer_der, "signer's")

    # Integrity: the document against dataHash, the signer's signature over TBS_Sign, the maker's over the seal.
    if _octets(to_sign["dataHash"], "dataHash") != sm2.sm3(document):
        raise _Rejected("digest_mismatch", "the document's SM3 digest differs from the seal's dataHash: the "
                                           "document was changed after sealing")
    _verify_signature(signer_key, to_sign.dump(), _octets(signature["signature"], "the signature"),
                      "the signer's SM2 signature")
    seal = _seal_facts(to_sign["eseal"].dump())
    if signer_der not in seal.listed:
        raise _Rejected("bad_seal_structure", f"the signer's certificate {describe(signer)} is not one the seal "
                                              f"{seal.name!r} was made for")

    # Trust: both certificates chain to a trusted SM2 CA, are valid now and not revoked.
    if trust is None:
        raise _Rejected("untrusted_issuer", NO_SM2_TRUST)
    if isinstance(trust, Exception):
        raise _Rejected("untrusted_issuer", f"the SM2 trust store is unusable: {trust}")
    trust.validate(signer, now=now, der=signer_der)
    if seal.maker_der != signer_der:
        trust.validate(seal.maker, now=now, der=seal.maker_der)

    # The seal's own validity period.
    if now < seal.valid_start:
        raise _Rejected("not_yet_valid", f"the seal {seal.name!r} is not valid before {seal.valid_start.isoformat()}")
    if now > seal.valid_end:
        raise _Rejected("expired", f"the seal {seal.name!r} expired on {seal.valid_end.isoformat()}")
    return signer, to_sign["timeInfo"].native
