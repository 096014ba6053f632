"""Opening the store and running write transactions safely from several processes."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine

from tongban import settings as settings_module

from .files import private_sqlite_file

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


_BEFORE_COMMIT = "tongban.before_commit"


def before_commit(conn: Connection, key: str, flush: Callable[[Connection, list], None]) -> list | None:
    """A list that lives until the end of this write transaction, when `flush(conn, items)` runs in it once, before
    the commit: the writers of one group commit add their rows to it and one statement inserts them all. None when
    `conn` is not a `Store.write` transaction (nothing would flush: the caller writes at once instead)."""
    pending = conn.info.get(_BEFORE_COMMIT)
    if pending is None:
        return None
    if key not in pending:
        pending[key] = (flush, [])
    return pending[key][1]


def make_engine(url: str) -> Engine:
    """The engine tongban uses for `url` (SQLite: private file, WAL, writers queue; PostgreSQL: a small pool)."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=5)


class Store:
    """A handle on the database, which must be at the schema's head revision (`tongban db upgrade`): opening
    one that is not raises `schema.SchemaNotCurrent` naming the revision found and the one needed.

    `write()` gives a transaction, `read()` a plain connection. Writers are not serialised here: SQLite has one
    writer at a time anyway (BEGIN IMMEDIATE), and on PostgreSQL only the ledger's appends need to take turns
    (its hash chain has one head), which `tongban.audit.ledger.append` arranges itself."""

    def __init__(self, url: str):
        from .schema import require_current

        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = make_engine(url)
        try:
            require_current(self.engine, url)
        except BaseException:
            self.engine.dispose()
            raise

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; what its writers left for its end (`before_commit`) runs in it, then it commits."""
        with self.engine.begin() as conn:
            conn.info[_BEFORE_COMMIT] = {}
            try:
                yield conn
                while conn.info[_BEFORE_COMMIT]:
                    _key, (flush, items) = conn.info[_BEFORE_COMMIT].popitem()
                    flush(conn, items)
            finally:
                conn.info.pop(_BEFORE_COMMIT, None)  # conn.info outlives the transaction (the pooled connection's)

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


def insert_rows(conn, table, columns: Sequence[str], rows: list[tuple]) -> None:
    """INSERT many rows of plain values (text, integers, null) in `columns` order, handed to the driver's
    executemany as they are: SQLAlchemy's per-row parameter processing cost more than SQLite's insert itself
    (flowback writes a row per record). A driver of another parameter style goes through SQLAlchemy."""
    if not rows:
        return
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if mark is None:
        conn.execute(table.insert(), [dict(zip(columns, row)) for row in rows])
        return
    quote = conn.dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join([mark] * len(columns))})")
    conn.exec_driver_sql(sql, rows)
