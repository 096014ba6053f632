"""The console's users, on the shared metadata (created by migration 0005, tongban/store/migrations)."""
from __future__ import annotations

from sqlalchemy import Column, String, Table

from tongban.store.tables import timestamp_columns, metadata

console_users = Table(
    "console_users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("role", String(20), nullable=False),            # auditor | operator
    Column("password_hash", String(300), nullable=False),  # scrypt$n$r$p$salt$hash (base64), never the password
    *timestamp_columns("created_at", "updated_at"),
)

TABLES = [console_users]
