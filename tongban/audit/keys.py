"""Where the auditor's keys and trust come from: tongban's audit key (审计签名) and the trust configuration.

Production: TONGBAN_AUDIT_KEY and TONGBAN_AUDIT_CERT (tongban.settings) name the key and certificate; a missing one
is an `AuditKeyMissing` naming the variable — nothing is signed with a made-up key. Sandbox: the key is
`audit-signer.key.pem` in the sandbox CA folder, issued by the SANDBOX ONLY root CA on first use and marked as a
sandbox key like every key there (tongban.seal.ca). The trust configuration is `$TONGBAN_CERTS/trust.yaml`, else in
the sandbox the sandbox's own `<TONGBAN_HOME>/certs/trust.yaml` (the one the mock platform signs with), else
`certs/trust.yaml`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from tongban.seal.ca import SANDBOX_KEY_MARKER, SandboxCA, init_sandbox_ca, load_certificate, load_private_key
from tongban.settings import Settings

AUDIT_STEM = "audit-signer"
AUDIT_NAME = "tongban 审计签名 audit key (SANDBOX ONLY)"
AUDIT_ORGANIZATION = "tongban"


class AuditKeyMissing(RuntimeError):
    """No audit key is configured (production), or the configured files cannot be read."""


@dataclass(frozen=True)
class AuditSigner:
    key: object
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # leaf first, then the issuing CA (when known)
    cert_path: Path
    key_path: Path
    sandbox: bool


def sandbox_certs_dir(settings: Settings) -> Path:
    """The sandbox CA folder: TONGBAN_CERTS, else `<TONGBAN_HOME>/certs` (where `sandbox up` keeps its CA)."""
    return settings.certs_dir or settings.home / "certs"


def trust_config(settings: Settings) -> Path:
    if settings.certs_dir:
        return settings.certs_dir / "trust.yaml"
    sandbox = settings.home / "certs" / "trust.yaml"
    if settings.is_sandbox and sandbox.is_file():
        return sandbox
    return Path("certs") / "trust.yaml"


_lock = threading.Lock()


def _sandbox_files(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / f"{AUDIT_STEM}.pem", directory / f"{AUDIT_STEM}.key.pem"
    with _lock:
        if not cert.is_file() or not key.is_file():
            if not (directory / "root-ca.pem").is_file():
                init_sandbox_ca(directory)
            SandboxCA.load(directory).issue_certificate(AUDIT_STEM, AUDIT_NAME, AUDIT_ORGANIZATION)
    return cert, key


def audit_signer(settings: Settings) -> AuditSigner:
    """tongban's audit key: configured in production (refused when missing), the sandbox CA's otherwise."""
    if settings.audit_key or settings.audit_cert or not settings.is_sandbox:
        missing = [name for name, value in (("TONGBAN_AUDIT_KEY", settings.audit_key),
                                            ("TONGBAN_AUDIT_CERT", settings.audit_cert)) if not value]
        if missing:
            raise AuditKeyMissing(f"{' and '.join(missing)} not set: checkpoints and evidence packages are signed "
                                  f"with tongban's audit key, and outside the sandbox there is no default one")
        cert_path, key_path, sandbox = Path(settings.audit_cert), Path(settings.audit_key), False
    else:
        cert_path, key_path = _sandbox_files(sandbox_certs_dir(settings))
        sandbox = True
    try:
        key = load_private_key(key_path)
        certificate = load_certificate(cert_path)
    except (OSError, ValueError) as exc:
        raise AuditKeyMissing(f"audit key {key_path} / certificate {cert_path}: cannot be loaded ({exc})") from None
    if not sandbox and key_path.read_bytes().startswith(SANDBOX_KEY_MARKER.encode("utf-8")):
        raise AuditKeyMissing(f"TONGBAN_AUDIT_KEY {key_path} is a SANDBOX key: production needs its own audit key")
    chain = [certificate]
    issuer = cert_path.parent / "root-ca.pem"
    if issuer.is_file():
        ca = load_certificate(issuer)
        if ca.subject == certificate.issuer:
            chain.append(ca)
    return AuditSigner(key, certificate, tuple(chain), cert_path, key_path, sandbox)
