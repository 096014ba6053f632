"""The signed ledger checkpoints (tree heads), on the shared metadata (created by migration 0002)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text

from tongban.store.tables import timestamp_column, metadata

checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    timestamp_column(),
    Column("size", BigInteger, nullable=False),        # events covered (the ledger's first `size` events by seq)
    Column("root", String(64), nullable=False),        # RFC 6962 tree head, hex
    Column("last_seq", BigInteger, nullable=False),    # seq of the last covered event (0: empty ledger)
    Column("jws", Text, nullable=False),               # the signed tree head, verbatim (compact JWS, ES256)
)

