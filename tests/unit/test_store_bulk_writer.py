"""The flowback router's own store connections (Store.bulk_writer), time-ordered message ids, and durable writes:
what the router tunes for itself must not reach the other users of the store, and must not lose a commit."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from tongban.audit import ledger
from tongban.audit.ledger import LedgerEvent
from tongban.bus.envelope import ordered_id
from tongban.store.tables import ledger as ledger_table


def _pragma(store, name: str) -> int:
    with store.read() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_ids_made_later_sort_later_and_are_uuid7():
    ids = [ordered_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert {uuid.UUID(i).version for i in ids} == {7}
    # to the millisecond: the time prefix (first 12 hex digits) never goes back
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


def test_the_bulk_writer_tunes_its_own_connections_only(sqlite_store):
    writer = sqlite_store.bulk_writer()
    try:
        assert writer is not sqlite_store
        assert _pragma(writer, "cache_size") == -16000 and _pragma(writer, "wal_autocheckpoint") == 10000
        assert _pragma(sqlite_store, "cache_size") == -2000 and _pragma(sqlite_store, "wal_autocheckpoint") == 1000
        with writer.write(durable=True) as conn:
            ledger.append(conn, [LedgerEvent("batch_received", {"batch_id": "B1"}, system="mps")])
        assert _pragma(writer, "synchronous") == 1  # NORMAL again after the durable commit
    finally:
        writer.dispose()
    with sqlite_store.read() as conn:  # what the writer committed, the store reads
        assert conn.execute(select(ledger_table.c.hop)).scalars().all() == ["batch_received"]
