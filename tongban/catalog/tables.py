"""The catalogue table, on the shared metadata: every version of the unified item catalogue that was synced."""
from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from tongban.store.tables import id_column, timestamp_column, metadata

catalog_versions = Table(
    "catalog_versions",
    metadata,
    id_column(),   # sync order: the newest row is current
    Column("version", Integer, nullable=False),                    # the platform's version number
    Column("digest", String(64), nullable=False),
    timestamp_column("published_at", nullable=True),
    timestamp_column("synced_at"),
    Column("item_count", Integer, nullable=False),
    Column("items", Text, nullable=False),                         # JSON list of items as published
)
Index("ix_catalog_version", catalog_versions.c.version)
