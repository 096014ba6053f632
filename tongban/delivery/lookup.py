"""What the delivery worker must know of a message before it pushes it, in one statement (one round trip):
- the receipt of its idempotency key, when that key was delivered already (idempotent consumer);
- why its case is blocked, when an earlier event of the case is parked or was rejected by the platform;
- the last delivered sequence of its case (the ordering gate).
These were four reads per event (tongban.store.state, tongban.operator.quarantine.is_blocked); the answers and the
texts are the same. The record itself is made with the database's unique key (state.record_delivery), so a
redelivery that passes this look-up while the first delivery commits is still recorded once."""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, func, select

from tongban.operator.quarantine import OPEN
from tongban.store.tables import deliveries, parked, quarantine

_CASE = bindparam("case_number")
_LOOKUP = select(
    select(deliveries.c.receipt).where(deliveries.c.idempotency_key == bindparam("key"))
    .scalar_subquery().label("receipt"),
    select(func.min(parked.c.id)).where(parked.c.case_number == _CASE, parked.c.status == OPEN)
    .scalar_subquery().label("parked_id"),
    select(func.min(quarantine.c.id)).where(
        quarantine.c.system == bindparam("system"), quarantine.c.source_key == bindparam("source_key"),
        quarantine.c.stage == "platform", quarantine.c.status == OPEN).scalar_subquery().label("rejected_id"),
    select(func.max(deliveries.c.sequence)).where(deliveries.c.case_number == _CASE)
    .scalar_subquery().label("last_sequence"),
)


@dataclass
class Standing:
    """Where a message stands before its push."""
    receipt: dict | None  # set: already delivered, with this receipt
    blocked: str | None   # set: why the case is blocked (parked or rejected earlier event)
    last_sequence: int    # the case's last delivered sequence (0: none)


def standing(conn: Connection, idempotency_key: str, case_number: str | None, system: str | None,
             source_key: str | None) -> Standing:
    row = conn.execute(_LOOKUP, {"key": idempotency_key, "case_number": case_number or None,
                                 "system": system or None, "source_key": source_key or None}).one()
    blocked = None
    if row.parked_id is not None:
        blocked = f"an earlier event of case {case_number} is parked (#{row.parked_id})"
    elif row.rejected_id is not None:
        blocked = f"an earlier event of this case was rejected by the platform (quarantine #{row.rejected_id})"
    return Standing(json.loads(row.receipt) if row.receipt else None, blocked, row.last_sequence or 0)
