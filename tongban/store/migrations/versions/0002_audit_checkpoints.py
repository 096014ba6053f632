"""Signed ledger checkpoints (audit_checkpoints): the tree heads `tongban audit checkpoint` signs (docs/audit.md)."""
import sqlalchemy as sa

from tongban.store.migrations.frozen import create_table, drop_table, timestamp

revision = '0002'
down_revision = '0001'


def upgrade() -> None:
    create_table('audit_checkpoints',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    timestamp(),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('root', sa.String(length=64), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('jws', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    drop_table('audit_checkpoints')
