"""Alembic's environment for tongban's migrations: the model is every table module's tables on the shared
metadata (`tongban.store.schema.model()`), the database is the one tongban is configured for.

Run through `tongban db upgrade` (or `tongban.store.schema.upgrade(url)`); new revisions are written by
`python -m tongban.store.migrations.revision -m "what changed"` (see README.md beside this file). Migrations run in
one transaction on both back ends (SQLite has transactional DDL too), and on PostgreSQL under an advisory lock of
their own, so two processes upgrading at once (the Airflow scheduler and an operator) take turns.
"""
from __future__ import annotations

from alembic import context

from tongban.store.schema import model

MIGRATION_LOCK = 7352  # pg_advisory_xact_lock key held while migrating (the ledger's appends use 7351)

config = context.config
target_metadata = model()


def _url() -> str:
    url = config.attributes.get("tongban_url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from tongban.settings import load

    return load().db_url


def _options() -> dict:
    # Batch mode: SQLite alters a table by copying it; PostgreSQL runs the ALTERs directly.
    return {"target_metadata": target_metadata, "render_as_batch": True, "compare_type": True,
            "transactional_ddl": True}


def run_offline() -> None:
    url = _url()
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
                      **_options())
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    from tongban.store.db import make_engine

    engine = config.attributes.get("tongban_engine")
    owned = engine is None
    if owned:
        engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **_options())
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                context.run_migrations()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
