"""The identity tables, on the shared metadata (created by the schema migrations, tongban/store/migrations).

No table holds an identity number in clear: rows are keyed by the HMAC of the number (`pii_hash`,
key TONGBAN_PII_KEY) and keep the number only Fernet-encrypted (`cipher`, needed to ask the platform
again when an unknown number is retried) and masked (`masked`, for operators' eyes).
"""
from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from tongban.store.tables import (case_key_columns, id_column, key_column, metadata, operator_column, timestamp_column,
                                  timestamp_columns)

# One row per identity number seen: what the unified user service (统一用户体系) said about it.
identity_users = Table(
    "identity_users",
    metadata,
    Column("pii_hash", String(64), primary_key=True),
    Column("id_type", String(3), nullable=False),
    Column("status", String(20), nullable=False),   # resolved | unknown | ambiguous | invalid
    Column("user_id", String(64)),
    Column("masked", String(64), nullable=False),
    Column("cipher", Text),
    Column("reason", Text),
    *timestamp_columns("first_seen", "updated_at"),
)

# Which legacy account (its own account id) was seen with which identity number, per system.
identity_accounts = Table(
    "identity_accounts",
    metadata,
    key_column("system", primary_key=True),
    Column("account_id", String(200), primary_key=True),
    Column("pii_hash", String(64), primary_key=True),
    timestamp_column("first_seen"),
)
Index("ix_identity_accounts_hash", identity_accounts.c.system, identity_accounts.c.pii_hash)

# Conflicts are flagged, not guessed: open until an operator accepts them (or the source is fixed).
identity_conflicts = Table(
    "identity_conflicts",
    metadata,
    id_column(),
    Column("conflict_key", String(64), nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    key_column("system", nullable=False),
    Column("account_ids", Text),                    # JSON list
    Column("pii_hashes", Text, nullable=False),     # JSON list
    Column("detail", Text, nullable=False),         # masked, human-readable
    Column("status", String(20), nullable=False),   # open | accepted
    timestamp_column(),
    operator_column("decided_by"),
    timestamp_column("decided_at", nullable=True),
)

# Cases quarantined because their applicant could not be resolved, waiting for a retry or a decision.
identity_waiting = Table(
    "identity_waiting",
    metadata,
    *case_key_columns(),
    Column("pii_hash", String(64), nullable=False),
    Column("conflict_id", Integer),
    Column("reason", String(40), nullable=False),
    timestamp_column(),
)
