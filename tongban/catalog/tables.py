"""The catalogue table, on the shared metadata: every version of the unified item catalogue that was synced."""
from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from tongban.store.tables import metadata

catalog_versions = Table(
    "catalog_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),   # sync order: the newest row is current
    Column("version", Integer, nullable=False),                    # the platform's version number
    Column("digest", String(64), nullable=False),
    Column("published_at", String(40)),
    Column("synced_at", String(40), nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("items", Text, nullable=False),                         # JSON list of items as published
)
Index("ix_catalog_version", catalog_versions.c.version)
