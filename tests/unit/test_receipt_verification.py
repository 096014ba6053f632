"""The platform receipt's JWS check (回执验签) as the delivery worker runs it for every event: each JWS is decoded once
and a certificate chain that passed is not re-validated for every receipt, yet a forged, tampered, untrusted or
expired receipt is refused every time, also right after a genuine one passed."""
from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from sandbox.platform_receipts import ReceiptSigner
from tongban.audit import jws, receipts
from tongban.audit.receipts import ReceiptSignatureInvalid, ReceiptVerifier
from tongban.bus.envelope import content_digest
from tongban.seal.ca import init_sandbox_ca, issue_certificate

EVENT = {"case_number": "500101-20261203-000001", "event": "applied", "sequence": 1, "data": {"applicant": "张*"}}
KEY = "cq-samr:L000001#1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    init_sandbox_ca(directory)
    return directory


@pytest.fixture
def verifier(certs):
    return ReceiptVerifier.from_config(certs / "trust.yaml", sandbox=False)


def _receipt(signer: ReceiptSigner, which: str = "platform", **changes) -> dict:
    fields = {"receipt_id": "R1", "idempotency_key": KEY, "digest": content_digest(EVENT),
              "received_at": "2026-12-03T09:00:00+00:00", "duplicate": False}
    fields["jws"] = signer.sign(fields, which)
    fields.update(changes)
    return fields


def _part(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_genuine_receipt_verifies_again_and_again(certs, verifier):
    signer = ReceiptSigner(certs)
    for _ in range(3):
        assert verifier.check(_receipt(signer), EVENT, KEY)["receipt_id"] == "R1"


@pytest.mark.parametrize("which, says", [("wrong", "signature does not verify"),
                                         ("untrusted", "not the platform's receipt certificate")])
def test_a_forged_receipt_is_refused_after_a_genuine_one_passed(certs, verifier, which, says):
    signer = ReceiptSigner(certs)
    verifier.check(_receipt(signer), EVENT, KEY)  # the platform's chain is now known good
    with pytest.raises(ReceiptSignatureInvalid, match=says):
        verifier.check(_receipt(signer, which), EVENT, KEY)


def test_a_receipt_edited_after_signing_is_refused(certs, verifier):
    signer = ReceiptSigner(certs)
    verifier.check(_receipt(signer), EVENT, KEY)
    with pytest.raises(ReceiptSignatureInvalid, match="'receipt_id' differs"):
        verifier.check(_receipt(signer, receipt_id="R2"), EVENT, KEY)
    with pytest.raises(ReceiptSignatureInvalid, match="another event"):
        verifier.check(_receipt(signer), {**EVENT, "sequence": 2}, KEY)


def test_a_kept_pass_ends_when_the_certificate_expires(tmp_path, monkeypatch):
    init_sandbox_ca(tmp_path)
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    # The platform's receipt certificate, reissued to expire within the hour.
    issue_certificate(tmp_path, "platform-receipt", "渝快办 回执 (SANDBOX ONLY)", "渝快办", not_after=expires)
    verifier = ReceiptVerifier.from_config(tmp_path / "trust.yaml", sandbox=False)
    signer = ReceiptSigner(tmp_path)
    receipt = _receipt(signer)
    verifier.check(receipt, EVENT, KEY)
    monkeypatch.setattr(receipts, "_clock", lambda: expires + dt.timedelta(minutes=1))
    with pytest.raises(ReceiptSignatureInvalid, match="expired"):
        verifier.check(receipt, EVENT, KEY)


def test_a_kept_pass_is_checked_again_after_a_while(certs, verifier, monkeypatch):
    signer = ReceiptSigner(certs)
    verifier.check(_receipt(signer), EVENT, KEY)
    checks = []
    validate = verifier.trust.validate
    monkeypatch.setattr(type(verifier.trust), "validate",
                        lambda self, *a, **k: checks.append(1) or validate(*a, **k))
    verifier.check(_receipt(signer), EVENT, KEY)
    assert checks == []  # kept
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=receipts.PASS_KEPT_SECONDS + 1)
    monkeypatch.setattr(receipts, "_clock", lambda: later)
    verifier.check(_receipt(signer), EVENT, KEY)
    assert checks == [1]


def _tampered(token: str, how: str) -> str:
    header, payload, signature = token.split(".")
    if how == "payload":
        return ".".join([header, _part({"receipt_id": "R9"}), signature])
    if how == "padding":
        return ".".join([header, payload + "=", signature])
    if how == "alphabet":
        return ".".join([header, payload[:-2] + "+/", signature])
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    if how == "alg-none":
        return ".".join([_part({**decoded, "alg": "none"}), payload, ""])
    if how == "hs256":
        return ".".join([_part({**decoded, "alg": "HS256"}), payload, signature])
    if how == "crit":
        return ".".join([_part({**decoded, "crit": ["b64"], "b64": False}), payload, signature])
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["payload", "padding", "alphabet", "alg-none", "hs256", "crit"])
def test_a_malformed_or_tampered_jws_is_refused(certs, verifier, how):
    signer = ReceiptSigner(certs)
    good = _receipt(signer)
    verifier.check(good, EVENT, KEY)
    with pytest.raises(jws.JWSInvalid):
        jws.verify(_tampered(good["jws"], how), verifier._accept)  # noqa: SLF001 - the worker's certificate rule
    with pytest.raises(ReceiptSignatureInvalid):
        verifier.check({**good, "jws": _tampered(good["jws"], how)}, EVENT, KEY)
