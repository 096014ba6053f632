"""Platform-signed case receipts, through the real RabbitMQ and the sandbox platform: a receipt the platform signed
is delivered and kept verbatim in the ledger; one signed with another key is parked with reason receipt_signature."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from tongban import ledger
from tongban.delivery.worker import DeliveryWorker
from tongban.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.platform_client import PlatformClient
from tongban.settings import load

SAMR = Path(__file__).resolve().parents[1] / "mappings" / "cq-samr-rest.yaml"


@pytest.fixture
def signed_sandbox(tmp_path, monkeypatch):
    """The mock platform signing receipts with the sandbox CA's receipt key, and a small legacy REST world."""
    from sandbox.legacy_rest import create_app as legacy_app
    from sandbox.legacy_world import LegacyWorld
    from sandbox.platform import create_app as platform_app
    from sandbox.runner import Server
    from tongban.seal.ca import init_sandbox_ca

    home = tmp_path / "home"
    certs = home / "certs"
    init_sandbox_ca(certs)
    platform = Server(platform_app(str(tmp_path / "platform.db"), certs_dir=str(certs)), name="platform").start()
    legacy = Server(legacy_app(LegacyWorld(seed=3, cases=12, bad_share=0.0), token="t"), name="legacy").start()
    for name, value in {"TONGBAN_HOME": str(home), "TONGBAN_PLATFORM_URL": platform.url,
                        "CQ_SAMR_URL": legacy.url, "CQ_SAMR_TOKEN": "t"}.items():
        monkeypatch.setenv(name, value)
    yield platform
    platform.stop()
    legacy.stop()


def _run(store, bus, work):
    settings = load()
    platform = PlatformClient(settings)
    run_ingest(load_mapping(SAMR), store=store, bus=bus, platform=platform, work=work)
    stats = DeliveryWorker(store=store, bus=bus, platform=platform, work=work).run(stop=threading.Event(),
                                                                                  idle_exit=0.8)
    platform.close()
    return stats


def test_signed_receipts_are_verified_and_kept_verbatim(pg_store, rabbit_bus, rabbit_work, signed_sandbox):
    from tongban.audit.receipts import ReceiptVerifier

    stats = _run(pg_store, rabbit_bus, rabbit_work)
    assert stats.delivered > 0 and stats.parked == 0
    receipts = ledger.iter_events(pg_store, ["receipt"])
    assert len(receipts) == stats.delivered
    verifier = ReceiptVerifier.from_settings(load())
    for event in receipts:
        token = json.loads(event["detail"])["jws"]
        assert token.count(".") == 2
        # The ledger keeps the platform's JWS itself: it verifies again, later, against the platform certificate.
        claims = verifier._accept  # noqa: SLF001 - the same certificate rule as at delivery
        from tongban.audit import jws

        payload = jws.verify(token, claims).payload
        assert payload["idempotency_key"] == event["idempotency_key"]


@pytest.mark.parametrize("key", ["wrong", "untrusted"])
def test_a_receipt_signed_with_another_key_is_parked(sqlite_store, rabbit_bus, rabbit_work, signed_sandbox, key):
    from tongban import quarantine as q

    httpx.post(f"{signed_sandbox.url}/_sandbox/faults", json={"receipt_key": key}).raise_for_status()
    stats = _run(sqlite_store, rabbit_bus, rabbit_work)
    assert stats.delivered == 0 and stats.parked > 0
    assert not ledger.iter_events(sqlite_store, ["delivered", "receipt"])
    parked = [e for e in ledger.iter_events(sqlite_store, ["parked"])]
    reasons = [json.loads(e["detail"])["reason"] for e in parked]
    refused = [r for r in reasons if r.startswith("receipt_signature: ")]
    # The first event of each case is refused for its receipt; the case's later events wait behind it (order holds).
    assert refused and all(r in refused or "is parked" in r for r in reasons)
    assert len(refused) == len({e["case_number"] for e in parked})
    assert q.counts(sqlite_store)["parked"] == len(parked)
    expected = "does not verify" if key == "wrong" else "not the platform's receipt certificate"
    assert all(expected in r for r in refused), refused[:3]


def test_outside_the_sandbox_an_unsigned_receipt_or_a_missing_signer_is_refused(tmp_path):
    from tongban.audit.receipts import ReceiptSignatureInvalid, ReceiptVerifier
    from tongban.seal.ca import init_sandbox_ca

    pki = init_sandbox_ca(tmp_path / "certs")
    unsigned = {"receipt_id": "R1", "idempotency_key": "k", "digest": "d"}
    production = ReceiptVerifier.from_config(pki["trust_config"], sandbox=False)
    with pytest.raises(ReceiptSignatureInvalid, match="no platform signature"):
        production.check(unsigned, {}, "k")
    assert ReceiptVerifier.from_config(pki["trust_config"], sandbox=True).check(unsigned, {}, "k") == {}
    (tmp_path / "empty.yaml").write_text("parties: {}\n", encoding="utf-8")
    with pytest.raises(ReceiptSignatureInvalid, match="no platform receipt certificate is configured"):
        ReceiptVerifier.from_config(tmp_path / "empty.yaml", sandbox=False).check(unsigned, {}, "k")
