"""The sandbox licence department's 国密 seals: 营业执照 sealed with SM2 (GB/T 38540), valid and each bad kind.

Like `sealed_dept`'s XAdES samples, every bad kind is what goes wrong in practice; the files are tongban's SM2
container (`tongban.seal.sm2.structures`), named `licence-NNNNN-sm2[-kind].der`. SANDBOX ONLY certificates from
`tongban certs init --sm2` (created on first use).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from tongban.seal.sm2.ca import SM2SandboxCA
from tongban.seal.sm2.signer import SM2Signer
from tongban.seal.sm2.structures import SealedDocument

# What each bad SM2 kind must be rejected as (the verifier's reason codes; the same vocabulary as XAdES).
SM2_BAD_KINDS = {
    "sm2-tampered": "digest_mismatch",       # the document inside the container edited after sealing
    "sm2-untrusted": "untrusted_issuer",     # sealed under an SM2 CA nobody trusts
    "sm2-expired": "expired",                # the seal certificate expired
    "sm2-not-yet-valid": "not_yet_valid",    # a seal certificate issued for next month used today
    "sm2-revoked": "revoked",                # a seal reported lost (on the SM2 CA's CRL)
    "sm2-foreign-seal": "bad_seal_structure",  # 公安局's seal used by 市场监督管理局's certificate (not in certList)
    "sm2-unsigned": "missing",               # the container carries no SES_Signature
}


def department_signer(certs_dir: Path, slug: str) -> SM2Signer:
    return SM2Signer(certs_dir / f"sm2-seal-{slug}.pem", certs_dir / f"sm2-seal-{slug}.key.pem")


def seal_valid(document: bytes, certs_dir: Path, slug: str) -> bytes:
    return department_signer(certs_dir, slug).sign(document)


def seal_bad(kind: str, document: bytes, certs_dir: Path, slug: str, stamp: str, *,
             tamper: tuple[bytes, bytes]) -> bytes:
    """`document` sealed with an SM2 seal that goes wrong as `kind` says (one of SM2_BAD_KINDS)."""
    now = dt.datetime.now(dt.timezone.utc)
    if kind == "sm2-tampered":
        container = SealedDocument.load(seal_valid(document, certs_dir, slug))
        edited = document.replace(*tamper)
        if edited == document:
            raise RuntimeError("sandbox: the tampered SM2 licence sample did not change")
        return SealedDocument({"format": container["format"], "mediaType": container["mediaType"],
                               "document": edited, "signature": container["signature"]}).dump()
    if kind == "sm2-untrusted":
        return SM2Signer(certs_dir / "sm2-untrusted-signer.pem", certs_dir / "sm2-untrusted-signer.key.pem").sign(
            document)
    if kind == "sm2-unsigned":
        return SealedDocument({"format": "tongban-sm2-sealed/1", "mediaType": "application/xml",
                               "document": document}).dump()
    if kind == "sm2-foreign-seal":
        others = sorted(p.name[len("sm2-seal-"):-len(".pem")] for p in certs_dir.glob("sm2-seal-*.pem")
                        if not p.name.endswith(".key.pem") and p.name != f"sm2-seal-{slug}.pem")
        foreign = department_signer(certs_dir, others[0]).own_seal()
        return department_signer(certs_dir, slug).sign(document, seal=foreign)
    ca = SM2SandboxCA.load(certs_dir)
    name = "市场监督管理局"
    if kind == "sm2-expired":
        old = ca.issue_certificate(f"sm2-seal-{slug}-expired-{stamp}", "过期国密印章 (SANDBOX ONLY)", name,
                                   not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=30))
        return SM2Signer(old.cert_path, old.key_path).sign(document, now=now - dt.timedelta(days=60))
    if kind == "sm2-not-yet-valid":
        early = ca.issue_certificate(f"sm2-seal-{slug}-early-{stamp}", "未生效国密印章 (SANDBOX ONLY)", name,
                                     not_before=now + dt.timedelta(days=30), not_after=now + dt.timedelta(days=400))
        return SM2Signer(early.cert_path, early.key_path).sign(document)
    if kind == "sm2-revoked":
        lost = ca.issue_certificate(f"sm2-seal-{slug}-lost-{stamp}", "已挂失国密印章 (SANDBOX ONLY)", name)
        sealed = SM2Signer(lost.cert_path, lost.key_path).sign(document)
        ca.revoke(lost.serial)
        return sealed
    raise ValueError(f"bad SM2 licence kind must be one of {sorted(SM2_BAD_KINDS)}, got {kind!r}")
