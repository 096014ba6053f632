"""The ledger's hash chain on both back ends: intact chains verify, any edit is found and named."""
from __future__ import annotations

import threading

from sqlalchemy import delete, select, update

from tongban.audit import ledger
from tongban.audit.ledger import LedgerEvent
from tongban.store.tables import ledger as ledger_table


def _fill(store, n=20):
    for i in range(n):
        ledger.record(store, LedgerEvent("published", {"sequence": i}, system="s", message_id=f"m{i}",
                                         idempotency_key=f"s:k{i}:d", case_number=f"C{i % 3}", source_key=f"k{i % 3}"))


def test_intact_chain_verifies(store):
    _fill(store)
    result = ledger.verify(store)
    assert result.ok and result.events == 20


def test_edited_row_is_named(store):
    _fill(store)
    with store.write() as conn:
        seq = conn.execute(select(ledger_table.c.seq).order_by(ledger_table.c.seq).limit(1).offset(7)).scalar()
        conn.execute(update(ledger_table).where(ledger_table.c.seq == seq).values(detail='{"sequence": 999}'))
    result = ledger.verify(store)
    assert not result.ok
    assert result.broken_seq == seq
    assert "altered" in result.reason


def test_removed_row_breaks_the_link_after_it(store):
    _fill(store)
    with store.write() as conn:
        seqs = [r for (r,) in conn.execute(select(ledger_table.c.seq).order_by(ledger_table.c.seq))]
        conn.execute(delete(ledger_table).where(ledger_table.c.seq == seqs[5]))
    result = ledger.verify(store)
    assert not result.ok and result.broken_seq == seqs[6]
    assert "link broken" in result.reason


def test_concurrent_appends_keep_one_chain(store):
    def writer(n):
        for i in range(15):
            ledger.record(store, LedgerEvent("retried", {"w": n, "i": i}, system="s"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = ledger.verify(store)
    assert result.ok and result.events == 60


def test_trace_follows_the_case_from_any_identifier(store):
    _fill(store, 9)
    by_case = ledger.trace(store, "C1")
    assert [e["message_id"] for e in by_case] == ["m1", "m4", "m7"]
    by_message = ledger.trace(store, "m4")
    assert {e["message_id"] for e in by_message} == {"m1", "m4", "m7"}  # lineage: the whole case
    assert ledger.trace(store, "nothing-like-this") == []


def test_unknown_hop_is_refused(store):
    import pytest

    with pytest.raises(ValueError, match="unknown ledger hop"):
        ledger.record(store, LedgerEvent("teleported", {}))


def test_every_delivery_has_its_publication(store):
    _fill(store, 3)
    ledger.record(store, LedgerEvent("delivered", {"sequence": 0}, system="s", message_id="m0"),
                  LedgerEvent("receipt", {"receipt_id": "r0"}, system="s", message_id="m0"))
    check = ledger.unpublished_deliveries(store)
    assert check.ok and check.deliveries == 2


def test_a_delivery_without_a_publication_is_named(store):
    _fill(store, 3)
    ledger.record(store, LedgerEvent("delivered", {"sequence": 0}, system="s", message_id="m0"),
                  LedgerEvent("delivered", {"sequence": 9}, system="rogue", message_id="m-ghost"),
                  LedgerEvent("receipt", {"receipt_id": "r9"}, system="rogue", message_id="m-ghost"))
    check = ledger.unpublished_deliveries(store)
    assert not check.ok and check.unpublished_count == 2
    assert [(e["hop"], e["message_id"]) for e in check.unpublished] == [("delivered", "m-ghost"), ("receipt", "m-ghost")]
    assert ledger.verify(store).ok  # the chain itself is intact: only the cross-check sees it


def test_audit_verify_exits_1_naming_a_delivery_without_provenance(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from tongban.cli import app
    from tongban.settings import load
    from tongban.store import open_store

    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TONGBAN_DB_URL", raising=False)
    store = open_store(load().db_url)
    _fill(store, 2)
    assert CliRunner().invoke(app, ["audit", "verify"]).exit_code == 0
    ledger.record(store, LedgerEvent("delivered", {"sequence": 1}, system="rogue", message_id="m-ghost"))
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "no \"published\" event" in result.output and "m-ghost" in result.output and "rogue" in result.output
    as_json = CliRunner().invoke(app, ["audit", "verify", "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert report["chain_ok"] is True and report["unpublished_deliveries"] == 1
    assert report["unpublished"][0]["message_id"] == "m-ghost"


def test_text_that_is_not_utf8_is_escaped_not_a_failed_write(store):
    ledger.record(store, LedgerEvent("quarantined", {"position": "bad\udcff.csv line 2"}, system="s",
                                     source_key="k\udcfe"))
    [event] = ledger.iter_events(store)
    assert event["source_key"] == "k\\xfe" and "bad\\\\xff.csv" in event["detail"]
    assert ledger.verify(store).ok
