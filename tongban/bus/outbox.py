"""The transactional outbox: nothing reaches the bus without its "published" ledger event.

Publishing is two steps. `stage(conn, system, work, envelopes)` writes the messages into the outbox inside the
caller's write transaction — the same transaction that appends their "published" ledger events (and, for ingest,
saves the case snapshots) — so either both the provenance and the message exist, or neither. After the commit,
`relay(store, bus, system=…)` publishes the staged rows in the order they were staged, waits for the broker's
confirms, and only then removes them.

- A crash (or a broker away) between the commit and the confirm leaves the rows in the outbox; the next relay pass
  sends them (the next `tongban ingest` of that system relays before it fetches; `tongban outbox relay` does it
  for every system). The caller fails meanwhile, so a watermark or a file's move to done/ still waits for the
  broker's confirm.
- A crash after the confirm but before the rows are removed sends them again: the delivery worker is an
  idempotent consumer (it drops a key already delivered), so a redelivery is harmless and recorded as a duplicate.
- An unroutable publish (no queue bound) leaves the rows too, and fails the caller loudly: the messages are not
  lost and need no replay once the topology is fixed.

The outbox refuses to know what a message means: it keeps envelopes (encrypted at rest: they carry personal data)
and where they go, nothing else. `tongban audit verify` checks the other side of the promise: every delivery
names a message that was published (tongban.audit.ledger.unpublished_deliveries).
"""
from __future__ import annotations

import itertools
from typing import Sequence

from sqlalchemy import Connection, delete, func, select

from tongban.bus.base import Bus
from tongban.bus.topology import WorkQueue
from tongban.bus.envelope import Envelope, utcnow
from tongban.store import Store
from tongban.store.at_rest import protect, reveal
from tongban.store.tables import outbox

RELAY_BATCH = 500


def stage(conn: Connection, system: str | None, work: WorkQueue, envelopes: Sequence[Envelope]) -> None:
    """Write `envelopes` for `work` into the outbox, inside the caller's transaction (with their ledger events)."""
    if not envelopes:
        return
    now = utcnow()
    conn.execute(outbox.insert(), [
        {"at": now, "system": system, "message_id": env.message_id, "exchange": work.exchange, "queue": work.queue,
         "routing_key": work.routing_key, "body": protect(env.to_bytes().decode("utf-8"))}
        for env in envelopes])


def relay(store: Store, bus: Bus, *, system: str | None = None, batch: int = RELAY_BATCH,
          declare: bool = False) -> int:
    """Publish the staged messages (of `system`, or all) in staging order; each group is removed once the broker
    confirmed it. Returns how many were sent; raises the bus's PublishError (the rest stay staged) on failure.
    `declare`: declare each destination's topology first (the operator's relay; ingest declares its own)."""
    sent = 0
    declared: set[tuple[str, str, str]] = set()
    while True:
        query = select(outbox).order_by(outbox.c.id).limit(batch)
        if system is not None:
            query = query.where(outbox.c.system == system)
        with store.read() as conn:
            rows = conn.execute(query).mappings().all()
        if not rows:
            return sent
        for destination, group in itertools.groupby(rows, key=lambda r: (r["exchange"], r["queue"], r["routing_key"])):
            group = list(group)
            work = WorkQueue(*destination)
            if declare and destination not in declared:
                bus.declare(work)
                declared.add(destination)
            bus.publish(work, [Envelope.from_bytes(reveal(r["body"]).encode("utf-8")) for r in group])
            with store.write() as conn:
                conn.execute(delete(outbox).where(outbox.c.id.in_([r["id"] for r in group])))
            sent += len(group)


def pending(store: Store) -> dict[str, int]:
    """Messages waiting in the outbox, by system."""
    with store.read() as conn:
        return {system or "-": n for system, n in conn.execute(
            select(outbox.c.system, func.count()).group_by(outbox.c.system))}
