"""Opening the store and running write transactions safely from several processes."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.engine import Engine

from tongban import settings as settings_module

from .files import private_sqlite_file

T = TypeVar("T")
_stores: dict[str, "Store"] = {}  # open_store's, one per URL per process
_stores_lock = threading.Lock()


# A bulk writer's own connections (Store.bulk_writer): a 16 MB page cache instead of 2 MB (the B-trees a router
# inserts into stay in memory longer: a fixed cost, not one that grows with the batch), and the WAL moved into the
# database every 10,000 pages (~40 MB) instead of every 1,000: fewer checkpoints, and a page written by several
# commits in between (an index's last page, the ledger's) is copied once. Durability is the same: a commit is in
# the WAL either way, and the checkpoint only moves it.
_BULK_PRAGMAS = ("PRAGMA cache_size=-16000", "PRAGMA wal_autocheckpoint=10000")


def _sqlite_engine(url: str, pragmas: Sequence[str] = ()) -> Engine:
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
        for pragma in pragmas:
            cursor.execute(pragma)
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


def make_engine(url: str, *, bulk: bool = False, pre_ping: bool = True, pool_size: int = 5, max_overflow: int = 10,
                autocommit: bool = False) -> Engine:
    """The engine tongban uses for `url` (SQLite: private file, WAL, writers queue; PostgreSQL: a small pool).
    `bulk`: SQLite connections tuned for one process's bulk writes (_BULK_PRAGMAS). PostgreSQL: `pre_ping` pings a
    pooled connection before each use (a round trip; without it a connection the server dropped fails its first
    statement instead, and SQLAlchemy then discards every connection opened before it), `pool_size` and
    `max_overflow` size the pool, `autocommit` runs each statement as its own transaction."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, _BULK_PRAGMAS if bulk else ())
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=pool_size, max_overflow=max_overflow,
                         **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}))


class Store:
    """A handle on the database, which must be at the schema's head revision (`tongban db upgrade`): opening
    one that is not raises `schema.SchemaNotCurrent` naming the revision found and the one needed.

    `write()` gives a transaction, `read()` a plain connection. Writers are not serialised here: SQLite has one
    writer at a time anyway (BEGIN IMMEDIATE), and on PostgreSQL only the ledger's appends need to take turns
    (its hash chain has one head), which `tongban.audit.ledger.append` arranges itself."""

    def __init__(self, url: str, *, bulk: bool = False, pre_ping: bool = True, pool_size: int = 5,
                 max_overflow: int = 10):
        from .schema import require_current

        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = make_engine(url, bulk=bulk, pre_ping=pre_ping, pool_size=pool_size, max_overflow=max_overflow)
        self._lookups: Engine | None = None  # read_once's pool (PostgreSQL), made on first use
        self._unpinged: Store | None = None  # unpinged()'s, made on first use
        try:
            require_current(self.engine, url)
        except BaseException:
            self.engine.dispose()
            raise

    @contextlib.contextmanager
    def write(self, *, durable: bool = False) -> Iterator[Connection]:
        """A write transaction; what its writers left for its end (`before_commit`) runs in it, then it commits.

        `durable`: on SQLite the commit is synced to disk (synchronous=FULL for it; NORMAL, the default, leaves
        the last commits of a power cut to chance), and with it every commit before it — what to use before
        telling a source its batch is done. PostgreSQL syncs every commit anyway."""
        with self.engine.connect() as conn:
            full = durable and self.is_sqlite
            if full:
                _pragma(conn, "PRAGMA synchronous=FULL")
            try:
                with conn.begin():
                    conn.info[_BEFORE_COMMIT] = {}
                    try:
                        yield conn
                        while conn.info[_BEFORE_COMMIT]:
                            _key, (flush, items) = conn.info[_BEFORE_COMMIT].popitem()
                            flush(conn, items)
                    finally:
                        conn.info.pop(_BEFORE_COMMIT, None)  # conn.info outlives the transaction (the pooled one's)
            finally:
                if full and not conn.invalidated:
                    _pragma(conn, "PRAGMA synchronous=NORMAL")

    def bulk_writer(self) -> "Store":
        """A store on the same database for one process's bulk writer (the flowback router), with SQLite
        connections of its own tuned for it (_BULK_PRAGMAS), so that no other user of this store pays their
        memory. The caller disposes it when done. PostgreSQL, or an in-memory SQLite database: this store."""
        if not self.is_sqlite or ":memory:" in self.url or self.url.rstrip("/") in ("sqlite:", "sqlite+pysqlite:"):
            return self
        return Store(self.url, bulk=True)

    def unpinged(self) -> "Store":
        """A store on the same database whose PostgreSQL connections are not pinged before each use, for a writer
        that runs a failed transaction again by itself (the worker's committer, tongban.store.batcher): a
        connection the server dropped (a PostgreSQL restart) fails that transaction instead of the ping, SQLAlchemy
        discards every connection opened before it, and the writer's second try runs on a new one. The ping was a
        round trip per group commit. SQLite: this store."""
        if self.is_sqlite:
            return self
        with _stores_lock:
            if self._unpinged is None:  # one per store, disposed with it
                self._unpinged = Store(self.url, pre_ping=False, pool_size=2, max_overflow=4)
            return self._unpinged

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def read_once(self, fn: Callable[[Connection], T]) -> T:
        """`fn(conn)` for a read of ONE statement that is safe to run twice (the delivery worker's look-up before
        each push). On PostgreSQL it runs on a connection of a pool of its own, in autocommit and unpinged: one
        round trip instead of four (the pool's ping, BEGIN, the statement, the ROLLBACK on return), and — one
        statement being its own snapshot in READ COMMITTED — the same answer. A connection the server dropped (a
        PostgreSQL restart) fails that statement instead of the ping: SQLAlchemy then discards every connection of
        the pool opened before it, and the read runs once more on a new one. SQLite: `read()`."""
        if self.is_sqlite:
            with self.read() as conn:
                return fn(conn)
        engine = self._lookups
        if engine is None:
            with _stores_lock:
                if self._lookups is None:
                    # As many as the worker's lanes (16 at most): an overflow connection beyond the pool's size
                    # would be opened and closed for every read when all lanes read at once.
                    self._lookups = make_engine(self.url, autocommit=True, pre_ping=False, pool_size=16,
                                                max_overflow=8)
                engine = self._lookups
        for attempt in (1, 2):
            try:
                with engine.connect() as conn:
                    return fn(conn)
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()
        if self._lookups is not None:
            self._lookups.dispose()
        if self._unpinged is not None and self._unpinged is not self:
            self._unpinged.dispose()


def _pragma(conn: Connection, pragma: str) -> None:
    """A PRAGMA outside any transaction (SQLAlchemy's would begin one: synchronous cannot change inside one)."""
    conn.connection.dbapi_connection.execute(pragma)


def open_store(url: str | None = None) -> Store:
    """The store for `url` (default: the settings' database), one engine per URL per process."""
    if url is None:
        url = settings_module.load().db_url
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = Store(url)
        return store


def driver_mark(conn) -> str | None:
    """The driver's placeholder for statements handed to it as they are (`?`, `%s`), None for another style."""
    return {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)


def insert_rows(conn, table, columns: Sequence[str], rows: list[tuple]) -> None:
    """INSERT many rows of plain values (text, integers, null) in `columns` order, handed to the driver's
    executemany as they are: SQLAlchemy's per-row parameter processing cost more than SQLite's insert itself
    (flowback writes a row per record). A driver of another parameter style goes through SQLAlchemy."""
    if not rows:
        return
    mark = driver_mark(conn)
    if mark is None:
        conn.execute(table.insert(), [dict(zip(columns, row)) for row in rows])
        return
    quote = conn.dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join([mark] * len(columns))})")
    conn.exec_driver_sql(sql, rows)
