"""Sealed licences travel the bus to the mock 渝快办 platform and come back with signed receipts; bad seals are
quarantined with their reason and never delivered (issue 6, exchange half)."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import threading
import uuid
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from sandbox.platform import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, create_app
from sandbox.platform_seal import mount_sealed_documents
from sandbox.runner import Server
from sandbox.sealed_dept import BAD_KINDS, SYSTEM, ensure_certs, make_licences, run_sealed_demo
from sandbox.sealed_sm2 import SM2_BAD_KINDS
from tongban.audit import ledger
from tongban.bus.local import LocalBus
from tongban.bus.select import rabbitmq_answers
from tongban.cli import app as cli_app
from tongban.seal import TrustStore, XadesSigner
from tongban.bus.envelope import KIND_SEALED, Envelope, idempotency_key
from tongban.platform import PlatformClient
from tongban.platform.auth import signed_headers
from tongban.seal.exchange import (PLATFORM_STAGE, SENDER_STAGE, SealedDeliveryWorker, prove_delivery,
                            sealed_work, submit_sealed)
from tongban.settings import Settings
from tongban.store import open_store
from tongban.store import state as st
from tongban.store.tables import parked, quarantine

AMQP = os.environ.get("TONGBAN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ALL_BAD_KINDS = {**BAD_KINDS, **SM2_BAD_KINDS}  # XAdES and 国密 SM2 seals go the same way, with the same reasons


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return ensure_certs(tmp_path_factory.mktemp("home") / "certs")


@pytest.fixture(scope="module")
def licences(certs, tmp_path_factory):
    made = make_licences(certs, 2, bad=True, out_dir=tmp_path_factory.mktemp("licences"), sm2=1)
    return {lic.kind if lic.kind != "valid" else f"valid{i}": lic for i, lic in enumerate(made)}


@pytest.fixture(scope="module")
def trust(certs, licences):  # after `licences`: making the revoked sample rewrote the CRL
    return TrustStore.load(certs / "trust.yaml")


@pytest.fixture(scope="module")
def platform(certs):
    server = Server(create_app(certs_dir=str(certs)), name="platform").start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path):
    return open_store(f"sqlite:///{tmp_path}/t.db")


def _settings(url: str) -> Settings:
    return dataclasses.replace(Settings(), platform_url=url)


def _received(server: Server) -> set[str]:
    return {doc["document_digest"] for doc in httpx.get(f"{server.url}/_sandbox/sealed-documents").json()["received"]}


def _deliver(store, bus, server, trust, work=None):
    client = PlatformClient(_settings(server.url))
    try:
        worker = SealedDeliveryWorker(store=store, bus=bus, platform=client, trust=trust,
                                      **({"work": work} if work else {}))
        worker.run(stop=threading.Event(), idle_exit=0.3)
    finally:
        client.close()
    return worker


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hops(store, ident) -> list[str]:
    return [event["hop"] for event in ledger.trace(store, ident)]


# ------------------------------------------------------------------------------------------ the good path


@pytest.mark.parametrize("which,kind", [("valid0", "xades"), ("sm2-valid", "sm2")])
def test_valid_licence_is_delivered_and_its_signed_receipt_verified(which, kind, store, licences, trust, platform):
    bus = LocalBus(store)
    valid = licences[which]
    result = submit_sealed(valid.path, system=SYSTEM, store=store, bus=bus, trust=trust)
    assert result.ok and result.document_id.startswith("1.2.156.")

    worker = _deliver(store, bus, platform, trust)
    assert (worker.stats.delivered, worker.stats.rejected, worker.stats.parked) == (1, 0, 0)
    assert _digest(valid.path) in _received(platform)

    events = {event["hop"]: event["detail"] for event in ledger.trace(store, result.document_id)}
    assert ["sealed", "seal_verified", "published", "delivered", "receipt"] == _hops(store, result.document_id)
    assert "重庆市市场监督管理局" in events["sealed"]["signer"] and events["sealed"]["signing_time"]
    assert (events["seal_verified"]["result"], events["seal_verified"]["kind"]) == ("valid", kind)
    assert events["delivered"]["seal"]["result"] == "valid" and events["delivered"]["platform_verification"] == "valid"
    receipt = events["receipt"]
    assert receipt["acknowledged_digest"] == _digest(valid.path)
    assert "渝快办 mock platform" in receipt["signer"] and receipt["receipt_check"] == "valid"
    assert ledger.verify(store).ok

    # The auditor's question, answered from the store alone: who sent what, and who received it.
    proof = prove_delivery(store, result.idempotency_key, trust)
    assert proof.ok, proof.message
    assert "重庆市市场监督管理局" in proof.message and "渝快办 mock platform" in proof.message


def test_the_same_document_sent_twice_is_delivered_once(store, licences, trust, platform):
    bus = LocalBus(store)
    valid = licences["valid1"]
    first = submit_sealed(valid.path, system=SYSTEM, store=store, bus=bus, trust=trust)
    second = submit_sealed(valid.path, system=SYSTEM, store=store, bus=bus, trust=trust)
    assert first.idempotency_key == second.idempotency_key
    worker = _deliver(store, bus, platform, trust)
    assert (worker.stats.delivered, worker.stats.duplicates) == (1, 1)
    assert _hops(store, first.document_id).count("delivered") == 1


# ------------------------------------------------------------------------------------------ bad seals


@pytest.mark.parametrize("kind", sorted(ALL_BAD_KINDS))
def test_bad_seal_is_quarantined_by_the_sender_with_its_reason_and_never_delivered(kind, store, licences, trust,
                                                                                   platform):
    bus = LocalBus(store)
    bad = licences[kind]
    result = submit_sealed(bad.path, system=SYSTEM, store=store, bus=bus, trust=trust)
    assert not result.ok and result.reason == ALL_BAD_KINDS[kind], result.message

    assert bus.depth("tongban.sealed.deliver") == 0  # never published
    with store.read() as conn:
        rows = conn.execute(quarantine.select()).mappings().all()
    assert [(r["stage"], r["field"], r["system"]) for r in rows] == [(SENDER_STAGE, ALL_BAD_KINDS[kind], SYSTEM)]
    assert rows[0]["rule"].startswith(ALL_BAD_KINDS[kind])
    assert [e["detail"]["reason"] for e in ledger.trace(store, result.document_id)] == [ALL_BAD_KINDS[kind]]

    worker = _deliver(store, bus, platform, trust)
    assert worker.stats.delivered == 0
    assert _digest(bad.path) not in _received(platform)


def _publish_unchecked(bus, path, work) -> Envelope:
    """What a sender with a stale CRL or a broken check would put on the bus: the platform must still refuse it."""
    document = path.read_bytes()
    digest = hashlib.sha256(document).hexdigest()
    env = Envelope(kind=KIND_SEALED, source=SYSTEM, idempotency_key=idempotency_key(SYSTEM, path.name, digest),
                   payload={"source_key": path.name, "file": path.name, "document_digest": digest,
                            "seal": {"result": "not checked"}, "document_b64": base64.b64encode(document).decode()})
    bus.publish(work, [env])
    return env


@pytest.mark.parametrize("kind", sorted(ALL_BAD_KINDS))
def test_the_platform_refuses_a_bad_seal_itself_and_it_is_quarantined_with_the_platforms_reason(
        kind, store, licences, trust, platform):
    bus = LocalBus(store)
    work = sealed_work("unchecked")
    env = _publish_unchecked(bus, licences[kind].path, work)
    worker = _deliver(store, bus, platform, trust, work)
    assert (worker.stats.delivered, worker.stats.rejected) == (0, 1)
    with store.read() as conn:
        row = conn.execute(quarantine.select()).mappings().one()
        assert st.delivered_receipt(conn, env.idempotency_key) is None
    assert (row["stage"], row["field"]) == (PLATFORM_STAGE, ALL_BAD_KINDS[kind])
    rejected = [e for e in ledger.trace(store, env.message_id) if e["hop"] == "rejected"]
    assert rejected[0]["detail"]["reason"] == ALL_BAD_KINDS[kind] and rejected[0]["detail"]["status"] == 422
    assert _digest(licences[kind].path) not in _received(platform)


def test_a_certificate_revoked_after_submission_is_refused_by_the_platform(store, certs, platform):
    from tongban.seal.ca import SandboxCA

    bus = LocalBus(store)
    ca = SandboxCA.load(certs)
    issued = ca.issue_certificate(f"seal-soon-lost-{uuid.uuid4().hex[:6]}", "将挂失印章 (SANDBOX ONLY)", "重庆市市场监督管理局")
    good = make_licences(certs, 1, out_dir=certs.parent / f"l-{uuid.uuid4().hex[:6]}", first_number=90)[0]
    from lxml import etree

    unsigned = etree.fromstring(good.path.read_bytes())
    unsigned.remove(unsigned[-1])  # drop the department seal, re-seal with the certificate about to be lost
    sealed = XadesSigner(issued.cert_path, issued.key_path).sign(etree.tostring(unsigned))
    result = submit_sealed(sealed, system=SYSTEM, store=store, bus=bus, trust=TrustStore.load(certs / "trust.yaml"))
    assert result.ok
    ca.revoke(issued.serial)  # reported lost while the document waits on the queue

    worker = _deliver(store, bus, platform, TrustStore.load(certs / "trust.yaml"))
    assert (worker.stats.delivered, worker.stats.rejected) == (0, 1)
    assert worker.rejected_reasons == {"revoked": 1}
    assert hashlib.sha256(sealed).hexdigest() not in _received(platform)


# ------------------------------------------------------------------------------------------ receipts


class _ForgingSigner:
    """A platform that alters its receipt after sealing it (the signature no longer matches)."""

    algorithm = "ecdsa-sha256"

    def __init__(self, real):
        self.real = real

    def sign(self, xml_bytes: bytes) -> bytes:
        return self.real.sign(xml_bytes).replace("渝快办 mock platform".encode(), "某某平台".encode(), 1)


@pytest.mark.parametrize("forgery", ["altered", "untrusted_signer"])
def test_a_receipt_that_does_not_verify_is_never_recorded_as_delivered(forgery, store, certs, licences, trust):
    real = XadesSigner(certs / "platform-receipt.pem", certs / "platform-receipt.key.pem")
    signer = (_ForgingSigner(real) if forgery == "altered"
              else XadesSigner(certs / "untrusted-signer.pem", certs / "untrusted-signer.key.pem"))
    forging_app = FastAPI()
    mount_sealed_documents(forging_app, certs, access_key=DEFAULT_ACCESS_KEY, secret=DEFAULT_SECRET,
                           receipt_signer=signer)
    server = Server(forging_app, name="forging-platform").start()
    try:
        bus = LocalBus(store)
        result = submit_sealed(licences["valid0"].path, system=SYSTEM, store=store, bus=bus, trust=trust)
        worker = _deliver(store, bus, server, trust)
    finally:
        server.stop()
    assert (worker.stats.delivered, worker.stats.parked) == (0, 1)
    with store.read() as conn:
        assert st.delivered_receipt(conn, result.idempotency_key) is None
        reason = conn.execute(parked.select()).mappings().one()["reason"]
    expected = "digest_mismatch" if forgery == "altered" else "untrusted_issuer"
    assert reason.startswith(f"receipt not accepted: {expected}")
    assert "delivered" not in _hops(store, result.document_id)


# ------------------------------------------------------------------------------------------ the platform API


def test_the_sealed_document_api_requires_signed_requests_and_names_the_seal_reason(platform, licences):
    url = f"{platform.url}/api/v1/sealed-documents"
    unsigned = httpx.post(url, content=licences["valid0"].path.read_bytes(), headers={"Idempotency-Key": "k1"})
    assert unsigned.status_code == 401
    tampered = licences["tampered"].path.read_bytes()
    headers = signed_headers("POST", url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET, body=tampered,
                             idempotency_key="k-tampered")
    refused = httpx.post(url, content=tampered, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["error"] == "seal" and refused.json()["reason"] == "digest_mismatch"


# ------------------------------------------------------------------------------------------ RabbitMQ


@pytest.mark.skipif(not rabbitmq_answers(AMQP), reason="RabbitMQ is not running at " + AMQP)
def test_sealed_licences_through_rabbitmq(store, licences, trust, platform):
    from tongban.bus.rabbit import RabbitBus

    work = sealed_work(f"test-{uuid.uuid4().hex[:8]}")
    bus = RabbitBus(AMQP)
    try:
        bus.declare(work)
        bus.purge(work)
        ok = submit_sealed(licences["valid1"].path, system=SYSTEM, store=store, bus=bus, trust=trust, work=work)
        bad = submit_sealed(licences["revoked"].path, system=SYSTEM, store=store, bus=bus, trust=trust, work=work)
        assert ok.ok and bad.reason == "revoked"
        worker = _deliver(store, bus, platform, trust, work)
        assert (worker.stats.delivered, worker.stats.rejected) == (1, 0)
        assert _hops(store, ok.document_id)[-2:] == ["delivered", "receipt"]
    finally:
        bus.delete(work)
        bus.close()


# ------------------------------------------------------------------------------------------ demo and CLI


def test_demo_department_exchanges_sealed_licences(tmp_path, store):
    home = tmp_path / "home"
    server = Server(create_app(certs_dir=str(home / "certs")), name="platform").start()
    try:
        counts = run_sealed_demo(store, LocalBus(store), Settings(), home, server.url, say=lambda _: None, n=2)
    finally:
        server.stop()
    assert counts["submitted"] == 2 + len(BAD_KINDS) + 1 + len(SM2_BAD_KINDS)
    assert counts["delivered"] == counts["receipts_verified"] == 3  # two XAdES, one SM2
    expected = Counter(BAD_KINDS.values()) + Counter(SM2_BAD_KINDS.values())
    assert counts["quarantined"] == dict(expected)


def test_cli_seal_send_queues_good_documents_and_quarantines_bad_ones(tmp_path, monkeypatch, certs, licences):
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    result = CliRunner().invoke(cli_app, ["seal", "send", str(licences["valid0"].path), str(licences["wrapped"].path),
                                          "--system", "cli-test", "--trust-config", str(certs / "trust.yaml")])
    assert result.exit_code == 1, result.output
    assert "queued" in result.output and "quarantined" in result.output and "wrapped" in result.output
    store = open_store(f"sqlite:///{tmp_path / 'home' / 'tongban.db'}")
    assert LocalBus(store).depth("tongban.sealed.deliver") == 1
