"""The signed ledger checkpoints (tree heads), on the shared metadata. The Alembic revision is the lead's to add;
until then `ensure_tables` creates the table on first use."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text

from tongban.store.tables import metadata

checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("size", BigInteger, nullable=False),        # events covered (the ledger's first `size` events by seq)
    Column("root", String(64), nullable=False),        # RFC 6962 tree head, hex
    Column("last_seq", BigInteger, nullable=False),    # seq of the last covered event (0: empty ledger)
    Column("jws", Text, nullable=False),               # the signed tree head, verbatim (compact JWS, ES256)
)


def ensure_tables(store) -> None:
    checkpoints.create(store.engine, checkfirst=True)
