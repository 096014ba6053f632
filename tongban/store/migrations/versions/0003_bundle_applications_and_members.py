"""Bundled applications (一件事一次办, tongban/bundle): bundle_applications and bundle_members."""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'


def upgrade() -> None:
    op.create_table('bundle_applications',
    sa.Column('application_id', sa.String(length=64), nullable=False),
    sa.Column('bundle', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('result', sa.String(length=20), nullable=True),
    sa.Column('form', sa.Text(), nullable=False),
    sa.Column('received_at', sa.String(length=40), nullable=False),
    sa.Column('accepted_pushed_at', sa.String(length=40), nullable=True),
    sa.Column('concluded_at', sa.String(length=40), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('application_id')
    )
    with op.batch_alter_table('bundle_applications', schema=None) as batch_op:
        batch_op.create_index('ix_bundle_applications_state', ['state'], unique=False)

    op.create_table('bundle_members',
    sa.Column('application_id', sa.String(length=64), nullable=False),
    sa.Column('member', sa.String(length=40), nullable=False),
    sa.Column('system', sa.String(length=100), nullable=False),
    sa.Column('department', sa.String(length=100), nullable=False),
    sa.Column('item_code', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.Column('legacy_key', sa.String(length=200), nullable=True),
    sa.Column('case_number', sa.String(length=64), nullable=True),
    sa.Column('submitted_at', sa.String(length=40), nullable=True),
    sa.Column('due_at', sa.String(length=40), nullable=True),
    sa.Column('accepted_at', sa.String(length=40), nullable=True),
    sa.Column('concluded_at', sa.String(length=40), nullable=True),
    sa.Column('warned_at', sa.String(length=40), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('application_id', 'member')
    )
    with op.batch_alter_table('bundle_members', schema=None) as batch_op:
        batch_op.create_index('ix_bundle_members_system_key', ['system', 'legacy_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bundle_members', schema=None) as batch_op:
        batch_op.drop_index('ix_bundle_members_system_key')

    op.drop_table('bundle_members')
    with op.batch_alter_table('bundle_applications', schema=None) as batch_op:
        batch_op.drop_index('ix_bundle_applications_state')

    op.drop_table('bundle_applications')
