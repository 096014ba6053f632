"""Table definitions. Every table is small and has one job; the ledger is append-only."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# Append-only, hash-chained record of every hop of every message (auditors read this, never the logs).
ledger = Table(
    "ledger_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(32), nullable=False, unique=True),
    Column("at", String(40), nullable=False),
    Column("hop", String(32), nullable=False),
    Column("system", String(100)),
    Column("message_id", String(64)),
    Column("idempotency_key", String(200)),
    Column("case_number", String(64)),
    Column("source_key", String(200)),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_ledger_message", ledger.c.message_id)
Index("ix_ledger_idem", ledger.c.idempotency_key)
Index("ix_ledger_case", ledger.c.case_number)
Index("ix_ledger_source", ledger.c.system, ledger.c.source_key)

# Where each source's incremental fetch resumes; advanced only after the broker confirmed the publish.
watermarks = Table(
    "watermarks",
    metadata,
    Column("system", String(100), primary_key=True),
    Column("value", String(100), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

# legacy key ↔ 办件编号 (统一赋码): assigned once by the platform, never reassigned.
case_numbers = Table(
    "case_numbers",
    metadata,
    Column("system", String(100), primary_key=True),
    Column("source_key", String(200), primary_key=True),
    Column("case_number", String(64), nullable=False, unique=True),
    Column("item_code", String(40)),
    Column("assigned_at", String(40), nullable=False),
)

# The last snapshot published per case, for change detection, and the last sequence number used.
case_snapshots = Table(
    "case_snapshots",
    metadata,
    Column("system", String(100), primary_key=True),
    Column("source_key", String(200), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("last_sequence", Integer, nullable=False),
    Column("updated_at", String(40), nullable=False),
)

# Delivered events by idempotency key, with the platform's receipt: the idempotent-consumer check.
deliveries = Table(
    "deliveries",
    metadata,
    Column("idempotency_key", String(200), primary_key=True),
    Column("message_id", String(64), nullable=False),
    Column("case_number", String(64)),
    Column("sequence", Integer),
    Column("receipt", Text, nullable=False),
    Column("delivered_at", String(40), nullable=False),
)
Index("ix_deliveries_case", deliveries.c.case_number, deliveries.c.sequence)

# Records that failed validation or were rejected by the platform: kept whole, with the rule, replayable.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("system", String(100), nullable=False),
    Column("source_key", String(200)),
    Column("position", String(300)),
    Column("field", String(100)),
    Column("rule", Text, nullable=False),
    Column("stage", String(32), nullable=False),  # mapping | validation | state | platform | routing
    Column("record", Text),  # the legacy record or the envelope, for replay
    Column("status", String(20), nullable=False, default="open"),  # open | replay | replayed
)

Index("ix_quarantine_key", quarantine.c.system, quarantine.c.source_key)

# Deliveries that kept failing: parked, visible, replayable (the dead-letter channel).
parked = Table(
    "parked",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("system", String(100)),
    Column("case_number", String(64)),
    Column("reason", Text, nullable=False),
    Column("envelope", Text, nullable=False),
    Column("status", String(20), nullable=False, default="open"),
)

Index("ix_parked_case", parked.c.case_number, parked.c.status)

# The durable in-process bus for the embedded default (no RabbitMQ): survives process exits.
local_queue = Table(
    "local_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("queue", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("available_at", String(40), nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", String(40)),
    Column("claims", Integer, nullable=False, default=0),  # >0: a redelivery
)
Index("ix_local_queue", local_queue.c.queue, local_queue.c.claimed_by, local_queue.c.id)

# The transactional outbox: a message is written here in the same transaction as its "published" ledger event,
# then relayed to the bus (with confirms) and removed. A crash between the two is repaired by the next relay.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("system", String(100)),
    Column("message_id", String(64), nullable=False),
    Column("exchange", String(200), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("routing_key", String(200), nullable=False),
    Column("body", Text, nullable=False),  # the envelope, encrypted at rest like quarantine (it holds PII)
)
Index("ix_outbox_system", outbox.c.system, outbox.c.id)
