"""Bundled applications (一件事一次办, tongban/bundle): bundle_applications and bundle_members."""
import sqlalchemy as sa

from tongban.store.migrations.frozen import create_table, drop_table, key, timestamp, timestamps

revision = '0003'
down_revision = '0002'


def _application_id() -> sa.Column:
    return sa.Column('application_id', sa.String(length=64), nullable=False)


def upgrade() -> None:
    create_table('bundle_applications',
    _application_id(),
    sa.Column('bundle', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('result', sa.String(length=20), nullable=True),
    sa.Column('form', sa.Text(), nullable=False),
    timestamp('received_at'),
    *timestamps('accepted_pushed_at', 'concluded_at', nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('application_id'),
    indexes={'ix_bundle_applications_state': ['state']})
    create_table('bundle_members',
    _application_id(),
    sa.Column('member', sa.String(length=40), nullable=False),
    key('system', nullable=False),
    sa.Column('department', sa.String(length=100), nullable=False),
    sa.Column('item_code', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.Column('legacy_key', sa.String(length=200), nullable=True),
    key('case_number', nullable=True),
    *timestamps('submitted_at', 'due_at', 'accepted_at', 'concluded_at', 'warned_at', nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('application_id', 'member'),
    indexes={'ix_bundle_members_system_key': ['system', 'legacy_key']})


def downgrade() -> None:
    drop_table('bundle_members', 'ix_bundle_members_system_key')
    drop_table('bundle_applications', 'ix_bundle_applications_state')
