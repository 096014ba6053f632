"""The initial schema: every table tongban's code used when schema migrations were introduced (issue 14).

A database made by an older tongban (tables created at run time by `create_all` and `ensure_tables`) is adopted,
not failed: a table or index that exists already is left as it is, and the two columns flowback_batches gained
after its first version (`problem`, `unreadable`) are added where missing — what the old `ensure_tables` did.
Every later revision assumes this revision's schema exactly.
"""
import sqlalchemy as sa
from alembic import context, op

revision = '0001'
down_revision = None


# The columns the ledger-like tables share, one declaration each (frozen here: a revision never follows the model).
_KEY_WIDTHS = {'system': 100, 'source_key': 200, 'message_id': 64, 'idempotency_key': 200, 'case_number': 64}


def _id() -> sa.Column:
    return sa.Column('id', sa.Integer(), autoincrement=True, nullable=False)


def _timestamp(name: str = 'at', *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=40), nullable=nullable)


def _key(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.String(length=_KEY_WIDTHS[name]), nullable=nullable)


def _existing() -> sa.Inspector | None:
    """What the database has (None when writing SQL offline, for an empty database)."""
    return None if context.is_offline_mode() else sa.inspect(op.get_bind())


def _create_table(name: str, *elements) -> None:
    existing = _existing()
    if existing is None or not existing.has_table(name):
        op.create_table(name, *elements)


def _create_index(name: str, table: str, columns: list[str]) -> None:
    existing = _existing()
    if existing is None or name not in {index["name"] for index in existing.get_indexes(table)}:
        op.create_index(name, table, columns, unique=False)


def _add_late_flowback_columns() -> None:
    if _existing() is None:
        return
    present = {column["name"] for column in _existing().get_columns("flowback_batches")}
    missing = [column for column in (sa.Column("problem", sa.Text(), nullable=True),
                                     sa.Column("unreadable", sa.Integer(), nullable=False, server_default="0"))
               if column.name not in present]
    if missing:
        with op.batch_alter_table("flowback_batches") as batch:
            for column in missing:
                batch.add_column(column)


def upgrade() -> None:
    """Every table the code used when migrations were introduced."""
    _create_table('case_numbers',
    _key('system', nullable=False),
    _key('source_key', nullable=False),
    _key('case_number', nullable=False),
    sa.Column('item_code', sa.String(length=40), nullable=True),
    _timestamp('assigned_at'),
    sa.PrimaryKeyConstraint('system', 'source_key'),
    sa.UniqueConstraint('case_number')
    )
    _create_table('case_snapshots',
    _key('system', nullable=False),
    _key('source_key', nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.Column('last_sequence', sa.Integer(), nullable=False),
    _timestamp('updated_at'),
    sa.PrimaryKeyConstraint('system', 'source_key')
    )
    _create_table('catalog_versions',
    _id(),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    _timestamp('published_at', nullable=True),
    _timestamp('synced_at'),
    sa.Column('item_count', sa.Integer(), nullable=False),
    sa.Column('items', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _create_index('ix_catalog_version', 'catalog_versions', ['version'])

    _create_table('deliveries',
    _key('idempotency_key', nullable=False),
    _key('message_id', nullable=False),
    _key('case_number', nullable=True),
    sa.Column('sequence', sa.Integer(), nullable=True),
    sa.Column('receipt', sa.Text(), nullable=False),
    _timestamp('delivered_at'),
    sa.PrimaryKeyConstraint('idempotency_key')
    )
    _create_index('ix_deliveries_case', 'deliveries', ['case_number', 'sequence'])

    _create_table('flowback_batches',
    sa.Column('batch_id', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('origin', sa.String(length=300), nullable=True),
    _timestamp('received_at'),
    _timestamp('finished_at', nullable=True),
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
    _create_table('flowback_deliveries',
    _key('message_id', nullable=False),
    _key('idempotency_key', nullable=False),
    sa.Column('batch_id', sa.String(length=100), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('sink', sa.String(length=300), nullable=True),
    sa.Column('receipt', sa.Text(), nullable=True),
    _timestamp(),
    sa.PrimaryKeyConstraint('message_id')
    )
    _create_index('ix_flowback_deliveries_batch', 'flowback_deliveries', ['batch_id', 'run_id', 'target'])
    _create_index('ix_flowback_deliveries_key', 'flowback_deliveries', ['idempotency_key', 'status'])

    _create_table('flowback_records',
    sa.Column('batch_id', sa.String(length=100), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('target', sa.String(length=20), nullable=True),
    _key('message_id', nullable=True),
    _key('idempotency_key', nullable=True),
    sa.Column('quarantine_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(length=20), nullable=True),
    sa.PrimaryKeyConstraint('batch_id', 'digest')
    )
    _create_index('ix_flowback_records_message', 'flowback_records', ['message_id'])
    _create_index('ix_flowback_records_run', 'flowback_records', ['batch_id', 'run_id', 'outcome'])

    _create_table('identity_accounts',
    _key('system', nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('pii_hash', sa.String(length=64), nullable=False),
    _timestamp('first_seen'),
    sa.PrimaryKeyConstraint('system', 'account_id', 'pii_hash')
    )
    _create_index('ix_identity_accounts_hash', 'identity_accounts', ['system', 'pii_hash'])

    _create_table('identity_conflicts',
    _id(),
    sa.Column('conflict_key', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    _key('system', nullable=False),
    sa.Column('account_ids', sa.Text(), nullable=True),
    sa.Column('pii_hashes', sa.Text(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    _timestamp(),
    sa.Column('decided_by', sa.String(length=100), nullable=True),
    _timestamp('decided_at', nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('conflict_key')
    )
    _create_table('identity_users',
    sa.Column('pii_hash', sa.String(length=64), nullable=False),
    sa.Column('id_type', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('masked', sa.String(length=64), nullable=False),
    sa.Column('cipher', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    _timestamp('first_seen'),
    _timestamp('updated_at'),
    sa.PrimaryKeyConstraint('pii_hash')
    )
    _create_table('identity_waiting',
    _key('system', nullable=False),
    _key('source_key', nullable=False),
    sa.Column('pii_hash', sa.String(length=64), nullable=False),
    sa.Column('conflict_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=40), nullable=False),
    _timestamp(),
    sa.PrimaryKeyConstraint('system', 'source_key')
    )
    _create_table('ledger_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=32), nullable=False),
    _timestamp(),
    sa.Column('hop', sa.String(length=32), nullable=False),
    _key('system', nullable=True),
    _key('message_id', nullable=True),
    _key('idempotency_key', nullable=True),
    _key('case_number', nullable=True),
    _key('source_key', nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('event_id')
    )
    _create_index('ix_ledger_case', 'ledger_events', ['case_number'])
    _create_index('ix_ledger_idem', 'ledger_events', ['idempotency_key'])
    _create_index('ix_ledger_message', 'ledger_events', ['message_id'])
    _create_index('ix_ledger_source', 'ledger_events', ['system', 'source_key'])

    _create_table('local_queue',
    _id(),
    sa.Column('queue', sa.String(length=100), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    _timestamp('available_at'),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    _timestamp('claimed_at', nullable=True),
    sa.Column('claims', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _create_index('ix_local_queue', 'local_queue', ['queue', 'claimed_by', 'id'])

    _create_table('outbox',
    _id(),
    _timestamp(),
    _key('system', nullable=True),
    _key('message_id', nullable=False),
    sa.Column('exchange', sa.String(length=200), nullable=False),
    sa.Column('queue', sa.String(length=200), nullable=False),
    sa.Column('routing_key', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _create_index('ix_outbox_system', 'outbox', ['system', 'id'])

    _create_table('parked',
    _id(),
    _timestamp(),
    _key('message_id', nullable=False),
    _key('idempotency_key', nullable=False),
    _key('system', nullable=True),
    _key('case_number', nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('envelope', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _create_index('ix_parked_case', 'parked', ['case_number', 'status'])

    _create_table('quarantine',
    _id(),
    _timestamp(),
    _key('system', nullable=False),
    _key('source_key', nullable=True),
    sa.Column('position', sa.String(length=300), nullable=True),
    sa.Column('field', sa.String(length=100), nullable=True),
    sa.Column('rule', sa.Text(), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('record', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _create_index('ix_quarantine_key', 'quarantine', ['system', 'source_key'])

    _create_table('replay_marks',
    _id(),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    _timestamp('marked_at'),
    sa.Column('marked_by', sa.String(length=100), nullable=True),
    _timestamp('replayed_at', nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    _create_table('watermarks',
    _key('system', nullable=False),
    sa.Column('value', sa.String(length=100), nullable=False),
    _timestamp('updated_at'),
    sa.PrimaryKeyConstraint('system')
    )
    _add_late_flowback_columns()


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
