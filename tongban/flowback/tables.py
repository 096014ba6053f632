"""Flowback's own tables, on the shared metadata: batches (with their source manifest and the counts that
prove completeness), one row per distinct record of a batch (where it went), and one row per message's outcome at
a district sink. Idempotency (what a district already has) is the shared `deliveries` table; parking the shared
`parked` table; rejects the shared `quarantine` table."""
from __future__ import annotations

from sqlalchemy import Column, Index, Integer, LargeBinary, String, Table, Text

from tongban.store.tables import KEY_WIDTHS, key_column, key_columns, timestamp_column, metadata


def batch_id_column(**options) -> Column:
    """The national batch's id (国家数据回流批次), as its source names it."""
    return Column("batch_id", String(100), **options)


def run_id_column() -> Column:
    """Which read of a batch (a new one each time it is read again)."""
    return Column("run_id", String(32), nullable=False)


# One row per national batch (国家数据回流批次). `run_id` changes each time the batch is read again (an
# incomplete or interrupted batch, `tongban flowback retry`), so that reconciliation counts what the last read saw.
flowback_batches = Table(
    "flowback_batches",
    metadata,
    batch_id_column(primary_key=True),
    Column("source", String(100), nullable=False),
    run_id_column(),
    Column("origin", String(300)),                 # file name or service endpoint the batch came from
    timestamp_column("received_at"),
    timestamp_column("finished_at", nullable=True),
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
# A re-read batch updates rows in place: what was routed is not routed again. `record_key` (the record's ROWGUID,
# or the ministry's own key) and `ledger_event` (the event that recorded its outcome: the `routed_chunk` listing it,
# or its `quarantined` event) are how tongban.flowback.trace answers "where did record X go".
flowback_records = Table(
    "flowback_records",
    metadata,
    batch_id_column(primary_key=True),
    # The first 16 bytes of the SHA-256 of the record's canonical JSON as received (revision 0007; 64 hex digits
    # before): the primary key's entries go anywhere in its B-tree, so the shorter they are the fewer pages each
    # chunk's commit writes. 128 bits: two distinct records of a batch share a key with odds ~n²/2¹²⁹ (1e-27 at 1M).
    Column("digest", LargeBinary, primary_key=True),
    run_id_column(),                                  # the last read that saw it
    Column("position", Integer, nullable=False),
    Column("outcome", String(20), nullable=False),    # routed | quarantined
    Column("target", String(20)),
    *key_columns("message_id", "idempotency_key"),
    Column("quarantine_id", Integer),
    Column("stage", String(20)),                      # quarantined: mapping | routing
    Column("record_key", String(KEY_WIDTHS["source_key"])),  # the width of a source_key: it is one
    Column("ledger_event", String(32)),               # ledger_events.event_id
)
Index("ix_flowback_records_run", flowback_records.c.batch_id, flowback_records.c.run_id, flowback_records.c.outcome)
Index("ix_flowback_records_message", flowback_records.c.message_id)
Index("ix_flowback_records_key", flowback_records.c.record_key)

# One row per routed message that reached an end state at its district sink:
# delivered | held (the sink already held its idempotency key: delivered before, or the sink said so) | parked.
flowback_deliveries = Table(
    "flowback_deliveries",
    metadata,
    key_column("message_id", primary_key=True),
    key_column("idempotency_key", nullable=False),
    batch_id_column(nullable=False),
    run_id_column(),
    Column("target", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("sink", String(300)),
    Column("receipt", Text),
    timestamp_column(),
)
# (ix_flowback_deliveries_key, on idempotency_key and status, was dropped by revision 0006: no query used it.)
Index("ix_flowback_deliveries_batch", flowback_deliveries.c.batch_id, flowback_deliveries.c.run_id,
      flowback_deliveries.c.target)
