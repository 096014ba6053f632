"""The initial schema: every table tongban's code used when schema migrations were introduced (issue 14).

A database made by an older tongban (tables created at run time by `create_all` and `ensure_tables`) is adopted,
not failed: a table or index that exists already is left as it is, and the two columns flowback_batches gained
after its first version (`problem`, `unreadable`) are added where missing — what the old `ensure_tables` did.
Every later revision assumes this revision's schema exactly.
"""
from functools import partial

import sqlalchemy as sa
from alembic import op

from tongban.store.migrations.frozen import (add_missing_columns, create_table, id_column, key, keys, operator,
                                            timestamp, timestamps)

revision = '0001'
down_revision = None

# A table or index an older tongban made already is kept as it is.
_adopt_table = partial(create_table, adopt=True)


def _batch_id() -> sa.Column:
    return sa.Column('batch_id', sa.String(length=100), nullable=False)


def _run_id() -> sa.Column:
    return sa.Column('run_id', sa.String(length=32), nullable=False)


def _entry() -> list[sa.Column]:
    """The number and the instant of an entry in a list an operator works through (outbox, parked, quarantine)."""
    return [id_column(), timestamp()]


def _route() -> list[sa.Column]:
    """Where the outbox relay publishes a message."""
    return [sa.Column(name, sa.String(length=200), nullable=False) for name in ('exchange', 'queue', 'routing_key')]

def upgrade() -> None:
    """Every table the code used when migrations were introduced."""
    _adopt_table('case_numbers',
    *keys('system', 'source_key', 'case_number', nullable=False),
    sa.Column('item_code', sa.String(length=40), nullable=True),
    timestamp('assigned_at'),
    sa.PrimaryKeyConstraint('system', 'source_key'),
    sa.UniqueConstraint('case_number')
    )
    _adopt_table('case_snapshots',
    *keys('system', 'source_key', nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.Column('last_sequence', sa.Integer(), nullable=False),
    timestamp('updated_at'),
    sa.PrimaryKeyConstraint('system', 'source_key')
    )
    _adopt_table('catalog_versions',
    id_column(),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    timestamp('published_at', nullable=True),
    timestamp('synced_at'),
    sa.Column('item_count', sa.Integer(), nullable=False),
    sa.Column('items', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    indexes={'ix_catalog_version': ['version']})

    _adopt_table('deliveries',
    *keys('idempotency_key', 'message_id', nullable=False),
    key('case_number', nullable=True),
    sa.Column('sequence', sa.Integer(), nullable=True),
    sa.Column('receipt', sa.Text(), nullable=False),
    timestamp('delivered_at'),
    sa.PrimaryKeyConstraint('idempotency_key'),
    indexes={'ix_deliveries_case': ['case_number', 'sequence']})

    _adopt_table('flowback_batches',
    _batch_id(),
    sa.Column('source', sa.String(length=100), nullable=False),
    _run_id(),
    sa.Column('origin', sa.String(length=300), nullable=True),
    timestamp('received_at'),
    timestamp('finished_at', nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('manifest_count', sa.Integer(), nullable=False),
    sa.Column('manifest_digest', sa.String(length=64), nullable=False),
    sa.Column('records_in', sa.Integer(), nullable=False),
    sa.Column('unreadable', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=True),
    sa.Column('times_received', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('batch_id')
    )
    _adopt_table('flowback_deliveries',
    *keys('message_id', 'idempotency_key', nullable=False),
    _batch_id(),
    _run_id(),
    sa.Column('target', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('sink', sa.String(length=300), nullable=True),
    sa.Column('receipt', sa.Text(), nullable=True),
    timestamp(),
    sa.PrimaryKeyConstraint('message_id'),
    indexes={'ix_flowback_deliveries_batch': ['batch_id', 'run_id', 'target'],
             'ix_flowback_deliveries_key': ['idempotency_key', 'status']})

    _adopt_table('flowback_records',
    _batch_id(),
    sa.Column('digest', sa.String(length=64), nullable=False),
    _run_id(),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('target', sa.String(length=20), nullable=True),
    *keys('message_id', 'idempotency_key', nullable=True),
    sa.Column('quarantine_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(length=20), nullable=True),
    sa.PrimaryKeyConstraint('batch_id', 'digest'),
    indexes={'ix_flowback_records_message': ['message_id'],
             'ix_flowback_records_run': ['batch_id', 'run_id', 'outcome']})

    _adopt_table('identity_accounts',
    key('system', nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('pii_hash', sa.String(length=64), nullable=False),
    timestamp('first_seen'),
    sa.PrimaryKeyConstraint('system', 'account_id', 'pii_hash'),
    indexes={'ix_identity_accounts_hash': ['system', 'pii_hash']})

    _adopt_table('identity_conflicts',
    id_column(),
    sa.Column('conflict_key', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    key('system', nullable=False),
    sa.Column('account_ids', sa.Text(), nullable=True),
    sa.Column('pii_hashes', sa.Text(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    timestamp(),
    operator('decided_by', nullable=True),
    timestamp('decided_at', nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('conflict_key')
    )
    _adopt_table('identity_users',
    sa.Column('pii_hash', sa.String(length=64), nullable=False),
    sa.Column('id_type', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('masked', sa.String(length=64), nullable=False),
    sa.Column('cipher', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    *timestamps('first_seen', 'updated_at'),
    sa.PrimaryKeyConstraint('pii_hash')
    )
    _adopt_table('identity_waiting',
    *keys('system', 'source_key', nullable=False),
    sa.Column('pii_hash', sa.String(length=64), nullable=False),
    sa.Column('conflict_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=40), nullable=False),
    timestamp(),
    sa.PrimaryKeyConstraint('system', 'source_key')
    )
    _adopt_table('ledger_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=32), nullable=False),
    timestamp(),
    sa.Column('hop', sa.String(length=32), nullable=False),
    *keys('system', 'message_id', 'idempotency_key', 'case_number', 'source_key', nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('event_id'),
    indexes={'ix_ledger_case': ['case_number'], 'ix_ledger_idem': ['idempotency_key'],
             'ix_ledger_message': ['message_id'], 'ix_ledger_source': ['system', 'source_key']})

    _adopt_table('local_queue',
    id_column(),
    sa.Column('queue', sa.String(length=100), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    timestamp('available_at'),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    timestamp('claimed_at', nullable=True),
    sa.Column('claims', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    indexes={'ix_local_queue': ['queue', 'claimed_by', 'id']})

    _adopt_table('outbox',
    *_entry(),
    key('system', nullable=True),
    key('message_id', nullable=False),
    *_route(),
    sa.Column('body', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    indexes={'ix_outbox_system': ['system', 'id']})

    _adopt_table('parked',
    *_entry(),
    *keys('message_id', 'idempotency_key', nullable=False),
    *keys('system', 'case_number', nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('envelope', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    indexes={'ix_parked_case': ['case_number', 'status']})

    _adopt_table('quarantine',
    *_entry(),
    key('system', nullable=False),
    key('source_key', nullable=True),
    sa.Column('position', sa.String(length=300), nullable=True),
    sa.Column('field', sa.String(length=100), nullable=True),
    sa.Column('rule', sa.Text(), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('record', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    indexes={'ix_quarantine_key': ['system', 'source_key']})

    _adopt_table('replay_marks',
    id_column(),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    timestamp('marked_at'),
    operator('marked_by', nullable=True),
    timestamp('replayed_at', nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    _adopt_table('watermarks',
    key('system', nullable=False),
    sa.Column('value', sa.String(length=100), nullable=False),
    timestamp('updated_at'),
    sa.PrimaryKeyConstraint('system')
    )
    add_missing_columns('flowback_batches',  # what flowback_batches gained after its first version
                        sa.Column('problem', sa.Text(), nullable=True),
                        sa.Column('unreadable', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    """Drop every table (their indexes go with them): an empty database."""
    op.drop_table('watermarks')
    op.drop_table('replay_marks')
    op.drop_table('quarantine')
    op.drop_table('parked')
    op.drop_table('outbox')
    op.drop_table('local_queue')
    op.drop_table('ledger_events')
    op.drop_table('identity_waiting')
    op.drop_table('identity_users')
    op.drop_table('identity_conflicts')
    op.drop_table('identity_accounts')
    op.drop_table('flowback_records')
    op.drop_table('flowback_deliveries')
    op.drop_table('flowback_batches')
    op.drop_table('deliveries')
    op.drop_table('catalog_versions')
    op.drop_table('case_snapshots')
    op.drop_table('case_numbers')
