"""The web console's users (tongban console user add): console_users, scrypt hashes only."""
import sqlalchemy as sa

from tongban.store.migrations.frozen import create_table, drop_table, timestamps

revision = '0005'
down_revision = '0004'


def upgrade() -> None:
    create_table('console_users',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('password_hash', sa.String(length=300), nullable=False),
    *timestamps('created_at', 'updated_at'),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    drop_table('console_users')
