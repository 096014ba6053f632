"""Opening the store and running write transactions safely from several processes."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine

from tongban import settings as settings_module

from .files import private_sqlite_file
from .tables import metadata

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _sqlite_engine(url: str) -> Engine:
    # The file exists 0600 before SQLite opens it, so the database and its -wal/-shm/-journal are private.
    private_sqlite_file(url)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every SQLite test
        # Let SQLAlchemy's "begin" below emit BEGIN IMMEDIATE: writers then queue on the database lock
        # instead of failing with "database is locked" when two processes (ingest, worker) write at once.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Store:
    """A handle on the database. `write()` gives a transaction that is serialised against every other
    writer (needed by the ledger's hash chain), `read()` a plain connection."""

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = _sqlite_engine(url) if self.is_sqlite else create_engine(url, pool_pre_ping=True, pool_size=5)
        metadata.create_all(self.engine)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                # One chain, one writer at a time: a transaction-scoped advisory lock orders appends
                # across processes without locking readers out.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7351)")
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(url: str | None = None) -> Store:
    """The store for `url` (default: the settings' database), one engine per URL per process."""
    if url is None:
        url = settings_module.load().db_url
    with _engines_lock:
        store = _engines.get(url)
        if store is None:
            store = _engines[url] = Store(url)
        return store
