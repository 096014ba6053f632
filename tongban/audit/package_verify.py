"""`verify_package`: check an evidence package offline — no store, no settings, no environment, no network.

Checks, each failure naming the member and the check:
- container: `mimetype` first, stored, exactly application/vnd.etsi.asic-e+zip; every member readable (zip CRC),
  named once, and of a sane size;
- `META-INF/ASiCManifest.xml`: its XAdES signature verifies and its certificate chains to the trust anchor
  (`trust_pem`, else the CA certificates the package carries — said so in the summary); every other member is
  listed with the SHA-256 it has, and nothing is listed that is missing;
- `checkpoint.jws`: a tongban tree head signed by a certificate of the same trust anchor;
- `events.json` / `proofs.json`: each event's hash recomputes from its fields (unless masked) and its RFC 6962
  inclusion proof leads to the checkpoint's root;
- `receipts/*.jws`: each platform receipt verifies (ES256, certificate chains to the anchor) and is the one a
  receipt event of the ledger holds; `sealed/*`: sealed receipts and documents re-verify (XAdES).
"""
from __future__ import annotations

import dataclasses

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tongban.audit import asic, jws
from tongban.audit.checkpoints import accept_in, event_leaf, verify_head
from tongban.audit.merkle import verify_inclusion


MAX_MEMBER_BYTES = 64 * 1024 * 1024  # a hostile package must not unpack into all of memory


@dataclass
class PackageResult:
    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (member, check, detail)


def _event_hash(event: dict[str, Any]) -> str:
    from tongban.audit.ledger import _HASHED_FIELDS
    from tongban.bus.envelope import canonical_json

    body = canonical_json({name: event[name] for name in _HASHED_FIELDS})
    return hashlib.sha256(event["prev_hash"].encode("ascii") + body).hexdigest()


def _read(path) -> tuple[dict[str, bytes], list[tuple[str, str, str]], list[str]]:
    failures: list[tuple[str, str, str]] = []
    members: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        order = [i.filename for i in infos]
        if not infos or infos[0].filename != "mimetype":
            failures.append(("mimetype", "container", "the first member of an ASiC-E container must be `mimetype`"))
        elif infos[0].compress_type != zipfile.ZIP_STORED:
            failures.append(("mimetype", "container", "`mimetype` must be stored, not compressed"))
        seen: set[str] = set()
        for info in infos:
            if info.filename in seen:
                failures.append((info.filename, "container", "the member appears twice in the container"))
                continue
            seen.add(info.filename)
            if info.file_size > MAX_MEMBER_BYTES:
                failures.append((info.filename, "size", f"{info.file_size} bytes unpacked, more than a package "
                                                        f"member may hold ({MAX_MEMBER_BYTES})"))
                continue
            try:
                members[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, OSError) as exc:
                failures.append((info.filename, "zip_crc", f"the member cannot be read intact: {exc}"))
    return members, failures, order


def _sm2_trust(pems: list[bytes]):
    """An SM2 trust store of PEM bytes (SM2TrustStore reads files: they go through a private temp folder)."""
    import tempfile

    from tongban.seal.sm2.trust import SM2TrustStore

    with tempfile.TemporaryDirectory(prefix="tongban-sm2-") as folder:
        paths = []
        for n, pem in enumerate(pems, 1):
            path = Path(folder) / f"sm2-ca-{n}.pem"
            path.write_bytes(pem)
            paths.append(path)
        return SM2TrustStore._build(paths, [])


def verify_package(path, *, trust_pem: bytes | None = None) -> PackageResult:
    from tongban.seal import TrustStore, verify_sealed
    from tongban.seal.receipt import verify_receipt

    try:
        members, failures, order = _read(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return PackageResult(False, {}, [(str(Path(path).name), "container", f"not a readable zip file: {exc}")])
    fail = failures.append
    if members.get("mimetype") not in (None, asic.MIMETYPE.encode("ascii")):
        fail(("mimetype", "mimetype", f"holds {members['mimetype'][:60]!r}, not {asic.MIMETYPE}"))
    own_cas = [members[n] for n in sorted(members) if n.startswith("certs/ca-") and n.endswith(".pem")]
    try:
        trust = TrustStore.from_files([trust_pem] if trust_pem else own_cas)
    except ValueError as exc:
        return PackageResult(False, {}, failures + [("certs/", "trust", f"no usable trust anchor: {exc}")])
    summary: dict[str, Any] = {"trust": "given (--trust)" if trust_pem else "the package's own CA certificates "
                                        "(pass --trust CA.pem to anchor the check in a CA you trust)"}
    sm2_cas = [members[n] for n in sorted(members) if n.startswith("certs/sm2-ca-") and n.endswith(".pem")]
    if sm2_cas:  # SM2-sealed documents chain to the package's SM2 CA certificates (they name the seal's issuer)
        try:
            trust = dataclasses.replace(trust, sm2=_sm2_trust(sm2_cas))
        except ValueError as exc:
            fail(("certs/", "sm2_trust", f"the package's SM2 CA certificates cannot be read: {exc}"))
        summary["sm2_trust"] = "the package's own SM2 CA certificates"

    manifest = members.get(asic.MANIFEST)
    if manifest is None:
        return PackageResult(False, summary, failures + [(asic.MANIFEST, "manifest", "the package has no manifest")])
    sealed = verify_sealed(manifest, trust)
    if not sealed.ok:
        return PackageResult(False, summary, failures + [(asic.MANIFEST, "signature",
                                                          f"{sealed.reason}: {sealed.message}")])
    summary["signed_by"] = sealed.signer_subject
    try:
        listed = asic.read_manifest(sealed.element)
    except ValueError as exc:
        return PackageResult(False, summary, failures + [(asic.MANIFEST, "manifest", str(exc))])
    for name in order:
        if name in ("mimetype", asic.MANIFEST) or name not in members:
            continue
        if name not in listed:
            fail((name, "manifest", "the member is not listed in the signed manifest"))
        elif hashlib.sha256(members[name]).hexdigest() != listed[name]:
            fail((name, "sha256", "the member's SHA-256 differs from the one the signed manifest lists"))
    for name in sorted(set(listed) - set(members)):
        fail((name, "manifest", "listed in the signed manifest but missing from the package"))
    if failures:
        return PackageResult(False, summary, failures)

    def load(name: str):
        try:
            return json.loads(members[name])
        except (KeyError, ValueError) as exc:
            fail((name, "json", f"missing or not JSON: {exc}"))
            return None

    info, events, proofs = load("package.json"), load("events.json"), load("proofs.json")
    try:
        head = verify_head(members["checkpoint.jws"].decode("ascii"), trust)
    except (KeyError, UnicodeDecodeError, jws.JWSInvalid) as exc:
        fail(("checkpoint.jws", "signature", f"the tree head does not verify: {exc}"))
        head = None
    if info is None or events is None or proofs is None or head is None:
        return PackageResult(False, summary, failures)
    by_id = {p["event_id"]: p for p in proofs.get("proofs", [])}
    root = bytes.fromhex(head["root"])
    receipt_tokens = set()
    for event in events:
        proof = by_id.get(event["event_id"])
        if not event.get("masked") and _event_hash(event) != event["hash"]:
            fail(("events.json", "event_hash", f"event #{event['seq']} ({event['event_id']}): its hash does not "
                                               f"recompute from its fields"))
        if proof is None or proof["hash"] != event["hash"] or not verify_inclusion(
                event_leaf(event["hash"]), proof["index"], head["size"], [bytes.fromhex(p) for p in proof["path"]],
                root):
            fail(("proofs.json", "inclusion", f"event #{event['seq']} ({event['event_id']}) is not proven included "
                                              f"in the checkpoint's tree head (size {head['size']})"))
        if event["hop"] == "receipt":
            detail = event["detail"]
            try:
                token = json.loads(detail).get("jws") if isinstance(detail, str) else None
            except ValueError:
                token = None
            if token:
                receipt_tokens.add(token)
    receipts = 0
    for name in sorted(n for n in members if n.startswith("receipts/")):
        token = members[name].decode("ascii", "replace")
        try:
            jws.verify(token, accept_in(trust))
        except jws.JWSInvalid as exc:
            fail((name, "receipt_signature", str(exc)))
            continue
        if token not in receipt_tokens:
            fail((name, "receipt_in_ledger", "no receipt event of the package's ledger events holds this receipt"))
        receipts += 1
    seals = 0
    for name in sorted(n for n in members if n.startswith("sealed/")):
        if name.endswith(".receipt.xml"):
            checked = verify_receipt(members[name], trust)
            if not checked.ok:
                fail((name, "sealed_receipt", f"{checked.reason}: {checked.message}"))
        elif name.endswith((".document.xml", ".document.sm2")):
            result = verify_sealed(members[name], trust)
            if not result.ok:
                fail((name, "seal", f"{result.reason}: {result.message}"))
        seals += 1
    summary.update({"identifier": info.get("identifier"), "events": len(events), "receipts_verified": receipts,
                    "sealed_members": seals, "masked": info.get("masked"), "checkpoint_size": head["size"],
                    "checkpoint_root": head["root"], "checkpoint_time": head["time"],
                    "sandbox_key": info.get("sandbox_key")})
    return PackageResult(not failures, summary, failures)
