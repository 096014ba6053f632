"""The ledger's hash chain on both back ends: intact chains verify, any edit is found and named."""
from __future__ import annotations

import threading

from sqlalchemy import delete, select, update

from tongban import ledger
from tongban.ledger import LedgerEvent
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
