"""Announced maintenance windows (报备, tongban maintenance add): maintenance_windows."""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'


def upgrade() -> None:
    op.create_table('maintenance_windows',
    sa.Column('window_id', sa.String(length=32), nullable=False),
    sa.Column('system', sa.String(length=100), nullable=False),
    sa.Column('starts_at', sa.String(length=40), nullable=False),
    sa.Column('ends_at', sa.String(length=40), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('announced_by', sa.String(length=100), nullable=False),
    sa.Column('announced_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('window_id')
    )
    with op.batch_alter_table('maintenance_windows', schema=None) as batch_op:
        batch_op.create_index('ix_maintenance_system', ['system', 'ends_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('maintenance_windows', schema=None) as batch_op:
        batch_op.drop_index('ix_maintenance_system')

    op.drop_table('maintenance_windows')
