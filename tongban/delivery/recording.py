"""A delivery recorded (送达登记): its row in `deliveries` and its ledger events, for a whole group commit at once.

The worker's lanes hand their deliveries to the committer (tongban.store.batcher); each write only queues its row
here, and at the end of the group's transaction (`db.before_commit`) one statement inserts them all:
`INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key` — RETURNING names the copies whose
row this transaction inserted (psycopg's rowcount is -1 for such an insert, so it cannot tell). A copy whose key
is already there (delivered before, by another worker's transaction, or earlier in the same group) is a duplicate;
every other one is fresh. Then each copy's ledger events (delivered + receipt, or duplicate) are appended, in the
group's order, to the same transaction's ledger rows.

The ledger's turn (its advisory lock, `ledger.take_turn`) is taken BEFORE the insert: two workers committing copies
of one message would otherwise each hold a deliveries row the other waits for while waiting for the lock the other
holds (PostgreSQL would break the deadlock by failing one group). With the turn first, the second waits for the
first's commit and then finds the key there: a duplicate, as before. The lock is also held for less time than when
each delivery's insert took it: one insert and the ledger's rows, then the commit.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from sqlalchemy import Connection

from tongban.audit import ledger
from tongban.audit.ledger import LedgerEvent
from tongban.bus.envelope import utcnow
from tongban.store import state as st
from tongban.store.db import before_commit
from tongban.store.tables import deliveries

_COLUMNS = ("idempotency_key", "message_id", "case_number", "sequence", "receipt", "delivered_at")
_CHUNK = 1000  # rows per statement: 6 parameters each, far below PostgreSQL's 65,535

Events = Callable[[bool], list[LedgerEvent]]  # fresh → the ledger events of this copy


class Recorded:
    """What became of one copy, known once its group's rows are inserted (before the commit): `fresh` is True when
    this copy's row was inserted (delivered), False when its key was there already (a duplicate)."""
    __slots__ = ("fresh",)

    def __init__(self) -> None:
        self.fresh: bool | None = None


def record(conn: Connection, *, idempotency_key: str, message_id: str, case_number: str | None,
           sequence: int | None, receipt: dict[str, Any], events: Events) -> Recorded:
    """Queue the delivery of one copy for the end of this `Store.write` transaction (outside one: at once);
    `events(fresh)` gives its ledger events then."""
    item = ((idempotency_key, message_id, case_number, sequence, json.dumps(receipt, ensure_ascii=False)),
            events, Recorded())
    pending = before_commit(conn, "deliveries", _flush)
    if pending is None:
        _flush(conn, [item])
    else:
        pending.append(item)
    return item[2]


def _inserted(conn: Connection, rows: list[tuple]) -> set[str]:
    """Insert the rows (those whose key is there already do nothing); the keys inserted."""
    at = utcnow()
    if conn.dialect.name != "postgresql":  # SQLite: one statement per row (a local file; RETURNING per row)
        return {row[0] for row in rows
                if st.record_delivery(conn, row[0], row[1], row[2], row[3], json.loads(row[4]))}
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(deliveries.name)} ({', '.join(quote(c) for c in _COLUMNS)}) VALUES "
    tail = f" ON CONFLICT ({quote('idempotency_key')}) DO NOTHING RETURNING {quote('idempotency_key')}"
    one = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    keys: set[str] = set()
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        result = conn.exec_driver_sql(head + ", ".join([one] * len(chunk)) + tail,
                                      tuple(value for row in chunk for value in (*row, at)))
        keys.update(key for key, in result)
    return keys


def _flush(conn: Connection, items: list[tuple[tuple, Events, Recorded]]) -> None:
    ledger.take_turn(conn)  # before the rows: see the module docstring
    inserted = _inserted(conn, [row for row, _, _ in items])
    events: list[LedgerEvent] = []
    for row, make, outcome in items:
        outcome.fresh = row[0] in inserted
        inserted.discard(row[0])  # a second copy of one key in this group is its duplicate
        events.extend(make(outcome.fresh))
    ledger.append(conn, events, at_commit=True)
