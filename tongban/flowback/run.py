"""One flowback run of one ministry source: fetch its new batches, route them, deliver to the district sinks,
reconcile. `run_flowback_source` is what an Airflow task calls (one DAG per configured source)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from tongban.bus import Bus
from tongban.store import Store

from .config import FileTransport, SourceConfig, SoapTransport, load_source_config
from .ingest import BatchIngest, BatchOutcome
from .reconcile import BatchReconciliation, reconcile
from .routing import Router
from .sources import BatchUnreadable, SoapBatchClient, file_batches, soap_batches
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
        """Every batch of this run balances and nothing was unreadable."""
        return (not self.unreadable and all(not b.error for b in self.batches)
                and all(r.balanced for r in self.reconciliations))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an Airflow task can return it as its XCom)."""
        return {"source": self.source, "balanced": self.balanced,
                "batches": [asdict(b) for b in self.batches], "unreadable": list(self.unreadable),
                "delivery": asdict(self.delivery) if self.delivery else None,
                "reconciliations": [r.to_dict() for r in self.reconciliations]}


def ingest_source(config: SourceConfig, *, store: Store, bus: Bus, prefix: str | None = None) -> FlowbackRunReport:
    """Route every new batch of the source onto the flowback queues (no delivery)."""
    report = FlowbackRunReport(config.source)
    ingest = BatchIngest(source=config.source, router=Router(config.routing), store=store, bus=bus,
                         prefix=prefix or config.topology_prefix)
    client = None
    if isinstance(config.transport, SoapTransport):
        client = SoapBatchClient(config.transport)
        batches = soap_batches(client)
    elif isinstance(config.transport, FileTransport):
        batches = file_batches(config.transport)
    else:  # pragma: no cover - the config model admits only these two
        raise TypeError(config.transport)
    try:
        for batch in batches:
            if isinstance(batch, BatchUnreadable):
                report.unreadable.append(str(batch))
                continue
            report.batches.append(ingest.ingest(batch))
    finally:
        if client is not None:
            client.close()
    return report


def run_flowback_source(config_path_or_dict: "str | os.PathLike | dict | SourceConfig", *,
                        store: Store | None = None, bus: Bus | None = None, prefix: str | None = None,
                        deliver: bool = True, idle_exit: float = 0.5, workers: int = 8) -> FlowbackRunReport:
    """Fetch, route, deliver and reconcile one ministry source.

    store / bus default to the settings' (TONGBAN_DB_URL, RabbitMQ when one answers); `prefix` overrides the
    topology's exchange/queue prefix; `deliver=False` leaves delivery to a separately running
    `tongban flowback deliver`, and then the reconciliation shows what is still pending.
    """
    config = load_source_config(config_path_or_dict)
    own_bus = bus is None
    if store is None:
        from tongban.store import open_store

        store = open_store()
    if bus is None:
        from tongban.bus import open_bus

        bus = open_bus()
    prefix = prefix or config.topology_prefix
    try:
        report = ingest_source(config, store=store, bus=bus, prefix=prefix)
        if deliver:
            deliverer = DistrictDeliverer(store=store, bus=bus, sinks=config.sinks, prefix=prefix)
            try:
                report.delivery = deliverer.run(idle_exit=idle_exit, workers=workers)
            finally:
                deliverer.close()
        for outcome in report.batches:
            report.reconciliations.extend(reconcile(store, outcome.batch_id))
    finally:
        if own_bus:
            bus.close()
    return report
