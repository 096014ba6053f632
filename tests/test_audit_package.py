"""verify_package's container rules, on a package made from a small ledger: a member added, removed or doubled, a
receipt not from the ledger, and the package checked against a CA that did not issue its keys."""
from __future__ import annotations

import json
import zipfile

import pytest

from tongban import ledger
from tongban.audit.evidence import export_package, verify_package


@pytest.fixture
def package(tmp_path, monkeypatch):
    from sandbox.platform_receipts import ReceiptSigner
    from tongban.seal.ca import init_sandbox_ca
    from tongban.settings import load
    from tongban.store import open_store

    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    for name in ("TONGBAN_DB_URL", "TONGBAN_CERTS", "TONGBAN_ENV"):
        monkeypatch.delenv(name, raising=False)
    init_sandbox_ca(tmp_path / "home" / "certs")
    store = open_store(load().db_url)
    token = ReceiptSigner(tmp_path / "home" / "certs").sign({"receipt_id": "R1", "case_number": "C1"})
    ledger.record(store, ledger.LedgerEvent("published", {"event": "application"}, system="s", message_id="m1",
                                            case_number="C1"),
                  ledger.LedgerEvent("receipt", {"receipt_id": "R1", "jws": token}, system="s", message_id="m1",
                                     case_number="C1"),
                  ledger.LedgerEvent("published", {"event": "application"}, system="s", message_id="m2",
                                     case_number="C2"))
    path = export_package(store, "C1", tmp_path / "c1.zip")
    return path, tmp_path


def _copy(source, target, *, drop=(), add=None, double=None):
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename in drop:
                continue
            new.writestr(info, old.read(info), compress_type=info.compress_type)
            if info.filename == double:
                new.writestr(info.filename + "", old.read(info))
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return target


def test_the_package_verifies_with_its_receipt(package):
    path, _ = package
    result = verify_package(path)
    assert result.ok, result.failures
    assert result.summary["events"] == 2 and result.summary["receipts_verified"] == 1


def test_a_member_not_in_the_manifest_or_missing_from_the_package_is_named(package):
    path, tmp = package
    added = verify_package(_copy(path, tmp / "a.zip", add={"notes.txt": b"trust me"}))
    assert ("notes.txt", "manifest") in [(m, c) for m, c, _ in added.failures]
    dropped = verify_package(_copy(path, tmp / "b.zip", drop={"proofs.json"}))
    assert ("proofs.json", "manifest") in [(m, c) for m, c, _ in dropped.failures]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name, which is the point
        doubled = verify_package(_copy(path, tmp / "c.zip", double="events.json"))
    assert ("events.json", "container") in [(m, c) for m, c, _ in doubled.failures]


def test_a_receipt_that_no_ledger_event_holds_is_refused(package):
    path, tmp = package
    from sandbox.platform_receipts import ReceiptSigner

    # A genuine platform receipt of another case, swapped in, is caught by the signed manifest.
    other = ReceiptSigner(tmp / "home" / "certs").sign({"receipt_id": "R2"}).encode()
    with zipfile.ZipFile(path) as archive:
        manifest_ok = verify_package(path).ok
        names = archive.namelist()
    assert manifest_ok and "receipts/001.jws" in names
    swapped = _copy(path, tmp / "d.zip", drop={"receipts/001.jws"}, add={"receipts/001.jws": other})
    result = verify_package(swapped)
    assert [(m, c) for m, c, _ in result.failures] == [("receipts/001.jws", "sha256")]


def test_a_package_checked_against_another_ca_is_refused(package):
    path, tmp = package
    other_ca = (tmp / "home" / "certs" / "untrusted-ca.pem").read_bytes()
    result = verify_package(path, trust_pem=other_ca)
    assert not result.ok
    member, check, detail = result.failures[0]
    assert (member, check) == ("META-INF/ASiCManifest.xml", "signature") and "untrusted_issuer" in detail
    ca = (tmp / "home" / "certs" / "root-ca.pem").read_bytes()
    assert verify_package(path, trust_pem=ca).ok
    assert json.loads(zipfile.ZipFile(path).read("package.json"))["masked"] is True
