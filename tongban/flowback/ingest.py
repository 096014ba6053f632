"""Routing one national batch onto the flowback queues, with the counts reconciliation needs.

Records stream through in constant memory: each is hashed into the batch digest, validated and routed
(routing.Router), and buffered per target; every `chunk` records the buffers are published (the bus returns
after the broker confirmed) and only then are their ledger events and quarantine entries written.
The batch is marked routed, and the source told (file moved to done/, SOAP batch acknowledged), only after
the last publish was confirmed: an interrupted run is redone in full under a new run id, and the district
sinks' idempotency absorbs what the interrupted run had already sent.

A batch id that was already routed is recognised: nothing is routed again, the re-delivery is in the ledger.
"""
from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update

from tongban import ledger
from tongban import quarantine as q
from tongban.bus import Bus
from tongban.codes import mask_text
from tongban.envelope import KIND_FLOWBACK, Envelope, canonical_json, utcnow
from tongban.ledger import LedgerEvent
from tongban.store import Store

from .records import PROJID, ROWGUID, RecordsDigest
from .routing import Reject, Router
from .sources import Batch
from .tables import ensure_tables, flowback_batches, flowback_routes
from .topology import declare, work_queue

CHUNK = 1000


@dataclass
class BatchOutcome:
    batch_id: str
    origin: str
    duplicate: bool = False
    records_in: int = 0
    routed: int = 0
    quarantined: int = 0
    per_target: dict[str, int] = field(default_factory=dict)
    manifest_count: int = 0
    digest_ok: bool = False
    error: str | None = None


class BatchIngest:
    def __init__(self, *, source: str, router: Router, store: Store, bus: Bus, prefix: str, chunk: int = CHUNK):
        self.source, self.router, self.store, self.bus, self.prefix, self.chunk = source, router, store, bus, prefix, chunk
        ensure_tables(store)

    # --- batch bookkeeping ---------------------------------------------------------------------------
    def _start(self, batch: Batch) -> tuple[str | None, BatchOutcome | None]:
        """Returns (run_id, None) to route, or (None, outcome) when the batch was already routed."""
        m = batch.manifest
        with self.store.write() as conn:
            row = conn.execute(select(flowback_batches).where(flowback_batches.c.batch_id == m.batch_id)).mappings().first()
            if row is not None and row["status"] == "routed":
                conn.execute(update(flowback_batches).where(flowback_batches.c.batch_id == m.batch_id)
                             .values(times_received=row["times_received"] + 1))
                same = row["manifest_digest"] == m.digest and row["manifest_count"] == m.record_count
                detail = {"batch_id": m.batch_id, "origin": batch.origin, "first_received_at": row["received_at"],
                          "times_received": row["times_received"] + 1, "same_manifest": same}
                ledger.append(conn, [LedgerEvent("duplicate", detail, system=self.source, source_key=m.batch_id)])
            else:
                run_id = uuid.uuid4().hex
                values = dict(source=self.source, run_id=run_id, origin=batch.origin, received_at=utcnow(),
                              finished_at=None, status="routing", manifest_count=m.record_count,
                              manifest_digest=m.digest, records_in=0, routed=0, quarantined=0, digest=None)
                if row is None:
                    conn.execute(flowback_batches.insert().values(batch_id=m.batch_id, times_received=1, **values))
                else:  # an interrupted run: redo it under a new run id
                    conn.execute(update(flowback_batches).where(flowback_batches.c.batch_id == m.batch_id)
                                 .values(times_received=row["times_received"] + 1, **values))
                    conn.execute(delete(flowback_routes).where(flowback_routes.c.batch_id == m.batch_id))
                ledger.append(conn, [LedgerEvent("batch_received", {
                    "batch_id": m.batch_id, "origin": batch.origin, "manifest_count": m.record_count,
                    "manifest_digest": m.digest, "run_id": run_id, "rerun": row is not None},
                    system=self.source, source_key=m.batch_id)])
                return run_id, None
        outcome = BatchOutcome(m.batch_id, batch.origin, duplicate=True, manifest_count=m.record_count,
                               digest_ok=same, error=None if same else
                               "batch id received again with a different manifest (count or digest): not routed")
        return None, outcome

    # --- routing -------------------------------------------------------------------------------------
    def ingest(self, batch: Batch) -> BatchOutcome:
        run_id, duplicate = self._start(batch)
        if duplicate is not None:
            if duplicate.error is None:
                (batch.duplicate_done or batch.done)()
            return duplicate
        m = batch.manifest
        out = BatchOutcome(m.batch_id, batch.origin, manifest_count=m.record_count)
        digest = RecordsDigest()
        per_target: dict[str, int] = defaultdict(int)
        buffers: dict[str, list[Envelope]] = defaultdict(list)
        events: list[LedgerEvent] = []
        rejects: list[q.QuarantineEntry] = []
        pending = 0

        def flush() -> None:
            nonlocal pending
            for target, envelopes in buffers.items():
                if envelopes:
                    work = work_queue(target, self.prefix)
                    declare(self.bus, work)
                    self.bus.publish(work, envelopes)  # returns after the broker confirmed every message
            with self.store.write() as conn:
                for entry in rejects:
                    q.add(conn, entry)
                ledger.append(conn, events)
            buffers.clear()
            events.clear()
            rejects.clear()
            pending = 0

        try:
            for position, record in enumerate(batch.read(), start=1):
                body = canonical_json(record)
                digest.add_canonical(body)
                decision = self.router.route(record)
                row_guid = record.get(ROWGUID)
                if isinstance(decision, Reject):
                    out.quarantined += 1
                    where = f"batch {m.batch_id} record {position}"
                    rule = mask_text(decision.rule)
                    rejects.append(q.QuarantineEntry(self.source, row_guid or f"{m.batch_id}#{position}", "routing",
                                                     rule, field=decision.field, position=where, record=record))
                    events.append(LedgerEvent("quarantined", {"batch_id": m.batch_id, "position": position,
                                                              "field": decision.field, "rule": rule},
                                              system=self.source, source_key=row_guid))
                else:
                    # == tongban.envelope.idempotency_key(source, ROWGUID, record), reusing the canonical bytes.
                    key = f"{self.source}:{row_guid}:{hashlib.sha256(body).hexdigest()[:32]}"
                    route = decision.detail()
                    env = Envelope(KIND_FLOWBACK, self.source, key, {
                        "batch_id": m.batch_id, "run_id": run_id, "target": decision.target, "route": route,
                        "record": record}, region=decision.target, correlation=record.get(PROJID))
                    buffers[decision.target].append(env)
                    per_target[decision.target] += 1
                    out.routed += 1
                    events.append(LedgerEvent("routed", {"batch_id": m.batch_id, **route}, system=self.source,
                                              message_id=env.message_id, idempotency_key=key,
                                              case_number=env.correlation, source_key=row_guid))
                pending += 1
                if pending >= self.chunk:
                    flush()
            flush()
        except Exception as exc:  # the batch stays "routing": the next run redoes it
            out.error = f"batch {m.batch_id} interrupted after {digest.count} records: {exc}"
            out.records_in = digest.count
            return out
        out.records_in = digest.count
        out.per_target = dict(per_target)
        computed = digest.hexdigest()
        out.digest_ok = computed == m.digest
        with self.store.write() as conn:
            conn.execute(update(flowback_batches).where(flowback_batches.c.batch_id == m.batch_id).values(
                status="routed", finished_at=utcnow(), records_in=out.records_in, routed=out.routed,
                quarantined=out.quarantined, digest=computed))
            if per_target:
                conn.execute(flowback_routes.insert(), [
                    {"batch_id": m.batch_id, "target": t, "run_id": run_id, "routed": n} for t, n in per_target.items()])
            ledger.append(conn, [LedgerEvent("batch_routed", {
                "batch_id": m.batch_id, "run_id": run_id, "records_in": out.records_in, "routed": out.routed,
                "quarantined": out.quarantined, "manifest_count": m.record_count,
                "digest_matches": out.digest_ok, "per_target": out.per_target}, system=self.source, source_key=m.batch_id)])
        batch.done()
        return out
