"""The SM2 side of a trust store: SM2 CA certificates and their CRLs, and the chain check for SM2 certificates.

`cryptography`'s chain verifier cannot check SM2-with-SM3 signatures, so the check is done here with asn1crypto
and gmalglib, with the same rules and reason codes as `tongban.seal.truststore.TrustStore.validate`:

    not_yet_valid / expired   the leaf or its CA is outside its validity period at `now`
    key_usage                 the leaf lacks KeyUsage digitalSignature
    untrusted_issuer          no trusted SM2 CA has the leaf's issuer name and a key that verifies its signature
                              (or that CA is no CA: BasicConstraints CA:true and KeyUsage keyCertSign required)
    revoked                   the leaf's serial is on its CA's CRL

A CRL counts only when a trusted SM2 CA signed it (otherwise anyone could "un-revoke"). trust.yaml lists the SM2
files under their own keys beside the RSA/ECDSA ones::

    parties:
      default: {ca: [root-ca.pem], crl: [root-ca.crl.pem], sm2_ca: [sm2-root-ca.pem], sm2_crl: [sm2-root-ca.crl.pem]}
"""
from __future__ import annotations

import datetime as dt
import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from asn1crypto import crl as asn1_crl
from asn1crypto import pem, x509
from cryptography.x509 import load_der_x509_certificate

from tongban.seal.truststore import CertificateProblem, TrustConfigError

from . import primitives as sm2

_cache: dict[tuple, "SM2TrustStore"] = {}
_lock = threading.Lock()


def subject_of(cert: x509.Certificate) -> str:
    """The subject as RFC 4514 text, exactly as the XAdES side names signers (CN=…,O=…,C=CN)."""
    return _names(cert.dump())[0]


@functools.lru_cache(maxsize=1024)
def _names(der: bytes) -> tuple[str, str]:
    """(subject, issuer) as RFC 4514 text; asn1crypto's wording for a certificate cryptography refuses."""
    try:
        parsed = load_der_x509_certificate(der)  # names only; SM2 keys are not needed
        return parsed.subject.rfc4514_string(), parsed.issuer.rfc4514_string()
    except Exception:  # noqa: BLE001 - a bad version or the like must still be named, not crash
        cert = x509.Certificate.load(der)
        return cert.subject.human_friendly, cert.issuer.human_friendly


def describe(cert: x509.Certificate) -> str:
    return f"{subject_of(cert)} (serial {cert.serial_number:x})"


def _blocks(name: str, data: bytes, kind: str) -> list[bytes]:
    if not pem.detect(data):
        return [data]
    found = [der for block_kind, _h, der in pem.unarmor(data, multiple=True) if block_kind == kind]
    if not found:
        raise TrustConfigError(f"{name}: holds no PEM {kind}")
    return found


def is_sm2_certificate(cert: x509.Certificate) -> bool:
    try:
        sm2.public_key_from_info(cert["tbs_certificate"]["subject_public_key_info"])
        return True
    except (sm2.SM2Error, ValueError, KeyError):
        return False


def is_sm2_file(path: str | Path) -> bool:
    """True when the PEM file holds an SM2 certificate or an SM2-signed CRL (the CLI sorts --trust/--crl with it)."""
    data = Path(path).read_bytes()
    try:
        kind, _h, der = pem.unarmor(data) if pem.detect(data) else ("CERTIFICATE", None, data)
        if kind == "X509 CRL":
            return asn1_crl.CertificateList.load(der)["signature_algorithm"]["algorithm"].dotted == sm2.SM2_SM3_OID
        return is_sm2_certificate(x509.Certificate.load(der))
    except (ValueError, TypeError):
        return False


@functools.lru_cache(maxsize=4096)
def verified_once(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """`sm2.verify`, remembered for the exact bytes: a certificate or a seal is checked once per process, not once
    per document (the answer is a pure function of the three values; validity and CRLs are still checked each
    time by the caller)."""
    try:
        return sm2.verify(public_key, data, signature)
    except sm2.SM2Error:
        return False


def signed_by(cert_or_crl, issuer_key: bytes, tbs_field: str, signature_field: str) -> bool:
    """True when `cert_or_crl` (a certificate or CRL) is SM2-with-SM3 signed by `issuer_key`."""
    if cert_or_crl["signature_algorithm"]["algorithm"].dotted != sm2.SM2_SM3_OID:
        return False
    value = cert_or_crl[signature_field].contents or b""
    if not value or value[0] != 0:  # a signature BIT STRING holds whole octets
        return False
    return verified_once(issuer_key, cert_or_crl[tbs_field].dump(), value[1:])


def _bits(cert: x509.Certificate) -> frozenset:
    return _key_usage(cert.dump())


@functools.lru_cache(maxsize=1024)
def _key_usage(der: bytes) -> frozenset:
    usage = x509.Certificate.load(der).key_usage_value
    return frozenset(usage.native) if usage is not None else frozenset()


@dataclass(frozen=True)
class SM2TrustStore:
    ca_certificates: tuple[x509.Certificate, ...] = field(repr=False)
    revoked: dict[bytes, frozenset[int]] = field(repr=False)   # issuer name (DER) -> revoked serials

    @classmethod
    def from_files(cls, ca_files: Iterable[str | Path], crl_files: Iterable[str | Path] = ()) -> "SM2TrustStore":
        ca_files, crl_files = [Path(p) for p in ca_files], [Path(p) for p in crl_files]
        stamp = []
        for path in ca_files + crl_files:
            try:
                stat = path.stat()
            except FileNotFoundError:
                raise TrustConfigError(f"SM2 trust store file {path} does not exist "
                                       "(run `tongban certs init --sm2`?)") from None
            stamp.append((str(path), stat.st_mtime_ns, stat.st_size))
        key = (tuple(map(str, ca_files)), tuple(map(str, crl_files)), tuple(stamp))
        with _lock:
            if key in _cache:
                return _cache[key]
        store = cls._build(ca_files, crl_files)
        with _lock:
            _cache[key] = store
        return store

    @classmethod
    def _build(cls, ca_files: list[Path], crl_files: list[Path]) -> "SM2TrustStore":
        cas: list[x509.Certificate] = []
        for path in ca_files:
            for der in _blocks(str(path), path.read_bytes(), "CERTIFICATE"):
                try:
                    cert = x509.Certificate.load(der)
                    cert.native  # noqa: B018 - parse it all now
                except ValueError as exc:
                    raise TrustConfigError(f"{path}: not a certificate ({exc})") from None
                if not is_sm2_certificate(cert):
                    raise TrustConfigError(f"{path}: {describe(cert)} has no SM2 public key")
                cas.append(cert)
        revoked: dict[bytes, set[int]] = {}
        for path in crl_files:
            for der in _blocks(str(path), path.read_bytes(), "X509 CRL"):
                try:
                    listed = asn1_crl.CertificateList.load(der)
                    issuer = listed["tbs_cert_list"]["issuer"]
                except ValueError as exc:
                    raise TrustConfigError(f"{path}: not a CRL ({exc})") from None
                ca = next((c for c in cas if c.subject == issuer), None)
                if ca is None or not signed_by(listed, _key(ca), "tbs_cert_list", "signature"):
                    raise TrustConfigError(f"{path}: CRL issuer {issuer.human_friendly} is not a trusted SM2 CA "
                                           "or the CRL signature is invalid")
                revoked.setdefault(issuer.dump(), set()).update(
                    entry["user_certificate"].native for entry in listed["tbs_cert_list"]["revoked_certificates"])
        return cls(tuple(cas), {issuer: frozenset(serials) for issuer, serials in revoked.items()})

    @functools.cached_property
    def _anchors(self) -> dict[bytes, list[tuple[x509.Certificate, bytes, bool]]]:
        """subject DER -> [(CA certificate, its SM2 key, may it issue: CA:true and keyCertSign)]."""
        anchors: dict[bytes, list] = {}
        for ca in self.ca_certificates:
            constraints = ca.basic_constraints_value
            may_issue = bool(constraints is not None and constraints["ca"].native and "key_cert_sign" in _bits(ca))
            anchors.setdefault(ca.subject.dump(), []).append((ca, _key(ca), may_issue))
        return anchors

    def validate(self, leaf: x509.Certificate, *, now: dt.datetime, der: bytes | None = None) -> x509.Certificate:
        """Return the trusted CA that issued `leaf` (DER `der`, when the caller has it), or raise CertificateProblem
        with the reason code."""
        der = der if der is not None else leaf.dump()
        _check_time(leaf, now, der)
        if "digital_signature" not in _key_usage(der):
            raise CertificateProblem("key_usage", f"certificate {describe(leaf)} may not sign (KeyUsage lacks "
                                                  "digitalSignature)")
        issuer, tbs, algorithm, signature = _signed_parts(der)
        # Exact DER match first (what CAs emit); RFC 5280 name comparison only when no CA matches byte for byte.
        candidates = self._anchors.get(issuer) or [
            entry for entry in (e for entries in self._anchors.values() for e in entries)
            if entry[0].subject == leaf.issuer]
        leaf_signature_ok = False
        for ca, key, may_issue in candidates:
            if algorithm != sm2.SM2_SM3_OID or signature is None or not verified_once(key, tbs, signature):
                continue
            leaf_signature_ok = True
            if not may_issue:
                continue
            _check_time(ca, now)
            if leaf.serial_number in self.revoked.get(ca.subject.dump(), frozenset()):
                raise CertificateProblem("revoked", f"certificate {describe(leaf)} is revoked by its CA's CRL")
            return ca
        why = "no trusted SM2 CA may issue it" if leaf_signature_ok else "no trusted SM2 CA signed it"
        raise CertificateProblem("untrusted_issuer", f"certificate {describe(leaf)} issued by "
                                                     f"{_issuer_of(leaf)}: {why}")


@functools.lru_cache(maxsize=1024)
def _signed_parts(der: bytes) -> tuple[bytes, bytes, str, bytes | None]:
    """(issuer DER, TBS DER, signature algorithm OID, signature octets or None when not whole octets)."""
    cert = x509.Certificate.load(der)
    value = cert["signature_value"].contents or b""
    octets = value[1:] if value and value[0] == 0 else None
    return (cert["tbs_certificate"]["issuer"].dump(), cert["tbs_certificate"].dump(),
            cert["signature_algorithm"]["algorithm"].dotted, octets)


def _issuer_of(cert: x509.Certificate) -> str:
    return _names(cert.dump())[1]


def _key(cert: x509.Certificate) -> bytes:
    return sm2.public_key_from_info(cert["tbs_certificate"]["subject_public_key_info"])


@functools.lru_cache(maxsize=1024)
def _validity(der: bytes) -> tuple[dt.datetime, dt.datetime]:
    validity = x509.Certificate.load(der)["tbs_certificate"]["validity"]
    return validity["not_before"].native, validity["not_after"].native


def _check_time(cert: x509.Certificate, now: dt.datetime, der: bytes | None = None) -> None:
    not_before, not_after = _validity(der if der is not None else cert.dump())
    if now > not_after:
        raise CertificateProblem("expired", f"certificate {describe(cert)} expired on {not_after.isoformat()}")
    if now < not_before:
        raise CertificateProblem("not_yet_valid", f"certificate {describe(cert)} is not valid before "
                                                  f"{not_before.isoformat()}")


def clear_cache() -> None:
    with _lock:
        _cache.clear()
