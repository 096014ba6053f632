"""A delivery recorded (送达登记): its row in `deliveries` and its ledger events, for a whole group commit at once.

The worker's lanes hand their deliveries to the committer (tongban.store.batcher); each write only queues its row
here, and at the end of the group's transaction (`db.before_commit`) one statement inserts them all
(`state.record_deliveries`: `INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key`, whose
RETURNING names the copies whose row this transaction inserted). A copy whose key
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
from tongban.store import state as st
from tongban.store.db import before_commit

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
    row = {"idempotency_key": idempotency_key, "message_id": message_id, "case_number": case_number,
           "sequence": sequence, "receipt": json.dumps(receipt, ensure_ascii=False)}
    item = (row, events, Recorded())
    pending = before_commit(conn, "deliveries", _flush)
    if pending is None:
        _flush(conn, [item])
    else:
        pending.append(item)
    return item[2]


def _flush(conn: Connection, items: list[tuple[dict[str, Any], Events, Recorded]]) -> None:
    ledger.take_turn(conn)  # before the rows: see the module docstring
    inserted = st.record_deliveries(conn, [row for row, _, _ in items])
    events: list[LedgerEvent] = []
    for row, make, outcome in items:
        key = row["idempotency_key"]
        outcome.fresh = key in inserted
        inserted.discard(key)  # a second copy of one key in this group is its duplicate
        events.extend(make(outcome.fresh))
    ledger.append(conn, events, at_commit=True)
