"""Table definitions. Every table is small and has one job; the ledger is append-only."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# The identifiers that travel with every message have one width wherever a table keeps them.
KEY_WIDTHS = {"system": 100, "source_key": 200, "message_id": 64, "idempotency_key": 200, "case_number": 64}


def id_column() -> Column:
    """The surrogate key of a list an operator works through (quarantine, parked, outbox …): insertion order."""
    return Column("id", Integer, primary_key=True, autoincrement=True)


def timestamp_column(name: str = "at", *, nullable: bool = False) -> Column:
    """An instant, as ISO-8601 UTC text (the same on SQLite and PostgreSQL)."""
    return Column(name, String(40), nullable=nullable)


def key_column(name: str, **options) -> Column:
    """One of the message identifiers of KEY_WIDTHS (system, source_key, message_id, idempotency_key, case_number)."""
    return Column(name, String(KEY_WIDTHS[name]), **options)


def operator_column(name: str, **options) -> Column:
    """Who did something: an operator's name (marked_by, decided_by, announced_by)."""
    return Column(name, String(100), **options)


def timestamp_columns(*names: str, nullable: bool = False) -> list[Column]:
    """Several instants with the same nullability, in the order named."""
    return [timestamp_column(name, nullable=nullable) for name in names]


def key_columns(*names: str, **options) -> list[Column]:
    """Several message identifiers with the same options, in the order named."""
    return [key_column(name, **options) for name in names]


def case_key_columns() -> list[Column]:
    """system + source_key as the primary key: one row per case as its legacy system knows it."""
    return key_columns("system", "source_key", primary_key=True)


def entry_columns() -> list[Column]:
    """The number and the instant of an entry in a list an operator works through (quarantine, parked, outbox)."""
    return [id_column(), timestamp_column()]


# Append-only, hash-chained record of every hop of every message (auditors read this, never the logs).
ledger = Table(
    "ledger_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(32), nullable=False, unique=True),
    timestamp_column(),
    Column("hop", String(32), nullable=False),
    *key_columns("system", "message_id", "idempotency_key", "case_number", "source_key"),
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
    key_column("system", primary_key=True),
    Column("value", String(100), nullable=False),
    timestamp_column("updated_at"),
)

# legacy key ↔ 办件编号 (统一赋码): assigned once by the platform, never reassigned.
case_numbers = Table(
    "case_numbers",
    metadata,
    *case_key_columns(),
    key_column("case_number", nullable=False, unique=True),
    Column("item_code", String(40)),
    timestamp_column("assigned_at"),
)

# The last snapshot published per case, for change detection, and the last sequence number used.
case_snapshots = Table(
    "case_snapshots",
    metadata,
    *case_key_columns(),
    Column("digest", String(64), nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("last_sequence", Integer, nullable=False),
    timestamp_column("updated_at"),
)

# Delivered events by idempotency key, with the platform's receipt: the idempotent-consumer check.
deliveries = Table(
    "deliveries",
    metadata,
    key_column("idempotency_key", primary_key=True),
    key_column("message_id", nullable=False),
    key_column("case_number"),
    Column("sequence", Integer),
    Column("receipt", Text, nullable=False),
    timestamp_column("delivered_at"),
)
Index("ix_deliveries_case", deliveries.c.case_number, deliveries.c.sequence)

# Records that failed validation or were rejected by the platform: kept whole, with the rule, replayable.
quarantine = Table(
    "quarantine",
    metadata,
    *entry_columns(),
    key_column("system", nullable=False),
    key_column("source_key"),
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
    *entry_columns(),
    *key_columns("message_id", "idempotency_key", nullable=False),
    *key_columns("system", "case_number"),
    Column("reason", Text, nullable=False),
    Column("envelope", Text, nullable=False),
    Column("status", String(20), nullable=False, default="open"),
)

Index("ix_parked_case", parked.c.case_number, parked.c.status)

# The durable in-process bus for the embedded default (no RabbitMQ): survives process exits.
local_queue = Table(
    "local_queue",
    metadata,
    id_column(),
    Column("queue", String(100), nullable=False),
    Column("body", Text, nullable=False),
    timestamp_column("available_at"),
    Column("claimed_by", String(64)),
    timestamp_column("claimed_at", nullable=True),
    Column("claims", Integer, nullable=False, default=0),  # >0: a redelivery
)
Index("ix_local_queue", local_queue.c.queue, local_queue.c.claimed_by, local_queue.c.id)

# The transactional outbox: a message is written here in the same transaction as its "published" ledger event,
# then relayed to the bus (with confirms) and removed. A crash between the two is repaired by the next relay.
outbox = Table(
    "outbox",
    metadata,
    *entry_columns(),
    key_column("system"),
    key_column("message_id", nullable=False),
    Column("exchange", String(200), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("routing_key", String(200), nullable=False),
    Column("body", Text, nullable=False),  # the envelope, encrypted at rest like quarantine (it holds PII)
)
Index("ix_outbox_system", outbox.c.system, outbox.c.id)
