"""A sandbox department that exchanges sealed licences: 重庆市市场监督管理局 issuing 营业执照.

`make_licences` writes sealed 电子证照 files the way the department's licensing system would export them, and,
for tests and the demo, the five ways a seal goes wrong in practice: a document edited after sealing, a signature
wrapped around forged data, a seal from a CA nobody trusts, a seal certificate that expired, and one that was
revoked. Some licences carry 国密 SM2 seals (GB/T 38540) instead, valid and each bad kind (`sealed_sm2`).
`run_sealed_demo` sends them all through tongban to the mock platform.

Certificates come from the sandbox CA (`tongban certs init`) under `$TONGBAN_HOME/certs` (git-ignored); they are
SANDBOX ONLY and are created on first use, never committed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from tongban.codes import make_credit_code
from tongban.seal import TrustStore, XadesSigner, build_licence
from tongban.seal.ca import SandboxCA, add_sm2_sandbox_ca, init_sandbox_ca
from tongban.seal.licence import LICENCE_NS

from . import sealed_sm2
from .sealed_sm2 import SM2_BAD_KINDS

DEPARTMENT_SLUG = "scjgj"
DEPARTMENT_NAME = "重庆市市场监督管理局"
SYSTEM = "cq-samr-licences"  # the department's licensing system, as tongban names it
ISSUER_CODE = make_credit_code("1", "1", "500000", "00000001")
REGION = "500103"  # 渝中区

# What each bad kind is expected to be rejected as (the verifier's reason codes).
BAD_KINDS = {
    "tampered": "digest_mismatch",
    "wrapped": "wrapped",
    "untrusted": "untrusted_issuer",
    "expired": "expired",
    "revoked": "revoked",
}

_HOLDERS = ["重庆山城火锅有限公司", "重庆两江数码科技有限公司", "重庆解放碑百货有限公司", "重庆嘉陵江航运有限公司",
            "重庆磁器口文创有限公司", "重庆朝天门物流有限公司", "重庆南山茶业有限公司", "重庆洪崖洞餐饮有限公司"]


@dataclass
class SandboxLicence:
    path: Path
    kind: str                  # "valid" or one of BAD_KINDS
    expected_reason: str       # "valid" or the reason code the verifier must give


def certs_dir_of(sandbox_home: str | Path) -> Path:
    """Where the sandbox keeps its CA: `<TONGBAN_HOME>/certs` (the mock platform must use the same folder)."""
    return Path(sandbox_home) / "certs"


_init_lock = threading.Lock()


def ensure_certs(certs_dir: str | Path) -> Path:
    """Create the sandbox CA (with its SM2 side) in `certs_dir` unless there already (`tongban certs init --sm2`)."""
    certs_dir = Path(certs_dir)
    with _init_lock:
        if not (certs_dir / "root-ca.pem").exists() or not (certs_dir / "trust.yaml").exists():
            init_sandbox_ca(certs_dir, sm2=True)
        elif not (certs_dir / "sm2-root-ca.pem").exists():
            add_sm2_sandbox_ca(certs_dir)
    return certs_dir


def _licence(number: int, *, holder: str | None = None) -> bytes:
    today = dt.date.today()
    holder = holder or _HOLDERS[number % len(_HOLDERS)]
    serial = f"{today:%Y%m%d}{number:05d}"
    return build_licence(
        type_name="营业执照", type_code=ISSUER_CODE + "001", licence_name="营业执照",
        licence_number=f"{REGION}{number:09d}", issuer=DEPARTMENT_NAME, issuer_code=ISSUER_CODE,
        issue_date=today, holder=holder,
        holder_code=make_credit_code("9", "1", REGION, f"MA{number:06d}"), holder_code_type="001",
        valid_from=today, region=REGION, serial=serial, face_data={"注册资本": f"{100 + number}万元"},
    )


def _department_signer(certs_dir: Path) -> XadesSigner:
    return XadesSigner(certs_dir / f"seal-{DEPARTMENT_SLUG}.pem", certs_dir / f"seal-{DEPARTMENT_SLUG}.key.pem")


def _bad(kind: str, certs_dir: Path, number: int, stamp: str) -> bytes:
    now = dt.datetime.now(dt.timezone.utc)
    if kind == "tampered":  # someone edits the registered capital after sealing
        sealed = _department_signer(certs_dir).sign(_licence(number))
        tampered = sealed.replace(f"{100 + number}万元".encode(), "9999万元".encode())
        if tampered == sealed:
            raise RuntimeError("sandbox: the tampered licence sample did not change")
        return tampered
    if kind == "wrapped":  # a genuine seal tucked inside a forged licence
        genuine = etree.fromstring(_department_signer(certs_dir).sign(_licence(number)))
        forged = etree.fromstring(_licence(number, holder="冒名顶替的空壳公司"))
        etree.SubElement(forged, f"{{{LICENCE_NS}}}Attachment").append(genuine)
        return etree.tostring(forged, xml_declaration=True, encoding="UTF-8")
    if kind == "untrusted":
        return XadesSigner(certs_dir / "untrusted-signer.pem", certs_dir / "untrusted-signer.key.pem").sign(
            _licence(number))
    ca = SandboxCA.load(certs_dir)
    if kind == "expired":
        old = ca.issue_certificate(f"seal-{DEPARTMENT_SLUG}-expired-{stamp}", "过期印章 (SANDBOX ONLY)", DEPARTMENT_NAME,
                                   not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=30))
        return XadesSigner(old.cert_path, old.key_path).sign(_licence(number), signing_time=now - dt.timedelta(days=60))
    if kind == "revoked":  # a seal reported lost: revoked after it sealed this licence
        lost = ca.issue_certificate(f"seal-{DEPARTMENT_SLUG}-lost-{stamp}", "已挂失印章 (SANDBOX ONLY)", DEPARTMENT_NAME)
        sealed = XadesSigner(lost.cert_path, lost.key_path).sign(_licence(number))
        ca.revoke(lost.serial)
        return sealed
    raise ValueError(f"bad licence kind must be one of {sorted(BAD_KINDS)}, got {kind!r}")


def make_licences(certs_dir: str | Path, n: int, *, bad: bool = False, out_dir: str | Path | None = None,
                  first_number: int = 1, sm2: int = 0) -> list[SandboxLicence]:
    """Write `n` validly sealed 营业执照 (and, with `bad`, one of each bad kind) as XML files into `out_dir`
    (default `<certs_dir>/../licences`); with `sm2`, also that many SM2-sealed ones (and, with `bad`, one of each
    SM2 bad kind). The sandbox CA is created first if `certs_dir` has none."""
    certs_dir = ensure_certs(certs_dir)
    out_dir = Path(out_dir) if out_dir is not None else certs_dir.parent / "licences"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    signer = _department_signer(certs_dir)
    made: list[SandboxLicence] = []
    for number in range(first_number, first_number + n):
        path = out_dir / f"licence-{number:05d}.xml"
        path.write_bytes(signer.sign(_licence(number)))
        made.append(SandboxLicence(path, "valid", "valid"))
    if bad:
        for offset, (kind, reason) in enumerate(BAD_KINDS.items()):
            number = first_number + n + offset
            path = out_dir / f"licence-{number:05d}-{kind}.xml"
            path.write_bytes(_bad(kind, certs_dir, number, stamp))
            made.append(SandboxLicence(path, kind, reason))
    number = first_number + n + (len(BAD_KINDS) if bad else 0)
    for offset in range(sm2):
        path = out_dir / f"licence-{number + offset:05d}-sm2.der"
        path.write_bytes(sealed_sm2.seal_valid(_licence(number + offset), certs_dir, DEPARTMENT_SLUG))
        made.append(SandboxLicence(path, "sm2-valid", "valid"))
    if bad and sm2:
        for offset, (kind, reason) in enumerate(SM2_BAD_KINDS.items(), start=number + sm2):
            path = out_dir / f"licence-{offset:05d}-{kind}.der"
            tamper = (f"{100 + offset}万元".encode(), "9999万元".encode())
            path.write_bytes(sealed_sm2.seal_bad(kind, _licence(offset), certs_dir, DEPARTMENT_SLUG, stamp,
                                                 tamper=tamper))
            made.append(SandboxLicence(path, kind, reason))
    return made


def run_sealed_demo(store, bus, settings, sandbox_home: str | Path, platform_url: str, say=print, *,
                    n: int = 3, certs_dir: str | Path | None = None, work=None, idle_exit: float = 0.5,
                    sm2: int = 1) -> dict:
    """One department exchanging sealed licences with the mock platform through tongban.

    The platform at `platform_url` must serve the sealed-document API with the same CA
    (`sandbox.platform.create_app(..., certs_dir=certs_dir_of(sandbox_home))`). Creates the CA if missing,
    seals `n` good licences plus one of each bad kind (and `sm2` good SM2-sealed ones plus each bad SM2 kind),
    submits them all, runs the sealed-document worker until
    its queue is idle, and returns the counts."""
    from tongban.seal.exchange import SEALED, SealedDeliveryWorker, submit_sealed
    from tongban.platform import PlatformClient

    certs_dir = ensure_certs(certs_dir if certs_dir is not None else certs_dir_of(sandbox_home))
    work = work or SEALED
    licences = make_licences(certs_dir, n, bad=True, out_dir=Path(sandbox_home) / "licences", sm2=sm2)
    trust = TrustStore.load(certs_dir / "trust.yaml")  # reloaded: making the revoked sample rewrote the CRL
    good = sum(1 for lic in licences if lic.expected_reason == "valid")
    say(f"sealed licences: {DEPARTMENT_NAME} sends {len(licences)} 营业执照 ({good} valid, "
        f"{len(licences) - good} with bad seals; {sum(1 for lic in licences if lic.kind.startswith('sm2'))} "
        "with 国密 SM2 seals, GB/T 38540)")
    submitted = accepted = 0
    quarantined: Counter[str] = Counter()
    for licence in licences:
        result = submit_sealed(licence.path, system=SYSTEM, store=store, bus=bus, trust=trust, work=work)
        submitted += 1
        accepted += result.ok
        if not result.ok:
            quarantined[result.reason] += 1
        verdict = "published" if result.ok else f"quarantined ({result.reason})"
        say(f"  {licence.path.name:<40} {'SM2  ' if licence.kind.startswith('sm2') else 'XAdES'} {verdict}")
    client = PlatformClient(dataclasses.replace(settings, platform_url=platform_url))
    try:
        worker = SealedDeliveryWorker(store=store, bus=bus, platform=client, trust=trust, work=work)
        stats = worker.run(stop=threading.Event(), idle_exit=idle_exit)
    finally:
        client.close()
    counts = {
        "submitted": submitted,
        "published": accepted,
        "delivered": stats.delivered,
        "receipts_verified": stats.delivered,  # a delivery is recorded only after its receipt verified
        "rejected_by_platform": stats.rejected,
        "parked": stats.parked,
        "quarantined": dict(quarantined + worker.rejected_reasons),
    }
    say(f"sealed licences: {counts['delivered']} delivered with verified receipts, "
        f"quarantined {sum(counts['quarantined'].values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(counts['quarantined'].items())) or 'none'})")
    return counts
