"""Flowback records name their key and the ledger event of their outcome (flowback_records.record_key,
ledger_event), so that one `routed_chunk` event per thousand routed records still traces every record; and
ix_flowback_deliveries_key goes (nothing asks flowback_deliveries by idempotency key: the shared deliveries table is
the idempotency store), one index less to write per delivered record."""
import sqlalchemy as sa

from tongban.store.migrations.frozen import add_columns, create_indexes, drop_columns, drop_indexes

revision = '0006'
down_revision = '0005'


def upgrade() -> None:
    add_columns('flowback_records',
    sa.Column('record_key', sa.String(length=200), nullable=True),
    sa.Column('ledger_event', sa.String(length=32), nullable=True),
    indexes={'ix_flowback_records_key': ['record_key']})
    drop_indexes('flowback_deliveries', 'ix_flowback_deliveries_key')


def downgrade() -> None:
    create_indexes('flowback_deliveries', {'ix_flowback_deliveries_key': ['idempotency_key', 'status']})
    drop_columns('flowback_records', 'record_key', 'ledger_event', indexes=('ix_flowback_records_key',))
