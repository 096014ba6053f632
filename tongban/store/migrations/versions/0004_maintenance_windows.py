"""Announced maintenance windows (报备, tongban maintenance add): maintenance_windows."""
import sqlalchemy as sa

from tongban.store.migrations.frozen import create_table, drop_table, key, operator, timestamp, timestamps

revision = '0004'
down_revision = '0003'


def upgrade() -> None:
    create_table('maintenance_windows',
    sa.Column('window_id', sa.String(length=32), nullable=False),
    key('system', nullable=False),
    *timestamps('starts_at', 'ends_at'),
    sa.Column('reason', sa.Text(), nullable=False),
    operator('announced_by', nullable=False),
    timestamp('announced_at'),
    sa.PrimaryKeyConstraint('window_id'),
    indexes={'ix_maintenance_system': ['system', 'ends_at']})


def downgrade() -> None:
    drop_table('maintenance_windows', 'ix_maintenance_system')
