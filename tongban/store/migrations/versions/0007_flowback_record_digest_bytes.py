"""flowback_records.digest becomes the first 16 bytes of the record's SHA-256 (a binary column) instead of its 64 hex
characters: the primary key (batch, digest) takes every routed record at a random place, and its entries are half
as long, so each chunk's commit writes fewer of its pages. Rows already there are converted (their first 32 hex
digits, decoded), so a batch read again after the upgrade still finds what it routed before.

Downgrade turns the bytes back into 32 hex digits: a tongban before 0007 hashes 64, so it would not recognise those
records and would route a batch read again after a downgrade once more (the districts' idempotency keys still hold
each record once)."""
import sqlalchemy as sa
from alembic import context, op

from tongban.store.migrations.frozen import KEY_WIDTHS

revision = '0007'
down_revision = '0006'

_INDEXES = {'ix_flowback_records_message': ['message_id'], 'ix_flowback_records_run': ['batch_id', 'run_id', 'outcome'],
            'ix_flowback_records_key': ['record_key']}


def _records_0006(digest_type) -> sa.Table:
    """flowback_records as revision 0006 left it (with `digest_type`): what SQLite's batch mode copies from."""
    table = sa.Table(
        'flowback_records', sa.MetaData(),
        sa.Column('batch_id', sa.String(length=100), nullable=False),
        sa.Column('digest', digest_type, nullable=False),
        sa.Column('run_id', sa.String(length=32), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('target', sa.String(length=20), nullable=True),
        sa.Column('message_id', sa.String(length=KEY_WIDTHS['message_id']), nullable=True),
        sa.Column('idempotency_key', sa.String(length=KEY_WIDTHS['idempotency_key']), nullable=True),
        sa.Column('quarantine_id', sa.Integer(), nullable=True),
        sa.Column('stage', sa.String(length=20), nullable=True),
        sa.Column('record_key', sa.String(length=200), nullable=True),
        sa.Column('ledger_event', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('batch_id', 'digest'),
    )
    for name, columns in _INDEXES.items():
        sa.Index(name, *(table.c[c] for c in columns))
    return table


def _sqlite_function(name: str, function) -> None:
    """A Python function the next statements can call (SQLite before 3.41 has no unhex)."""
    op.get_bind().connection.driver_connection.create_function(name, 1, function, deterministic=True)


def _unhex16(value):
    text = value.decode('ascii') if isinstance(value, bytes) else value
    return bytes.fromhex(text[:32])


def _hex(value):
    return value.hex() if isinstance(value, bytes) else value


def _alter(old, new) -> None:
    with op.batch_alter_table('flowback_records', copy_from=_records_0006(old), recreate='always') as batch:
        batch.alter_column('digest', type_=new, existing_type=old, existing_nullable=False)


def upgrade() -> None:
    if op.get_context().dialect.name == 'postgresql':
        op.alter_column('flowback_records', 'digest', type_=sa.LargeBinary(), existing_type=sa.String(length=64),
                        existing_nullable=False, postgresql_using="substring(decode(digest, 'hex') from 1 for 16)")
        return
    _alter(sa.String(length=64), sa.LargeBinary())
    if not context.is_offline_mode():  # offline SQL is for an empty database: no row to convert
        _sqlite_function('tongban_unhex16', _unhex16)
        op.execute("UPDATE flowback_records SET digest = tongban_unhex16(digest) WHERE length(digest) = 64")


def downgrade() -> None:
    if op.get_context().dialect.name == 'postgresql':
        op.alter_column('flowback_records', 'digest', type_=sa.String(length=64), existing_type=sa.LargeBinary(),
                        existing_nullable=False, postgresql_using="encode(digest, 'hex')")
        return
    if not context.is_offline_mode():
        _sqlite_function('tongban_hex', _hex)
        op.execute("UPDATE flowback_records SET digest = tongban_hex(digest)")
    _alter(sa.LargeBinary(), sa.String(length=64))
