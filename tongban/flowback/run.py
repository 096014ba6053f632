"""One flowback run of one ministry source: read its waiting batches, route them, deliver to the district sinks,
reconcile. `run_flowback_source` is what an Airflow task calls (one DAG per source file); `retry_batch` is
`tongban flowback retry BATCH` (after the batch or its source file was fixed)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from tongban.bus import Bus
from tongban.store import Store
from tongban.store.at_rest import reveal
from tongban.store.tables import quarantine

from .batches import BatchUnreadable, restore_failed, source_batches
from .ingest import BatchIngest, BatchOutcome
from .mapping import FlowbackMapping, load_flowback_mapping
from .reconcile import BatchReconciliation, reconcile
from .routing import Router
from .tables import flowback_batches, flowback_records
from .topology import flowback_prefix
from .worker import DeliverStats, DistrictDeliverer


@dataclass
class FlowbackRunReport:
    source: str
    batches: list[BatchOutcome] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    delivery: DeliverStats | None = None
    reconciliations: list[BatchReconciliation] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        """Every batch of this run is done and balances, and nothing was unreadable."""
        return (not self.unreadable and all(not b.error for b in self.batches)
                and all(r.balanced for r in self.reconciliations))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an Airflow task returns it as its XCom)."""
        # `balanced` is None when nothing was reconciled (an ingest-only run): delivery has not been counted yet, so
        # it is neither balanced nor not — `tongban flowback report` is the one that says.
        return {"source": self.source, "balanced": self.balanced if self.reconciliations else None,
                "batches": [asdict(b) for b in self.batches], "unreadable": list(self.unreadable),
                "delivery": asdict(self.delivery) if self.delivery else None,
                "reconciliations": [r.to_dict() for r in self.reconciliations]}


def load_source(config: "str | os.PathLike | FlowbackMapping") -> FlowbackMapping:
    return config if isinstance(config, FlowbackMapping) else load_flowback_mapping(config)


def _ingest(mapping: FlowbackMapping, store: Store, bus: Bus, prefix: str | None) -> BatchIngest:
    return BatchIngest(mapping=mapping, router=Router(mapping.routing), store=store, bus=bus,
                       prefix=prefix or flowback_prefix())


def ingest_source(mapping: FlowbackMapping, *, store: Store, bus: Bus, prefix: str | None = None,
                  only: str | None = None) -> FlowbackRunReport:
    """Route every waiting batch of the source (only batch `only`, if named) onto the flowback queues."""
    report = FlowbackRunReport(mapping.system)
    writer = store.bulk_writer()  # the router's own connections (SQLite: a larger page cache, fewer checkpoints)
    try:
        ingest = _ingest(mapping, writer, bus, prefix)
        for batch in source_batches(mapping):
            if isinstance(batch, BatchUnreadable):
                report.unreadable.append(str(batch))
                continue
            if only is not None and batch.manifest.batch_id != only:
                continue
            if not batch.acknowledged and ingest.is_done(batch.manifest):
                continue  # still listed by a service that is never told: not news
            report.batches.append(ingest.ingest(batch))
    finally:
        if writer is not store:
            writer.dispose()
    return report


def _deliver(mapping: FlowbackMapping, report: FlowbackRunReport, store: Store, bus: Bus, prefix: str | None,
             idle_exit: float, workers: int) -> None:
    deliverer = DistrictDeliverer(store=store, bus=bus, sinks=mapping.sinks, prefix=prefix or flowback_prefix())
    try:
        report.delivery = deliverer.run(idle_exit=idle_exit, workers=workers)
    finally:
        deliverer.close()


def _open(store: Store | None, bus: Bus | None) -> tuple[Store, Bus, bool]:
    if store is None:
        from tongban.store import open_store

        store = open_store()
    own_bus = bus is None
    if bus is None:
        from tongban.bus import open_bus

        bus = open_bus()
    return store, bus, own_bus


def run_flowback_source(config: "str | os.PathLike | FlowbackMapping", *, store: Store | None = None,
                        bus: Bus | None = None, prefix: str | None = None, deliver: bool = True,
                        idle_exit: float = 0.5, workers: int = 8) -> FlowbackRunReport:
    """Read, route, deliver and reconcile one ministry source.

    store / bus default to the settings' (TONGBAN_DB_URL, RabbitMQ when one answers); `prefix` overrides the
    topology's prefix (default `<TONGBAN_QUEUE_PREFIX>.flowback`); `deliver=False` leaves delivery to a separately
    running `tongban flowback deliver`, and then the reconciliation shows what is still pending.
    """
    mapping = load_source(config)
    store, bus, own_bus = _open(store, bus)
    try:
        report = ingest_source(mapping, store=store, bus=bus, prefix=prefix)
        if deliver:
            _deliver(mapping, report, store, bus, prefix, idle_exit, workers)
        for outcome in report.batches:
            report.reconciliations.extend(reconcile(store, outcome.batch_id))
    finally:
        if own_bus:
            bus.close()
    return report


def quarantined_entries(store: Store, batch_id: str, ids: list[int] | None = None) -> list[tuple[int, int, str, Any]]:
    """(quarantine id, position, digest, raw record) of a batch's records quarantined at stage mapping or routing
    by the last read and still open (damaged rows, stage read, cannot be mapped again: the batch must be re-sent)."""
    rec = flowback_records.c
    query = (select(quarantine.c.id, rec.position, rec.digest, quarantine.c.record)
             .select_from(flowback_records.join(flowback_batches, flowback_batches.c.batch_id == rec.batch_id)
                          .join(quarantine, quarantine.c.id == rec.quarantine_id))
             .where(rec.batch_id == batch_id, rec.run_id == flowback_batches.c.run_id, rec.outcome == "quarantined",
                    rec.stage.in_(("mapping", "routing")), quarantine.c.status == "open")
             .order_by(rec.position))
    if ids:
        query = query.where(quarantine.c.id.in_(ids))
    with store.read() as conn:
        return [(qid, position, digest, json.loads(reveal(record)))
                for qid, position, digest, record in conn.execute(query) if record]


def retry_batch(config: "str | os.PathLike | FlowbackMapping", batch_id: str, *, store: Store | None = None,
                bus: Bus | None = None, prefix: str | None = None, deliver: bool = True, idle_exit: float = 0.5,
                workers: int = 8, quarantine_ids: list[int] | None = None) -> FlowbackRunReport:
    """Run one batch again with the current source file, routing nothing twice:

    - a batch that is not done and still waits in the source is read again in full (what an earlier read routed
      is recognised and not routed again);
    - the batch's records quarantined at stage mapping or routing are mapped and routed again from quarantine
      (this is how a batch that is done, but was quarantined by a wrong source file, is recovered).
    Then delivery and the batch's reconciliation. Raises LookupError for an unknown batch."""
    mapping = load_source(config)
    store, bus, own_bus = _open(store, bus)
    try:
        with store.read() as conn:
            row = conn.execute(select(flowback_batches).where(flowback_batches.c.batch_id == batch_id)).mappings().first()
        if row is None:
            raise LookupError(f"no flowback batch {batch_id!r} has been received")
        if row["source"] != mapping.system:
            raise LookupError(f"batch {batch_id} came from source {row['source']}, not {mapping.system}")
        report = FlowbackRunReport(mapping.system)
        if row["status"] != "done" and quarantine_ids is None:
            restore_failed(mapping, row["origin"] or "")
            report = ingest_source(mapping, store=store, bus=bus, prefix=prefix, only=batch_id)
        entries = quarantined_entries(store, batch_id, quarantine_ids)
        if entries:
            outcome = _ingest(mapping, store, bus, prefix).reprocess(batch_id, entries)
            report.batches.append(outcome)
        if deliver:
            _deliver(mapping, report, store, bus, prefix, idle_exit, workers)
        report.reconciliations = reconcile(store, batch_id)
        report.batches = [b for b in report.batches if not (b.error and b.batch_id != batch_id)]
    finally:
        if own_bus:
            bus.close()
    return report
