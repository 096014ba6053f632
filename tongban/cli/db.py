"""`tongban db upgrade|current`: the database's schema revision (Alembic migrations shipped in the package).

The runtime never creates tables: a new database, or one an older tongban made, is brought to the schema this
tongban needs by `tongban db upgrade` (idempotent; a database at head is left alone). `tongban db current` says
which revision the database is at and whether that is the head (exit 1 when it is not: the commands that use the
store would refuse it). The database is the settings' one: TONGBAN_DB_URL, else SQLite under TONGBAN_HOME.
"""
from __future__ import annotations

import typer

from tongban.cli.failures import EXIT_FAILED
from tongban.cli.output import JSON_OPTION, emit_json

app = typer.Typer(no_args_is_help=True)


def _state(url: str) -> dict:
    from tongban.store import schema
    from tongban.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            current = schema.current_revision(conn)
    finally:
        engine.dispose()
    heads = schema.heads()
    return {"database": schema.printable_url(url), "current": current, "head": ",".join(heads),
            "at_head": current is not None and tuple(current.split(",")) == heads,
            # a revision this tongban does not know: a newer tongban upgraded the database
            "ahead": current is not None and any(r not in schema.known_revisions() for r in current.split(","))}


@app.command()
def upgrade(as_json: bool = JSON_OPTION) -> None:
    """Migrate the database to the head revision (creates the tables of a new database)."""
    from tongban.settings import load
    from tongban.store import schema

    url = load().db_url
    before, after = schema.upgrade(url)
    result = {**_state(url), "before": before, "upgraded": before != after}
    if as_json:
        emit_json(result)
        return
    if result["upgraded"]:
        typer.echo(f"{result['database']}: upgraded from revision {before or 'none'} to {after} (head)")
    else:
        typer.echo(f"{result['database']}: already at revision {after} (head), nothing to do")


@app.command()
def current(as_json: bool = JSON_OPTION) -> None:
    """The database's revision and whether it is the head; exit 1 when it is not."""
    from tongban.settings import load

    result = _state(load().db_url)
    if as_json:
        emit_json(result)
    elif result["at_head"]:
        typer.echo(f"{result['database']}: revision {result['current']} (head)")
    elif result["ahead"]:
        typer.echo(f"{result['database']}: revision {result['current']}, which this tongban (head {result['head']}) "
                   f"does not know — a newer tongban upgraded it; run that release")
    else:
        typer.echo(f"{result['database']}: revision {result['current'] or 'none'}, head is {result['head']} — "
                   f"run `tongban db upgrade`")
    if not result["at_head"]:
        raise typer.Exit(EXIT_FAILED)
