"""The SM2 sandbox certificate authority (国密 sandbox CA): a root CA, one SM2 电子印章 certificate per department,
a CRL, and a second SM2 CA that nobody trusts (for tests).

SANDBOX ONLY, like `tongban.seal.ca`: the subjects say so and every key file starts with the sandbox marker line.
`cryptography` cannot sign with SM2, so the certificates and CRLs are asn1crypto structures signed SM2-with-SM3
(1.2.156.10197.1.501) by `primitives.sign`; OpenSSL 3 reads and verifies them (`openssl verify`).

Files in the folder (beside the RSA/ECDSA ones): `sm2-root-ca.pem`, `sm2-root-ca.key.pem`, `sm2-root-ca.crl.pem`,
`sm2-seal-<slug>.pem` / `.key.pem`, `sm2-untrusted-ca.*`, `sm2-untrusted-signer.*`.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from asn1crypto import crl as asn1_crl
from asn1crypto import pem, x509

from tongban.seal.ca import DEFAULT_DEPARTMENTS, SANDBOX_KEY_MARKER, CAFiles, IssuedCertificate, seal_common_name

from . import primitives as sm2

SM2_ROOT_CA_NAME = "tongban SANDBOX ONLY SM2 Root CA — not for production"
SM2_UNTRUSTED_CA_NAME = "tongban SANDBOX untrusted SM2 CA — for tests only"
SM2_SEAL_KEY_USAGE = ("digital_signature", "non_repudiation")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _algorithm() -> x509.SignedDigestAlgorithm:
    return x509.SignedDigestAlgorithm({"algorithm": sm2.SM2_SM3_OID})


def _name(common_name: str, organization: str) -> x509.Name:
    if not 1 <= len(common_name) <= 64 or not 1 <= len(organization) <= 64:
        raise ValueError(f"certificate subject {common_name!r} / {organization!r} must be 1-64 characters (RFC 5280)")
    return x509.Name.build({"country_name": "CN", "organization_name": organization, "common_name": common_name})


def _time(when: dt.datetime) -> x509.Time:
    when = when.astimezone(dt.timezone.utc).replace(microsecond=0)
    return x509.Time({"utc_time" if 1950 <= when.year < 2050 else "general_time": when})


def _key_id(public_key: bytes) -> bytes:
    return sm2.sm3(public_key)[:20]


def write_private(path: Path, private_key: bytes) -> None:
    from tongban.store.files import write_private as _write

    _write(path, SANDBOX_KEY_MARKER.encode("utf-8") + b"\n" + sm2.private_key_pem(private_key))


def load_certificate(path: str | Path) -> x509.Certificate:
    data = Path(path).read_bytes()
    return x509.Certificate.load(pem.unarmor(data)[2] if pem.detect(data) else data)


def certificate_pem(cert: x509.Certificate) -> bytes:
    return pem.armor("CERTIFICATE", cert.dump())


IssuedSM2Certificate = IssuedCertificate  # the same files and serial; `certificate` is asn1crypto's here


@dataclass
class SM2SandboxCA(CAFiles):
    """An SM2 CA (gmalglib keys, asn1crypto certificates), its files as CAFiles says."""

    certificate: x509.Certificate
    key: bytes

    DEFAULT_STEM = "sm2-root-ca"
    _certificate_pem = staticmethod(certificate_pem)
    _write_key = staticmethod(write_private)
    _read_certificate = staticmethod(load_certificate)
    _read_key = staticmethod(lambda path: sm2.load_private_key_pem(path.read_bytes()))

    @staticmethod
    def _read_revoked(crl_pem: bytes) -> dict[int, dt.datetime]:
        listed = asn1_crl.CertificateList.load(pem.unarmor(crl_pem)[2])
        return {entry["user_certificate"].native: entry["revocation_date"].native
                for entry in listed["tbs_cert_list"]["revoked_certificates"]}

    @property
    def public_key(self) -> bytes:
        return sm2.public_key_of(self.key)

    # ------------------------------------------------------------------ signing
    def _sign_certificate(self, tbs: x509.TbsCertificate, key: bytes) -> x509.Certificate:
        return x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": _algorithm(),
                                 "signature_value": sm2.sign(key, tbs.dump())})

    @staticmethod
    def _tbs(*, serial: int, issuer: x509.Name, subject: x509.Name, public_key: bytes, not_before: dt.datetime,
             not_after: dt.datetime, extensions: list[dict]) -> x509.TbsCertificate:
        return x509.TbsCertificate({
            "version": "v3", "serial_number": serial, "signature": _algorithm(), "issuer": issuer,
            "validity": {"not_before": _time(not_before), "not_after": _time(not_after)}, "subject": subject,
            "subject_public_key_info": sm2.public_key_info(public_key), "extensions": extensions,
        })

    @classmethod
    def create(cls, directory: str | Path, stem: str, common_name: str, *, now: dt.datetime | None = None,
               years: int = 10) -> "SM2SandboxCA":
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        now = now or _utcnow()
        key, public_key = sm2.generate_keypair()
        name = _name(common_name, "tongban sandbox")
        tbs = cls._tbs(serial=secrets.randbits(63) | 1, issuer=name, subject=name, public_key=public_key,
                       not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=365 * years),
                       extensions=[
                           {"extn_id": "basic_constraints", "critical": True,
                            "extn_value": {"ca": True, "path_len_constraint": 0}},
                           {"extn_id": "key_usage", "critical": True, "extn_value": {"key_cert_sign", "crl_sign"}},
                           {"extn_id": "key_identifier", "critical": False, "extn_value": _key_id(public_key)},
                       ])
        ca = cls(directory, stem, certificate=x509.Certificate(), key=key)
        ca.certificate = ca._sign_certificate(tbs, key)
        return ca._saved(now)

    def issue_certificate(self, stem: str, common_name: str, organization: str, *, now: dt.datetime | None = None,
                          not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
                          days: int = 730, key_usage: Iterable[str] = SM2_SEAL_KEY_USAGE) -> IssuedSM2Certificate:
        """Issue an SM2 seal certificate and key as `<stem>.pem` / `<stem>.key.pem` (validity and KeyUsage can be
        overridden, as in `tongban.seal.ca.SandboxCA.issue_certificate`)."""
        now = now or _utcnow()
        key, public_key = sm2.generate_keypair()
        tbs = self._tbs(
            serial=secrets.randbits(63) | 1, issuer=self.certificate.subject,
            subject=_name(common_name, organization), public_key=public_key,
            not_before=not_before or now - dt.timedelta(days=1), not_after=not_after or now + dt.timedelta(days=days),
            extensions=[
                {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}},
                {"extn_id": "key_usage", "critical": True, "extn_value": set(key_usage)},
                {"extn_id": "key_identifier", "critical": False, "extn_value": _key_id(public_key)},
                {"extn_id": "authority_key_identifier", "critical": False,
                 "extn_value": {"key_identifier": _key_id(self.public_key)}},
            ])
        return self._write_pair(stem, self._sign_certificate(tbs, self.key), key)

    def write_crl(self, *, now: dt.datetime | None = None, days: int = 30) -> Path:
        now = now or _utcnow()
        entries = [{"user_certificate": serial, "revocation_date": _time(when)}
                   for serial, when in sorted(self.revoked.items())]
        tbs = asn1_crl.TbsCertList({
            "version": "v2", "signature": _algorithm(), "issuer": self.certificate.subject,
            "this_update": _time(now - dt.timedelta(minutes=5)), "next_update": _time(now + dt.timedelta(days=days)),
            "revoked_certificates": entries,
            "crl_extensions": [
                {"extn_id": "crl_number", "critical": False, "extn_value": len(self.revoked) + int(now.timestamp())},
                {"extn_id": "authority_key_identifier", "critical": False,
                 "extn_value": {"key_identifier": _key_id(self.public_key)}},
            ],
        })
        listed = asn1_crl.CertificateList({"tbs_cert_list": tbs, "signature_algorithm": _algorithm(),
                                           "signature": sm2.sign(self.key, tbs.dump())})
        self.crl_path.write_bytes(pem.armor("X509 CRL", listed.dump()))
        return self.crl_path


def init_sm2_sandbox_ca(directory: str | Path, departments: list[tuple[str, str]] | None = None, *,
                        now: dt.datetime | None = None) -> dict:
    """Create the SM2 sandbox PKI in `directory` (beside the RSA/ECDSA one) and return where everything is:
    ``{"ca", "ca_cert", "crl", "departments": {slug: IssuedSM2Certificate}, "untrusted_ca", "untrusted_signer"}``.
    The caller rewrites trust.yaml (`tongban.seal.ca.write_trust_config`) so parties trust the SM2 root too."""
    directory = Path(directory)
    now = now or _utcnow()
    ca = SM2SandboxCA.create(directory, "sm2-root-ca", SM2_ROOT_CA_NAME, now=now)
    issued = {slug: ca.issue_certificate(f"sm2-seal-{slug}", seal_common_name(name), name, now=now)
              for slug, name in (DEFAULT_DEPARTMENTS if departments is None else departments)}
    untrusted_ca = SM2SandboxCA.create(directory, "sm2-untrusted-ca", SM2_UNTRUSTED_CA_NAME, now=now)
    untrusted = untrusted_ca.issue_certificate("sm2-untrusted-signer", "不受信任的国密印章 (SANDBOX ONLY)",
                                               "untrusted sandbox", now=now)
    return {"ca": ca, "ca_cert": ca.cert_path, "crl": ca.crl_path, "departments": issued,
            "untrusted_ca": untrusted_ca, "untrusted_signer": untrusted}
