"""Flowback's own tables, on the shared metadata: batches (with their source manifest and the counts that
prove completeness), one row per distinct record of a batch (where it went), and one row per message's outcome at
a district sink. Idempotency (what a district already has) is the shared `deliveries` table; parking the shared
`parked` table; rejects the shared `quarantine` table."""
from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from tongban.store.tables import metadata

# One row per national batch (国家数据回流批次). `run_id` changes each time the batch is read again (an
# incomplete or interrupted batch, `tongban flowback retry`), so that reconciliation counts what the last read saw.
flowback_batches = Table(
    "flowback_batches",
    metadata,
    Column("batch_id", String(100), primary_key=True),
    Column("source", String(100), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("origin", String(300)),                 # file name or service endpoint the batch came from
    Column("received_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("status", String(20), nullable=False),  # reading | incomplete | done
    Column("problem", Text),                       # why an incomplete batch is not done
    Column("manifest_count", Integer, nullable=False),
    Column("manifest_digest", String(64), nullable=False),
    Column("records_in", Integer, nullable=False, default=0),   # records read, duplicates and damaged rows included
    Column("unreadable", Integer, nullable=False, default=0),   # damaged rows (quarantined at stage "read")
    Column("digest", String(64)),                  # computed over the records as received
    Column("times_received", Integer, nullable=False, default=1),
)

# One row per distinct record of a batch (its raw digest: exact duplicates share a row). `outcome` is routed
# (message_id says which message carries it) or quarantined (quarantine_id says which entry holds it).
# A re-read batch updates rows in place: what was routed is not routed again.
flowback_records = Table(
    "flowback_records",
    metadata,
    Column("batch_id", String(100), primary_key=True),
    Column("digest", String(64), primary_key=True),   # SHA-256 of the record's canonical JSON as received
    Column("run_id", String(32), nullable=False),     # the last read that saw it
    Column("position", Integer, nullable=False),
    Column("outcome", String(20), nullable=False),    # routed | quarantined
    Column("target", String(20)),
    Column("message_id", String(64)),
    Column("idempotency_key", String(200)),
    Column("quarantine_id", Integer),
    Column("stage", String(20)),                      # quarantined: mapping | routing
)
Index("ix_flowback_records_run", flowback_records.c.batch_id, flowback_records.c.run_id, flowback_records.c.outcome)
Index("ix_flowback_records_message", flowback_records.c.message_id)

# One row per routed message that reached an end state at its district sink:
# delivered | held (the sink already held its idempotency key: delivered before, or the sink said so) | parked.
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
