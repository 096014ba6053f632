"""The trust store: which CAs a party trusts and which certificates those CAs revoked.

Certificates and CRLs are parsed once per process and cached, keyed by the files' paths and modification times, so
a verifier on the hot path never re-reads a PEM file, yet a CRL rewritten on disk (a revocation) is picked up.

Configuration (certs/trust.yaml; paths relative to the YAML file's folder)::

    parties:
      default:
        ca: [root-ca.pem]
        crl: [root-ca.crl.pem]
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.x509 import verification

_cache: dict[tuple, "TrustStore"] = {}
_cache_lock = threading.Lock()


class TrustConfigError(ValueError):
    """The trust configuration or one of the files it names is unusable."""


class CertificateProblem(Exception):
    """A signing certificate failed a trust check; `reason` is one of the SealResult reason codes."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def describe(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:x})"


def _fingerprint(paths: Iterable[Path]) -> tuple:
    stamp = []
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise TrustConfigError(f"trust store file {path} does not exist (run `tongban certs init`?)") from None
        stamp.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(stamp)


def _read(source: str | Path | bytes) -> tuple[str, bytes]:
    if isinstance(source, bytes):
        return "<bytes>", source
    path = Path(source)
    try:
        return str(path), path.read_bytes()
    except FileNotFoundError:
        raise TrustConfigError(f"trust store file {path} does not exist (run `tongban certs init`?)") from None


def _ee_key_usage_check(policy, cert, key_usage) -> None:
    # Checked again (with a clearer reason) before chain building; this keeps the chain verifier honest on its own.
    if key_usage is None or not key_usage.digital_signature:
        raise ValueError("certificate KeyUsage does not allow digitalSignature")


_EE_POLICY = verification.ExtensionPolicy.permit_all().require_present(
    x509.KeyUsage, verification.Criticality.AGNOSTIC, _ee_key_usage_check
)
_CA_POLICY = verification.ExtensionPolicy.webpki_defaults_ca()


@dataclass(frozen=True)
class TrustStore:
    ca_certificates: tuple[x509.Certificate, ...]
    store: verification.Store
    # issuer name (DER) -> revoked serial numbers
    revoked: dict[bytes, frozenset[int]]
    # tongban.seal.sm2.trust.SM2TrustStore when trust.yaml lists sm2_ca (GB/T 38540 seals); the TrustConfigError
    # when those files are unusable (reported when an SM2 seal is checked)
    sm2: object = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_files(cls, ca_pems: Iterable[str | Path | bytes], crl_pems: Iterable[str | Path | bytes] = ()) -> "TrustStore":
        """Trust the CA certificates in `ca_pems` (paths or PEM bytes) and honour the CRLs in `crl_pems`."""
        ca_pems, crl_pems = list(ca_pems), list(crl_pems)
        paths = [Path(p) for p in ca_pems + crl_pems if not isinstance(p, bytes)]
        if len(paths) == len(ca_pems) + len(crl_pems):  # cache only what is backed by files
            key = ("files", tuple(str(Path(p)) for p in ca_pems), tuple(str(Path(p)) for p in crl_pems),
                   _fingerprint(paths))
            with _cache_lock:
                cached = _cache.get(key)
            if cached is not None:
                return cached
            store = cls._build(ca_pems, crl_pems)
            with _cache_lock:
                _cache[key] = store
            return store
        return cls._build(ca_pems, crl_pems)

    @classmethod
    def load(cls, config_path: str | Path, party: str = "default") -> "TrustStore":
        """Load the trust store of `party` from a trust.yaml file."""
        import yaml

        config_path = Path(config_path)
        try:
            config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise TrustConfigError(
                f"trust configuration {config_path} does not exist (run `tongban certs init` or set TONGBAN_CERTS)"
            ) from None
        parties = config.get("parties") or {}
        if party not in parties:
            raise TrustConfigError(f"{config_path}: no party {party!r} under 'parties' (have {sorted(parties)})")
        entry = parties[party] or {}
        base = config_path.resolve().parent
        cas = [base / p for p in entry.get("ca") or []]
        crls = [base / p for p in entry.get("crl") or []]
        if not cas:
            raise TrustConfigError(f"{config_path}: party {party!r} lists no 'ca' files")
        store = cls.from_files(cas, crls)
        if entry.get("sm2_ca"):
            from .sm2.trust import SM2TrustStore

            try:
                sm2 = SM2TrustStore.from_files([base / p for p in entry["sm2_ca"]],
                                               [base / p for p in entry.get("sm2_crl") or []])
            except TrustConfigError as exc:
                # XAdES-only sandboxes (no `certs init --sm2` yet) keep working; an SM2 seal is then refused as
                # untrusted_issuer with this message.
                sm2 = TrustConfigError(f"{config_path}: party {party!r}: {exc}")
            store = dataclasses.replace(store, sm2=sm2)
        return store

    @classmethod
    def _build(cls, ca_pems: list, crl_pems: list) -> "TrustStore":
        ca_certs: list[x509.Certificate] = []
        for source in ca_pems:
            name, data = _read(source)
            try:
                ca_certs.extend(x509.load_pem_x509_certificates(data))
            except ValueError as exc:
                raise TrustConfigError(f"{name}: not a PEM certificate file ({exc})") from None
        if not ca_certs:
            raise TrustConfigError("the trust store holds no CA certificate")
        revoked: dict[bytes, set[int]] = {}
        for source in crl_pems:
            name, data = _read(source)
            try:
                crl = x509.load_pem_x509_crl(data)
            except ValueError as exc:
                raise TrustConfigError(f"{name}: not a PEM CRL ({exc})") from None
            # A CRL counts only when a trusted CA signed it; otherwise anyone could "un-revoke" a certificate.
            issuer = next((ca for ca in ca_certs if ca.subject == crl.issuer), None)
            if issuer is None or not crl.is_signature_valid(issuer.public_key()):
                raise TrustConfigError(f"{name}: CRL issuer {crl.issuer.rfc4514_string()} is not a trusted CA "
                                       "or the CRL signature is invalid")
            revoked.setdefault(crl.issuer.public_bytes(), set()).update(entry.serial_number for entry in crl)
        return cls(
            ca_certificates=tuple(ca_certs),
            store=verification.Store(ca_certs),
            revoked={issuer: frozenset(serials) for issuer, serials in revoked.items()},
        )

    # ---------------------------------------------------------------- checks
    def is_revoked(self, cert: x509.Certificate) -> bool:
        return cert.serial_number in self.revoked.get(cert.issuer.public_bytes(), frozenset())

    def validate(self, leaf: x509.Certificate, intermediates: list[x509.Certificate] | None = None,
                 *, now: dt.datetime | None = None) -> list[x509.Certificate]:
        """Return the verified chain (leaf first) or raise CertificateProblem with the reason code."""
        now = now or dt.datetime.now(dt.timezone.utc)
        intermediates = list(intermediates or [])
        for cert in [leaf, *intermediates]:
            if now > cert.not_valid_after_utc:
                raise CertificateProblem("expired", f"certificate {describe(cert)} expired on "
                                                    f"{cert.not_valid_after_utc.isoformat()}")
            if now < cert.not_valid_before_utc:
                raise CertificateProblem("not_yet_valid", f"certificate {describe(cert)} is not valid before "
                                                    f"{cert.not_valid_before_utc.isoformat()}")
        try:
            key_usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            raise CertificateProblem("key_usage", f"certificate {describe(leaf)} has no KeyUsage extension") from None
        if not key_usage.digital_signature:
            raise CertificateProblem("key_usage", f"certificate {describe(leaf)} may not sign (KeyUsage lacks "
                                                  "digitalSignature)")
        verifier = (
            verification.PolicyBuilder()
            .store(self.store)
            .time(now)
            .extension_policies(ee_policy=_EE_POLICY, ca_policy=_CA_POLICY)
            .build_client_verifier()
        )
        try:
            chain = list(verifier.verify(leaf, intermediates).chain)
        except verification.VerificationError as exc:
            raise CertificateProblem(
                "untrusted_issuer", f"certificate {describe(leaf)} issued by {leaf.issuer.rfc4514_string()} "
                                    f"does not chain to a trusted CA: {exc}") from None
        for cert in chain[:-1]:  # the trust anchor itself is not revoked by its own CRL
            if self.is_revoked(cert):
                raise CertificateProblem("revoked", f"certificate {describe(cert)} is revoked by its CA's CRL")
        return chain


def clear_cache() -> None:
    """Forget cached trust stores (tests; a long-running process picks up file changes by itself)."""
    with _cache_lock:
        _cache.clear()
