"""Verify a sealed XML document: is the seal intact, made by a certificate we trust, valid now, not revoked?

The answer is a `SealResult` with one reason code:

    valid            the seal checks out; `element` is the data that was signed
    digest_mismatch  the document or the signature was changed after sealing
    untrusted_issuer the seal certificate does not chain to a CA in the trust store
    expired          the seal certificate (or its CA) expired before `now`
    not_yet_valid    the seal certificate (or its CA) is not valid yet at `now`
    revoked          the seal certificate is on its CA's CRL
    wrapped          the signature is not the single enveloped signature over the whole document (signature
                     wrapping, extra or misplaced signatures, references to anything but the root)
    missing          the document carries no signature
    malformed        not safe, well-formed XML (DOCTYPE, entities, too big) or not an XAdES signature we can read
    key_usage        the seal certificate may not make signatures (KeyUsage lacks digitalSignature)
    unsupported_transform
                     a reference or the SignedInfo names a transform XAdES-BES does not need: only the enveloped
                     signature transform and Canonical XML (1.0, 1.1, exclusive; with or without comments) are
                     known, anything else (XSLT, XPath, XPath Filter 2.0, base64, decryption …) is refused
                     rather than skipped, even when a trusted key signed it
    bad_seal_structure
                     (SM2 seals only) not the GB/T 38540 SES_Signature / SES_Seal shape

`verify_sealed` recognises both kinds: input that starts with a DER SEQUENCE byte (0x30, which XML never does) is an
SM2 seal (GB/T 38540) and goes to `tongban.seal.sm2.verifier`; anything else is checked as XAdES.

Signature wrapping is defeated by shape and by provenance: the profile is exactly one ds:Signature, a child of the
root, whose data reference is URI="" with the enveloped transform (so the whole document is signed), and whose other
references point inside the signature itself (XAdES SignedProperties and KeyInfo). The data handed back is the
canonicalised data signxml verified, never the tree as received.

Transforms are refused unless known: signxml applies the ones it knows and silently skips the rest, so a seal whose
reference carries, say, an XSLT transform would verify while meaning something else to another verifier.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier, XAdESVerifyResult

from adapters.safexml import MAX_SEALED_BYTES, XMLRejected, parse_untrusted, thread_parser

from .truststore import CertificateProblem, TrustStore

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
C14N_METHODS = frozenset({
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
    "http://www.w3.org/2006/12/xml-c14n11#WithComments",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
})
KNOWN_TRANSFORMS = C14N_METHODS | {ENVELOPED}
REASONS = ("valid", "digest_mismatch", "untrusted_issuer", "expired", "not_yet_valid", "revoked", "wrapped",
           "missing", "malformed", "key_usage", "unsupported_transform", "bad_seal_structure")

_CONFIG_ALGORITHMS = dict(
    signature_methods=frozenset({
        SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA384, SignatureMethod.RSA_SHA512,
        SignatureMethod.ECDSA_SHA256, SignatureMethod.ECDSA_SHA384, SignatureMethod.ECDSA_SHA512,
    }),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}),
)


@dataclass
class SealResult:
    ok: bool
    reason: str
    message: str
    signer_subject: str | None = None
    signer_certificate: x509.Certificate | None = field(default=None, repr=False)  # asn1crypto's for SM2
    signing_time: dt.datetime | None = None
    digest: str | None = None            # SHA-256 (hex) of the canonical signed data
    document_digest: str | None = None   # SHA-256 (hex) of the bytes exactly as received
    element: etree._Element | None = field(default=None, repr=False)  # the verified data (document root)
    signed_data: bytes | None = field(default=None, repr=False)       # canonical bytes that were signed
    kind: str = "xades"                  # "xades" or "sm2" (GB/T 38540)

    def __bool__(self) -> bool:
        return self.ok


class _Rejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


def _check_shape(root: etree._Element) -> int:
    """Enforce the enveloped-over-root profile; return the index of the data reference in SignedInfo."""
    if root.tag == _ds("Signature"):
        raise _Rejected("wrapped", "the root is a ds:Signature (enveloping); a seal must envelop the document root")
    signatures = list(root.iter(_ds("Signature")))
    if not signatures:
        raise _Rejected("missing", f"document <{etree.QName(root).localname}> carries no ds:Signature")
    if len(signatures) > 1:
        raise _Rejected("wrapped", f"document carries {len(signatures)} ds:Signature elements; exactly one is allowed")
    signature = signatures[0]
    if signature.getparent() is not root:
        raise _Rejected("wrapped", "the ds:Signature is not a direct child of the document root "
                                   f"(found under <{etree.QName(signature.getparent()).localname}>)")
    signed_info = signature.find(_ds("SignedInfo"))
    if signed_info is None:
        raise _Rejected("malformed", "ds:Signature has no ds:SignedInfo")

    # One XPath pass collects every Id-like attribute (cheaper than visiting each element from Python).
    ids: dict[str, list[etree._Element]] = {}
    for value in root.xpath("//@Id | //@ID | //@id | //@xml:id"):
        ids.setdefault(str(value), []).append(value.getparent())
    duplicated = sorted(value for value, owners in ids.items() if len(owners) > 1)
    if duplicated:
        raise _Rejected("wrapped", f"Id values {duplicated} occur more than once")

    _check_transforms(signed_info)
    data_index = None
    for index, reference in enumerate(signed_info.findall(_ds("Reference"))):
        uri = reference.get("URI")
        if uri == "":
            if data_index is not None:
                raise _Rejected("wrapped", "more than one reference signs the whole document")
            transforms = [t.get("Algorithm") for t in reference.iterfind(f"{_ds('Transforms')}/{_ds('Transform')}")]
            if ENVELOPED not in transforms:
                raise _Rejected("wrapped", 'the URI="" reference lacks the enveloped-signature transform')
            data_index = index
        elif uri is not None and uri.startswith("#") and not uri.startswith("#xpointer("):
            target = ids.get(uri[1:], [None])[0]
            if target is None or signature not in target.iterancestors() and target is not signature:
                raise _Rejected("wrapped", f"reference {uri} points outside the signature; only the whole "
                                           'document (URI="") may be signed data')
        else:
            raise _Rejected("wrapped", f"reference URI {uri!r} is not allowed; the seal must sign the whole document")
    if data_index is None:
        raise _Rejected("wrapped", 'no reference signs the whole document (URI="" enveloped)')
    return data_index


def _check_transforms(signed_info: etree._Element) -> None:
    """Every transform and the SignedInfo canonicalisation must be one XAdES-BES needs (KNOWN_TRANSFORMS)."""
    method = signed_info.find(_ds("CanonicalizationMethod"))
    algorithm = method.get("Algorithm") if method is not None else None
    if algorithm not in C14N_METHODS:
        raise _Rejected("unsupported_transform", f"SignedInfo canonicalisation {algorithm!r} is not Canonical XML "
                                                 "1.0, 1.1 or exclusive")
    for reference in signed_info.iterfind(_ds("Reference")):
        for transform in reference.iterfind(f"{_ds('Transforms')}/{_ds('Transform')}"):
            algorithm = transform.get("Algorithm")
            if algorithm not in KNOWN_TRANSFORMS:
                raise _Rejected("unsupported_transform",
                                f"reference {reference.get('URI')!r} applies transform {algorithm!r}; only the "
                                "enveloped-signature transform and Canonical XML are accepted")


class _TrustStoreChain:
    """Stands in for signxml's chain verifier: same contract, but uses the cached trust store and gives reasons."""

    def __init__(self, trust: TrustStore, now: dt.datetime):
        self.trust, self.now = trust, now
        self.leaf: x509.Certificate | None = None  # the certificate whose key signxml then verifies with

    def verify(self, cert_chain: list[x509.Certificate]) -> x509.Certificate:
        leaves = [c for c in cert_chain if not _is_ca(c)]
        leaf = leaves[0] if len(leaves) == 1 else cert_chain[0]
        intermediates = [c for c in cert_chain if c is not leaf]
        self.leaf = self.trust.validate(leaf, intermediates, now=self.now)[0]
        return self.leaf


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


class _SealVerifier(XAdESVerifier):
    def __init__(self, chain: _TrustStoreChain):
        self._chain = chain

    def get_cert_chain_verifier(self, ca_pem_file, ee_policy, ca_policy):
        return self._chain


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    return now.replace(tzinfo=dt.timezone.utc) if now.tzinfo is None else now.astimezone(dt.timezone.utc)


def _classify(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, _Rejected | CertificateProblem):
        return exc.reason, exc.message
    if isinstance(exc, InvalidDigest):
        return "digest_mismatch", f"the document was changed after sealing: {exc}"
    if isinstance(exc, InvalidSignature):
        return "digest_mismatch", f"the signature value does not match the signed information: {exc}"
    if isinstance(exc, InvalidCertificate):
        return "untrusted_issuer", str(exc)
    if isinstance(exc, InvalidInput) and "Ambiguous reference" in str(exc):
        return "wrapped", str(exc)
    if isinstance(exc, (InvalidInput, SignXMLException, etree.DocumentInvalid, etree.XMLSyntaxError, ValueError)):
        return "malformed", f"not a readable XAdES seal: {exc}"
    return "malformed", f"{type(exc).__name__}: {exc}"


def verify_sealed(xml_bytes: bytes, trust: TrustStore, *, now: dt.datetime | None = None,
                  max_bytes: int = MAX_SEALED_BYTES) -> SealResult:
    """Verify the seal on `xml_bytes` against `trust` at `now` (default: the current time): the single enveloped
    XAdES seal of an XML document, or the SES_Signature of an SM2-sealed container."""
    now = _utc(now)
    if isinstance(xml_bytes, (bytes, bytearray)) and xml_bytes[:1] == b"\x30":
        from .sm2.verifier import verify_sm2_sealed

        return verify_sm2_sealed(bytes(xml_bytes), trust, now=now, max_bytes=max_bytes)
    document_digest = hashlib.sha256(xml_bytes).hexdigest() if isinstance(xml_bytes, (bytes, bytearray)) else None
    from .sm2.trust import SM2TrustStore

    if isinstance(trust, SM2TrustStore):  # only SM2 CAs were named (`seal verify --trust sm2-root-ca.pem`)
        return SealResult(False, "untrusted_issuer", "the trust store holds no RSA/ECDSA CA for XAdES seals",
                          document_digest=document_digest)
    try:
        root = parse_untrusted(xml_bytes, max_bytes=max_bytes)
        data_index = _check_shape(root)
        config = XAdESSignatureConfiguration(location="./", expect_references=3, verification_time=now,
                                             **_CONFIG_ALGORITHMS)
        chain = _TrustStoreChain(trust, now)
        results = _SealVerifier(chain).verify(bytes(xml_bytes), parser=thread_parser(), expect_config=config)
        data = results[data_index]
        if isinstance(data, XAdESVerifyResult) or data.signed_xml is None or data.signed_xml.tag != root.tag:
            raise _Rejected("wrapped", "the verified data is not the document root")
        properties = next(r for r in results if isinstance(r, XAdESVerifyResult)).signed_properties
        signing_time_text = properties.findtext(f"{{{XADES_NS}}}SigningTime")
        leaf = chain.leaf
        if leaf is None:
            raise _Rejected("malformed", "the signature carries no X.509 certificate")
    except XMLRejected as exc:
        return SealResult(False, "malformed", str(exc), document_digest=document_digest)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reason code, never a crash on hostile input
        reason, message = _classify(exc)
        return SealResult(False, reason, message, document_digest=document_digest)

    signing_time = None
    if signing_time_text:
        try:
            signing_time = dt.datetime.fromisoformat(signing_time_text.strip().replace("Z", "+00:00"))
        except ValueError:
            return SealResult(False, "malformed", f"xades:SigningTime {signing_time_text!r} is not an ISO 8601 time",
                              document_digest=document_digest)
    return SealResult(
        ok=True,
        reason="valid",
        message=f"sealed by {leaf.subject.rfc4514_string()}",
        signer_subject=leaf.subject.rfc4514_string(),
        signer_certificate=leaf,
        signing_time=signing_time,
        digest=hashlib.sha256(data.signed_data).hexdigest(),
        document_digest=document_digest,
        element=data.signed_xml,
        signed_data=data.signed_data,
    )

