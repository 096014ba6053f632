"""Evidence packages after a sandbox run, as an auditor uses them: a delivered case exported, checked on the package
alone, every member's one changed byte caught and named; sealed documents only when unmasked (which the ledger
records); and the ledger's last event removed after the demo's checkpoint makes `tongban audit verify` fail."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest

from tongban.audit.evidence import verify_package
from tests.support import TONGBAN, run_tongban, tamper_ledger


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evidence")
    env = {**os.environ, "TONGBAN_HOME": str(tmp / "home"), "TONGBAN_BUS": "inprocess", "COLUMNS": "200"}
    for name in ("TONGBAN_PLATFORM_URL", "CQ_SAMR_URL", "TONGBAN_DB_URL", "TONGBAN_CERTS", "TONGBAN_ENV"):
        env.pop(name, None)
    out = run_tongban(["sandbox", "demo", "--cases", "40", "--polls", "1"], env).stdout
    assert "checkpoint #1: tree head over" in out
    number = re.search(r"trace of one delivered case\s*\((\S+)\)", out).group(1)
    return env, tmp, number


def _rewrite(source: Path, target: Path, member: str) -> None:
    """The same container with one byte of `member` changed (names, order and compression kept)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == member:
                data = data[:-1] + bytes([data[-1] ^ 0x01])
            new.writestr(info, data, compress_type=info.compress_type)


def test_a_delivered_case_exports_and_verifies_on_the_package_alone(demo):
    env, tmp, number = demo
    package = tmp / "case.zip"
    exported = json.loads(run_tongban(["audit", "export", number, "-o", str(package), "--json"], env).stdout)
    assert exported["events"] > 0 and exported["receipts_verified"] > 0 and exported["masked"] is True
    with zipfile.ZipFile(package) as archive:
        first = archive.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert archive.read("mimetype") == b"application/vnd.etsi.asic-e+zip"
        names = archive.namelist()
        assert "META-INF/ASiCManifest.xml" in names and "checkpoint.jws" in names
        assert any(n.startswith("receipts/") for n in names)
        blob = b"".join(archive.read(n) for n in names)
    assert not re.search(rb"\b\d{17}[\dX]\b", blob)  # no 证件号码 in clear in a masked package
    # Offline: no store, no environment — a bare environment, another working directory, the CA given explicitly.
    ca = Path(env["TONGBAN_HOME"]) / "certs" / "root-ca.pem"
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp)}
    result = subprocess.run([TONGBAN, "audit", "verify-package", str(package), "--trust", str(ca), "--json"],
                            cwd=tmp, env=bare, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    checked = json.loads(result.stdout)
    assert checked["ok"] and checked["summary"]["events"] == exported["events"]
    assert not (tmp / ".tongban").exists()


def test_one_changed_byte_in_any_member_is_named(demo):
    env, tmp, number = demo
    package = tmp / "case-tamper.zip"
    run_tongban(["audit", "export", number, "-o", str(package)], env)
    assert verify_package(package).ok
    with zipfile.ZipFile(package) as archive:
        members = archive.namelist()
    for member in members:
        bent = tmp / "bent.zip"
        _rewrite(package, bent, member)
        result = verify_package(bent)
        assert not result.ok, member
        assert result.failures[0][0] == member, (member, result.failures)
    _rewrite(package, tmp / "bent.zip", "events.json")
    cli = run_tongban(["audit", "verify-package", str(tmp / "bent.zip")], env, check=False)
    assert cli.returncode == 1
    assert "member events.json: check sha256" in cli.stderr


def test_sealed_documents_are_included_only_unmasked_and_that_export_is_recorded(demo):
    env, tmp, _ = demo
    db = sqlite3.connect(Path(env["TONGBAN_HOME"]) / "tongban.db")
    key = db.execute("SELECT idempotency_key FROM ledger_events WHERE hop = 'delivered' AND detail LIKE "
                     "'%\"kind\": \"sealed_document\"%' ORDER BY seq LIMIT 1").fetchone()[0]
    db.close()
    masked, unmasked = tmp / "sealed-masked.zip", tmp / "sealed-unmasked.zip"
    run_tongban(["audit", "export", key, "-o", str(masked)], env)
    run_tongban(["audit", "export", key, "-o", str(unmasked), "--unmasked", "--actor", "auditor-7"], env)
    with zipfile.ZipFile(masked) as archive:
        assert not [n for n in archive.namelist() if n.endswith(".document.xml")]
        assert [n for n in archive.namelist() if n.endswith(".receipt.xml")]
        assert json.loads(archive.read("seals.json"))[0]["seal"] == "valid"
    with zipfile.ZipFile(unmasked) as archive:
        assert [n for n in archive.namelist() if n.endswith(".document.xml")]
        events = json.loads(archive.read("events.json"))
    exported = [e for e in events if e["hop"] == "evidence_exported"]
    assert exported and json.loads(exported[-1]["detail"])["actor"] == "auditor-7"
    result = verify_package(unmasked)
    assert result.ok, result.failures
    assert result.summary["sealed_members"] >= 2


def test_an_sm2_sealed_licence_exports_and_verifies_on_the_package_alone(demo):
    """国密 seals travel in evidence packages as XAdES ones do: the SM2 container, its verdict, and the SM2 CA."""
    env, tmp, _ = demo
    db = sqlite3.connect(Path(env["TONGBAN_HOME"]) / "tongban.db")
    key = db.execute("SELECT v.idempotency_key FROM ledger_events v JOIN ledger_events d ON "
                     "d.idempotency_key = v.idempotency_key AND d.hop = 'delivered' WHERE v.hop = 'seal_verified' "
                     "AND v.detail LIKE '%\"kind\": \"sm2\"%' ORDER BY v.seq LIMIT 1").fetchone()[0]
    db.close()
    package = tmp / "sm2-sealed.zip"
    run_tongban(["audit", "export", key, "-o", str(package), "--unmasked", "--actor", "auditor-7"], env)
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        (document,) = [n for n in names if n.startswith("sealed/") and ".document." in n]
        assert document.endswith(".document.sm2") and archive.read(document)[:1] == b"0"
        assert [n for n in names if n.startswith("certs/sm2-ca-")]
        assert json.loads(archive.read("seals.json"))[0]["seal"] == "valid"
    result = verify_package(package)
    assert result.ok, result.failures
    assert result.summary["sealed_members"] >= 2 and result.summary["sm2_trust"]
    tampered = tmp / "sm2-sealed-tampered.zip"
    _rewrite(package, tampered, document)
    failed = verify_package(tampered)
    assert not failed.ok and document in {member for member, _, _ in failed.failures}


def test_removing_the_last_event_after_the_checkpoint_fails_audit_verify(demo):
    env, _, _ = demo
    assert run_tongban(["audit", "verify"], env).returncode == 0
    seq = tamper_ledger(env["TONGBAN_HOME"], "SELECT MAX(seq) FROM ledger_events",
                        "DELETE FROM ledger_events WHERE seq = ?")
    broken = run_tongban(["audit", "verify"], env, check=False)
    assert broken.returncode == 1
    assert f"event #{seq}" in broken.stderr and "were removed after the checkpoint" in broken.stderr

