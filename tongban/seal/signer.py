"""Signers that put an e-seal (电子印章) on an XML document.

`Signer` is the pluggable interface: anything with an `algorithm` name and `sign(xml_bytes) -> bytes` can seal
documents for the bus. `XadesSigner` is the one shipped: an XAdES-BES enveloped signature (ETSI EN 319 132) made
with signxml, carrying the signing time and the signing certificate as signed properties, over RSA or ECDSA keys.

Adding an SM2/SM3 signer (not implemented here)
-----------------------------------------------
National seals (GB/T 38540-2020, earlier GM/T 0031-2014) are ASN.1 `SES_Signature` structures signed with SM2 over
SM3 (OID 1.2.156.10197.1.501), with the default SM2 user id ``1234567812345678`` (GM/T 0009-2012). To plug one in:

1. write a class with ``algorithm = "sm2-sm3"`` and ``sign(xml_bytes) -> bytes``; for XML documents it would either
   emit an XMLDSig whose SignatureMethod is the SM2/SM3 URI (GB/T 25061-2010) or wrap an `SES_Signature` over the
   canonicalised document digest (SM3) in an element the receiver knows;
2. load the key once in ``__init__`` (as `XadesSigner` does) from an HSM/UKey or a PEM file;
3. use a vetted implementation with a cryptographically secure nonce — the pure-Python ``gmssl`` draws its SM2
   nonce from ``random`` and must not be used unpatched;
4. add the matching branch to `tongban.seal.verifier` (signxml cannot verify SM2), keeping the same `SealResult`
   reason codes so the bus and receipts do not change.
"""
from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from lxml.etree import SubElement
from signxml import DigestAlgorithm, SignatureMethod
from signxml.util import xades_tag
from signxml.xades import XAdESDataObjectFormat, XAdESSigner

from adapters.safexml import parse_untrusted

from .ca import load_certificate, load_private_key

DS_NS = "http://www.w3.org/2000/09/xmldsig#"


@runtime_checkable
class Signer(Protocol):
    """What the bus needs from a sealer: an algorithm name and a way to seal XML bytes."""

    algorithm: str

    def sign(self, xml_bytes: bytes) -> bytes:
        """Return the sealed document."""
        ...


class SigningError(ValueError):
    """A document could not be sealed (bad input or unusable key/certificate)."""


_key_cache: dict[tuple, tuple] = {}
_key_cache_lock = threading.Lock()


def _load_key_pair(cert_path: Path, key_path: Path):
    """Parse certificate and key once per process (parsing a PEM key per signature is ~54× slower)."""
    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in (cert_path, key_path))
    with _key_cache_lock:
        cached = _key_cache.get(stamp)
    if cached is None:
        cached = (load_certificate(cert_path), load_private_key(key_path))
        with _key_cache_lock:
            _key_cache[stamp] = cached
    return cached


class _XAdESWithClock(XAdESSigner):
    """signxml's XAdES signer always stamps "now"; the bus wants the time it decided (and tests a fixed one)."""

    def __init__(self, signing_time: dt.datetime, **kwargs):
        self._signing_time = signing_time
        super().__init__(**kwargs)

    def add_signing_time(self, signed_signature_properties, sig_root, signing_settings):
        node = SubElement(signed_signature_properties, xades_tag("SigningTime"), nsmap=self.namespaces)
        node.text = self._signing_time.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


class XadesSigner:
    """Seal XML documents with one department's certificate and key (XAdES-BES, enveloped, URI="")."""

    def __init__(self, cert_pem_path: str | Path, key_pem_path: str | Path, *,
                 clock: Callable[[], dt.datetime] | None = None):
        self.cert_path, self.key_path = Path(cert_pem_path), Path(key_pem_path)
        try:
            self.certificate, self._key = _load_key_pair(self.cert_path, self.key_path)
        except (OSError, ValueError) as exc:
            raise SigningError(f"cannot load seal certificate {self.cert_path} / key {self.key_path}: {exc}") from None
        if isinstance(self._key, rsa.RSAPrivateKey):
            self._signature_method, self.algorithm = SignatureMethod.RSA_SHA256, "rsa-sha256"
        elif isinstance(self._key, ec.EllipticCurvePrivateKey):
            self._signature_method, self.algorithm = SignatureMethod.ECDSA_SHA256, "ecdsa-sha256"
        else:
            raise SigningError(f"{self.key_path}: only RSA and ECDSA keys are supported, got {type(self._key).__name__}")
        if self.certificate.public_key().public_numbers() != self._key.public_key().public_numbers():
            raise SigningError(f"{self.key_path} is not the key of certificate {self.cert_path}")
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    def sign(self, xml_bytes: bytes, *, signing_time: dt.datetime | None = None) -> bytes:
        root = parse_untrusted(xml_bytes)
        if root.find(f".//{{{DS_NS}}}Signature") is not None:
            raise SigningError("document already carries a ds:Signature; seal the unsigned document")
        return etree.tostring(self.sign_element(root, signing_time=signing_time),
                              xml_declaration=True, encoding="UTF-8")

    def sign_element(self, root: etree._Element, *, signing_time: dt.datetime | None = None) -> etree._Element:
        # A fresh signxml signer per call: it remembers every Id it ever generated, which would grow forever in a
        # long-running worker, and it is not safe to share between threads.
        xades = _XAdESWithClock(
            signing_time or self._clock(),
            signature_algorithm=self._signature_method,
            digest_algorithm=DigestAlgorithm.SHA256,
            data_object_format=XAdESDataObjectFormat(Description="tongban sealed document", MimeType="text/xml"),
        )
        return xades.sign(root, key=self._key, cert=[self.certificate])


def certificate_subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()
