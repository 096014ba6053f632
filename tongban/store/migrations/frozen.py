"""What the revisions share: the columns many tables have, and creating or dropping a table with its indexes.

Frozen like the revisions themselves: a released revision's effect never changes, so nothing here follows the model
(tongban/store/tables.py has the model's own helpers). A helper a released revision uses is never changed; a
revision that needs something else gets a new helper beside it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

# The identifiers that travel with every message, one width wherever a table keeps them.
KEY_WIDTHS = {'system': 100, 'source_key': 200, 'message_id': 64, 'idempotency_key': 200, 'case_number': 64}


def id_column() -> sa.Column:
    """The surrogate key of a list an operator works through: insertion order."""
    return sa.Column('id', sa.Integer(), autoincrement=True, nullable=False)


def timestamp(name: str = 'at', *, nullable: bool = False) -> sa.Column:
    """An instant, as ISO-8601 UTC text."""
    return sa.Column(name, sa.String(length=40), nullable=nullable)


def timestamps(*names: str, nullable: bool = False) -> list[sa.Column]:
    return [timestamp(name, nullable=nullable) for name in names]


def key(name: str, *, nullable: bool) -> sa.Column:
    """One of the message identifiers of KEY_WIDTHS."""
    return sa.Column(name, sa.String(length=KEY_WIDTHS[name]), nullable=nullable)


def keys(*names: str, nullable: bool) -> list[sa.Column]:
    return [key(name, nullable=nullable) for name in names]


def operator(name: str, *, nullable: bool) -> sa.Column:
    """Who did something: an operator's name."""
    return sa.Column(name, sa.String(length=100), nullable=nullable)


def _existing() -> sa.Inspector | None:
    """What the database has (None when writing SQL offline, for an empty database)."""
    return None if context.is_offline_mode() else sa.inspect(op.get_bind())


def create_table(name: str, *elements, indexes: dict[str, list[str]] | None = None, adopt: bool = False) -> None:
    """Create a table and its indexes (name: columns; none unique). `adopt`: a table or index that exists already
    is left as it is (revision 0001 taking over a database an older tongban made)."""
    existing = _existing() if adopt else None
    present: set[str] = set()
    if existing is not None and existing.has_table(name):
        present = {index['name'] for index in existing.get_indexes(name)}
    else:
        op.create_table(name, *elements)
    for index, columns in (indexes or {}).items():
        if index not in present:
            op.create_index(index, name, columns, unique=False)


def drop_table(name: str, *indexes: str) -> None:
    """Drop a table, its named indexes first."""
    for index in indexes:
        op.drop_index(index, table_name=name)
    op.drop_table(name)


def add_missing_columns(table: str, *columns: sa.Column) -> None:
    """Add those of `columns` the table lacks (online only: offline SQL is for an empty database)."""
    existing = _existing()
    if existing is None:
        return
    present = {column['name'] for column in existing.get_columns(table)}
    missing = [column for column in columns if column.name not in present]
    if missing:
        with op.batch_alter_table(table) as batch:
            for column in missing:
                batch.add_column(column)


def add_columns(table: str, *columns: sa.Column, indexes: dict[str, list[str]] | None = None) -> None:
    """Add nullable columns to a table, then their indexes (name: columns; none unique). Plain ALTER TABLE ADD
    COLUMN, which SQLite and PostgreSQL both run in place, online and as offline SQL alike."""
    for column in columns:
        op.add_column(table, column)
    for index, names in (indexes or {}).items():
        op.create_index(index, table, names, unique=False)


def drop_columns(table: str, *columns: str, indexes: tuple[str, ...] = ()) -> None:
    """Undo `add_columns`: the indexes first, then the columns (batch mode: SQLite rebuilds the table)."""
    for index in indexes:
        op.drop_index(index, table_name=table)
    with op.batch_alter_table(table) as batch:
        for column in columns:
            batch.drop_column(column)


def create_indexes(table: str, indexes: dict[str, list[str]]) -> None:
    """Indexes on an existing table (name: columns; none unique)."""
    for index, names in indexes.items():
        op.create_index(index, table, names, unique=False)


def drop_indexes(table: str, *indexes: str) -> None:
    for index in indexes:
        op.drop_index(index, table_name=table)
