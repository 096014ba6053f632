"""The console's users, on the shared metadata (the Alembic revision that creates it comes with the migrations)."""
from __future__ import annotations

from sqlalchemy import Column, String, Table

from tongban.store import Store
from tongban.store.tables import metadata

console_users = Table(
    "console_users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("role", String(20), nullable=False),            # auditor | operator
    Column("password_hash", String(300), nullable=False),  # scrypt$n$r$p$salt$hash (base64), never the password
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

TABLES = [console_users]
_created: set[int] = set()


def ensure_tables(store: Store) -> None:
    if id(store.engine) not in _created:
        metadata.create_all(store.engine, tables=TABLES)
        _created.add(id(store.engine))
