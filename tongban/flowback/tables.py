"""Flowback's own tables, on the shared metadata: batches (with their source manifest and the counts that
prove completeness), per-district routed counts, and one row per delivery attempt outcome at a district sink."""
from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from tongban.store import Store
from tongban.store.tables import metadata

# One row per national batch (国家数据回流批次). `run_id` changes when an interrupted routing run is redone,
# so that reconciliation counts only the messages of the run that completed.
flowback_batches = Table(
    "flowback_batches",
    metadata,
    Column("batch_id", String(100), primary_key=True),
    Column("source", String(100), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("origin", String(300)),                 # file name or SOAP endpoint the batch came from
    Column("received_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("status", String(20), nullable=False),  # routing | routed
    Column("manifest_count", Integer, nullable=False),
    Column("manifest_digest", String(64), nullable=False),
    Column("records_in", Integer, nullable=False, default=0),
    Column("routed", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
    Column("digest", String(64)),                  # computed over the records as received
    Column("times_received", Integer, nullable=False, default=1),
)

# Routed counts per batch and target ("500101" … or "city").
flowback_routes = Table(
    "flowback_routes",
    metadata,
    Column("batch_id", String(100), primary_key=True),
    Column("target", String(20), primary_key=True),
    Column("run_id", String(32), nullable=False),
    Column("routed", Integer, nullable=False),
)

# One row per routed message that reached an end state at its district sink:
# delivered | duplicate (its idempotency key was already delivered) | parked.
flowback_deliveries = Table(
    "flowback_deliveries",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("idempotency_key", String(200), nullable=False),
    Column("batch_id", String(100), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("target", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("sink", String(300)),
    Column("receipt", Text),
    Column("at", String(40), nullable=False),
)
Index("ix_flowback_deliveries_key", flowback_deliveries.c.idempotency_key, flowback_deliveries.c.status)
Index("ix_flowback_deliveries_batch", flowback_deliveries.c.batch_id, flowback_deliveries.c.run_id,
      flowback_deliveries.c.target)

FLOWBACK_TABLES = [flowback_batches, flowback_routes, flowback_deliveries]
_ready: set[str] = set()


def ensure_tables(store: Store) -> None:
    """Create the flowback tables if this store does not have them yet (once per store per process)."""
    if store.url not in _ready:
        metadata.create_all(store.engine, tables=FLOWBACK_TABLES)
        _ready.add(store.url)
