"""No identity number or mobile number in clear anywhere people read: a whole sandbox demo run's printed
output and logs, and the ledger's views, are searched for anything shaped like one (DESIGN.md promise 6)."""
from __future__ import annotations

import json
import logging
import re

import pytest
from sqlalchemy import select

# The shapes tongban.codes.mask_text masks: 17 digits + digit/X (also 15-digit old numbers), and mainland
# mobile numbers written plain or with separators — none of them inside a longer run of letters or digits.
ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
MOBILE = re.compile(r"(?<!\d)1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
SERIAL = re.compile(r"\(serial [0-9a-f]+\)")


def _leaks(text: str) -> list[str]:
    return ID_NUMBER.findall(text) + MOBILE.findall(text)


# Hex digests, signatures, receipt ids and message ids (random hex) can contain mobile-shaped digit runs by chance:
# not personal data, wherever they sit in a ledger event's detail (a routed_chunk event lists each record's ids).
# Any key ending in "digest" is one (document_digest, receipt_digest, acknowledged_digest of a sealed licence).
OPAQUE = {"signature", "receipt_id", "ref", "hash", "message_id", "run_id", "event_id"}


def _opaque(key: str) -> bool:
    return key in OPAQUE or key.endswith("digest")


# A sealed document with no licence id of its own is keyed by its digest, "sha256:" + 64 hex digits (tongban.seal.
# exchange): random hex, opaque too.
DIGEST_KEY = re.compile(r"sha256:[0-9a-f]{64}")


def _readable(detail):
    if isinstance(detail, dict):
        return {k: _readable(v) for k, v in detail.items() if not _opaque(k)}
    if isinstance(detail, list):
        return [_readable(v) for v in detail]
    return detail


def test_the_patterns_find_what_they_are_meant_to_find():
    assert _leaks("applicant 50010319850601035X called 138-0013-8000") == ["50010319850601035X", "138-0013-8000"]
    assert _leaks("applicant 5001**********035X called 138****8000, case 11500000MB1B75012N2500129001000") == []


@pytest.mark.slow  # a whole demo run: about a minute
def test_a_full_sandbox_demo_run_prints_logs_and_records_no_personal_number(tmp_path, monkeypatch, capsys, caplog):
    from sandbox.demo import run_demo
    from tongban.settings import load
    from tongban.store import open_store
    from tongban.store.tables import ledger, quarantine

    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    caplog.set_level(logging.DEBUG)
    result = run_demo(cases=200, polls=2, quiet=False)
    printed = capsys.readouterr()
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)

    assert result.delivered > 0 and result.quarantined > 0  # the run did real work, bad records included
    assert "trace of one delivered case" in printed.out
    assert _leaks(printed.out) == [] and _leaks(printed.err) == [] and _leaks(logged) == []

    store = open_store(load().db_url)
    with store.read() as conn:
        details = conn.execute(select(ledger.c.hop, ledger.c.detail, ledger.c.source_key)).all()
        rules = conn.execute(select(quarantine.c.rule)).scalars().all()
    assert {"quarantined", "delivered"} <= {hop for hop, _, _ in details}
    readable = [_readable(json.loads(d)) for _, d, _ in details]
    assert [d for d in readable if _leaks(json.dumps(d, ensure_ascii=False))] == []
    assert [k for _, _, k in details if k and not DIGEST_KEY.fullmatch(k) and _leaks(k)] == []
    # A certificate's serial (random hex, in a revoked seal's rule) can hold a mobile-shaped run too.
    rules = [SERIAL.sub("(serial …)", r) for r in rules]
    assert rules and [r for r in rules if _leaks(r)] == []


def test_operator_views_of_quarantine_are_masked(tmp_path, monkeypatch, capsys):
    """`tongban quarantine show` on a record quarantined for its ID number prints it masked."""
    from datetime import date

    from tongban.operator import quarantine as q
    from tongban.codes import make_id_number
    from tongban.operator.actions import show_quarantine
    from tongban.store import Store

    number = make_id_number("500103", date(1980, 1, 2), 7, "F")
    store = Store(f"sqlite:///{tmp_path}/t.db")
    with store.write() as conn:
        entry = q.add(conn, q.QuarantineEntry("sys", "K1", "identity", "unknown applicant", "applicant_id_number",
                                              "p1", {"zjhm": number, "lxdh": "13800138000"}))
    assert show_quarantine(store, entry)
    out = capsys.readouterr().out
    assert "zjhm" in out and _leaks(out) == []
