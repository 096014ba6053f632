"""Flowback records name their key and the ledger event of their outcome (flowback_records.record_key,
ledger_event), so that one `routed_chunk` event per thousand routed records still traces every record."""
import sqlalchemy as sa

from tongban.store.migrations.frozen import add_columns, drop_columns

revision = '0006'
down_revision = '0005'


def upgrade() -> None:
    add_columns('flowback_records',
    sa.Column('record_key', sa.String(length=200), nullable=True),
    sa.Column('ledger_event', sa.String(length=32), nullable=True),
    indexes={'ix_flowback_records_key': ['record_key']})


def downgrade() -> None:
    drop_columns('flowback_records', 'record_key', 'ledger_event', indexes=('ix_flowback_records_key',))
