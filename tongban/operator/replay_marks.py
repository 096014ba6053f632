"""Operator marks "replay this" on parked deliveries and quarantined records; the `ops__replay` DAG acts on them.

Why a separate table instead of a status on the entry itself: an entry must stay `open` until it is really
replayed. The delivery worker treats an open parked event (or a platform-rejected quarantine entry) as the
reason to hold back the later events of that case (order per case); flipping it to some other status at
marking time would let those later events overtake it before the replay runs.

A mark is `pending` until the replay ran; then it records when. Marking an entry twice is harmless.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Integer, String, Table, select

from tongban.bus.envelope import utcnow
from tongban.store import Store
from tongban.store.tables import id_column, metadata, operator_column, parked, quarantine, timestamp_column

replay_marks = Table(
    "replay_marks",
    metadata,
    id_column(),
    Column("kind", String(20), nullable=False),  # parked | quarantine
    Column("entry_id", Integer, nullable=False),
    timestamp_column("marked_at"),
    operator_column("marked_by"),
    timestamp_column("replayed_at", nullable=True),  # NULL while pending
)

KINDS = {"parked": parked, "quarantine": quarantine}

def _entries_table(kind: str) -> Table:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"replay marks are for {' or '.join(sorted(KINDS))}, not {kind!r}") from None


def mark_for_replay(store: Store, kind: str, ids: list[int], *, by: str | None = None) -> int:
    """Mark open entries of `kind` ("parked" or "quarantine") for the next `ops__replay` run.

    Returns how many new marks were made. An id that does not exist or is no longer open is an error naming it:
    an operator who typed the wrong number must hear so, not find out at the next audit."""
    table = _entries_table(kind)
    ids = sorted(set(int(i) for i in ids))
    with store.write() as conn:
        open_ids = set(conn.execute(select(table.c.id).where(table.c.id.in_(ids), table.c.status == "open")).scalars())
        missing = [i for i in ids if i not in open_ids]
        if missing:
            raise ValueError(f"{kind} entries {', '.join(map(str, missing))}: not found or not open")
        already = set(conn.execute(select(replay_marks.c.entry_id).where(
            replay_marks.c.kind == kind, replay_marks.c.entry_id.in_(ids), replay_marks.c.replayed_at.is_(None))).scalars())
        new = [i for i in ids if i not in already]
        if new:
            conn.execute(replay_marks.insert(), [{"kind": kind, "entry_id": i, "marked_at": utcnow(), "marked_by": by}
                                                 for i in new])
    return len(new)


def pending(store: Store, kind: str) -> list[int]:
    """Entry ids of `kind` marked for replay and still open (an entry replayed by hand meanwhile drops out)."""
    table = _entries_table(kind)
    with store.read() as conn:
        return list(conn.execute(
            select(replay_marks.c.entry_id).join(table, table.c.id == replay_marks.c.entry_id)
            .where(replay_marks.c.kind == kind, replay_marks.c.replayed_at.is_(None), table.c.status == "open")
            .order_by(replay_marks.c.entry_id).distinct()).scalars())


def _close_marks(store: Store, kind: str, ids: list[int]) -> None:
    with store.write() as conn:
        conn.execute(replay_marks.update().where(replay_marks.c.kind == kind, replay_marks.c.entry_id.in_(ids),
                                                 replay_marks.c.replayed_at.is_(None)).values(replayed_at=utcnow()))


@dataclass
class ReplayResult:
    parked_ids: list[int] = field(default_factory=list)
    quarantine_ids: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def replay_marked(store: Store, bus, *, platform=None, mappings_dir=None) -> ReplayResult:
    """Replay every pending mark through tongban.operator.actions (the same code path as `tongban … replay`).

    The marks are closed only after the replay returned: a replay that fails leaves them pending for the next run
    (the operations record each replay in the ledger, so the audit trail shows what went out)."""
    from tongban.operator import actions as operations

    result = ReplayResult(parked_ids=pending(store, "parked"), quarantine_ids=pending(store, "quarantine"))
    if result.parked_ids:
        result.messages.append(str(operations.replay_parked(store, bus, ids=result.parked_ids)))
        _close_marks(store, "parked", result.parked_ids)
    if result.quarantine_ids:
        result.messages.append(str(operations.replay_quarantine(store, ids=result.quarantine_ids, bus=bus,
                                                                platform=platform, mappings_dir=mappings_dir)))
        _close_marks(store, "quarantine", result.quarantine_ids)
    if not result.messages:
        result.messages.append("nothing marked for replay")
    return result


__all__ = ["mark_for_replay", "pending", "replay_marked", "ReplayResult", "replay_marks"]
