"""The database schema's version: Alembic migrations are the only way tables come into being or change.

The runtime never creates a table. `Store()` reads the database's revision when it opens and refuses a database
that is not at the head this tongban was built with (`SchemaNotCurrent`: the revision found, the one needed and the
fix, `tongban db upgrade`). `upgrade()` runs the migrations in `tongban/store/migrations/` (shipped inside the
package, so an installed tongban upgrades without a checkout or an alembic.ini). The sandbox (its own SQLite
database) upgrades itself through `prepare_sandbox()`; a production database is upgraded by its operator.

`TABLE_MODULES` lists every module that declares tables on the shared metadata (`tongban.store.tables.metadata`):
importing them all gives the whole model, which the migrations' env.py compares against (autogenerate) and the
migration test checks the head against. A module that adds tables is added here and gets a revision.
"""
from __future__ import annotations

import importlib
import re
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, MetaData, inspect
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
TABLE_MODULES = (
    "tongban.store.tables",
    "tongban.identity.tables",
    "tongban.catalog.tables",
    "tongban.flowback.tables",
    "tongban.operator.replay_marks",
    "tongban.audit.tables",
    "tongban.bundle.tables",
    "tongban.scheduling.maintenance_tables",
    "tongban.console.tables",
)


class SchemaNotCurrent(Exception):
    """The database is not at the revision this tongban needs (never upgraded, behind, or ahead of it)."""

    def __init__(self, url: str, current: str | None, heads: tuple[str, ...]):
        database = printable_url(url)
        self.database, self.current, self.heads = database, current, heads
        needed = ", ".join(heads)
        if current is None:
            found = "has no tongban schema (revision: none)"
        elif current in known_revisions():
            found = f"is at revision {current}"
        else:
            found = f"is at revision {current}, which this tongban does not know (a newer tongban upgraded it)"
        super().__init__(f"the database {database} {found}; this tongban needs revision {needed}")

    @property
    def ahead(self) -> bool:
        return self.current is not None and self.current not in known_revisions()


def printable_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL fails later with its own error
        return "(unparseable URL)"


def model() -> MetaData:
    """The shared metadata with every table module imported: the whole schema as the code declares it."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    from .tables import metadata

    return metadata


def alembic_config(url: str | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.attributes["tongban_url"] = url
    return config


@lru_cache(maxsize=1)
def _revisions() -> tuple[frozenset[str], tuple[str, ...]]:
    """(every revision, the heads), read from the revision files' `revision` / `down_revision` lines without
    importing Alembic: opening a store costs one query, not Alembic's start-up (tests/integration/test_migrations.py checks that
    this reading agrees with Alembic's own)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found = _REVISION.search(text)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN_REVISION.search(text)
        parents.update(_QUOTED.findall(down.group(1)) if down else ())
    return frozenset(revisions), tuple(sorted(revisions - parents))


_REVISION = re.compile(r"^revision\b[^=]*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=]*=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


def heads() -> tuple[str, ...]:
    """The head revision(s) of the migrations shipped with this tongban."""
    return _revisions()[1]


def known_revisions() -> frozenset[str]:
    return _revisions()[0]


def current_revision(conn: Connection) -> str | None:
    """The database's revision (None: no tongban schema yet), read from Alembic's version table."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    revisions = sorted(conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars())
    return ",".join(revisions) if revisions else None


def require_current(engine: Engine, url: str) -> None:
    """Raise SchemaNotCurrent unless the database is at head (one query)."""
    with engine.connect() as conn:
        current = current_revision(conn)
    if current is None or tuple(current.split(",")) != heads():
        raise SchemaNotCurrent(url, current, heads())


def upgrade(url: str, revision: str = "heads") -> tuple[str | None, str | None]:
    """Run the migrations up to `revision` on the database at `url`; returns (revision before, revision after).
    Cheap when the database is at head already (one query, no migration machinery)."""
    from alembic import command

    from .db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            before = current_revision(conn)
        if revision == "heads" and before is not None and tuple(before.split(",")) == heads():
            return before, before
        if before is not None and any(rev not in known_revisions() for rev in before.split(",")):
            raise SchemaNotCurrent(url, before, heads())  # a newer tongban's revision: nothing here can go on from it
        config = alembic_config(url)
        config.attributes["tongban_engine"] = engine
        command.upgrade(config, revision)
        with engine.connect() as conn:
            return before, current_revision(conn)
    finally:
        engine.dispose()


def prepare_sandbox(settings) -> None:
    """The sandbox upgrades its own database (a newcomer's first run needs no `tongban db upgrade`);
    outside the sandbox this does nothing: an operator upgrades a production database."""
    if settings.is_sandbox:
        upgrade(settings.db_url)


def migrated(url: str) -> str:
    """`url`, its database upgraded to head: `Store(migrated(url))` for a scratch database (benchmarks, kits)."""
    upgrade(url)
    return url
