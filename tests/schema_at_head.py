"""Databases at the schema's head for the tests, cheaply: the suite opens hundreds of stores.

The migrations are rendered once per process as SQL (Alembic's offline mode, the same revisions `tongban db
upgrade` runs) for each dialect, and a new database gets those statements in one transaction: a few milliseconds
instead of a migration run per store. tests/integration/test_migrations.py proves the real upgrade gives the same schema.

- `at_head(url)`: bring an empty database at `url` to head (a database with tables is left alone);
- `home_at_head(home)`: the same for the SQLite database under a TONGBAN_HOME a subprocess will use;
- conftest's autouse fixture applies `at_head` to every store a test opens in this process (mark a test
  `schema_unprepared` to meet the runtime's refusal instead).
"""
from __future__ import annotations

import io
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

_statements: dict[str, list[str]] = {}
_URLS = {"sqlite": "sqlite:///head.db", "postgresql": "postgresql+psycopg://render@localhost/render"}


def statements(dialect: str) -> list[str]:
    if dialect not in _statements:
        from alembic import command

        from tongban.store import schema

        config = schema.alembic_config(_URLS[dialect])
        config.output_buffer = buffer = io.StringIO()
        command.upgrade(config, "heads", sql=True)
        parts = [part.strip() for part in buffer.getvalue().split(";\n")]
        parts = ["\n".join(line for line in part.splitlines() if not line.startswith("--")).strip() for part in parts]
        _statements[dialect] = [part for part in parts if part and part.upper() not in ("BEGIN", "COMMIT")]
    return _statements[dialect]


def apply_if_empty(engine: Engine) -> None:
    if inspect(engine).get_table_names():
        return  # made by someone else (an older tongban, a test's own set-up): the runtime judges it
    with engine.begin() as conn:
        for statement in statements(engine.dialect.name):
            conn.exec_driver_sql(statement)


def at_head(url: str) -> str:
    from tongban.store.db import make_engine

    engine = make_engine(url)
    try:
        apply_if_empty(engine)
    finally:
        engine.dispose()
    return url


def home_at_head(home: Path) -> Path:
    """The SQLite database a `tongban` subprocess with TONGBAN_HOME=home opens, at head (home made 0700)."""
    at_head(f"sqlite:///{Path(home).resolve() / 'tongban.db'}")
    return home
