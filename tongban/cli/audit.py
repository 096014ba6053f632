"""`tongban audit verify`: recompute the ledger's hash chain."""
from __future__ import annotations

import typer

from tongban.cli.failures import EXIT_FAILED
from tongban.cli.output import JSON_OPTION, emit_json, interactive, progress

app = typer.Typer(no_args_is_help=True)


@app.command()
def verify(as_json: bool = JSON_OPTION) -> None:
    """Recompute the hash chain; exit 1 naming the first broken event (a progress bar on a terminal)."""
    from dataclasses import asdict

    from sqlalchemy import func, select

    from tongban import ledger
    from tongban.settings import load
    from tongban.store import open_store
    from tongban.store.tables import ledger as ledger_table

    store = open_store(load().db_url)
    show_bar = interactive(as_json)
    total = None
    if show_bar:
        with store.read() as conn:
            total = conn.execute(select(func.count()).select_from(ledger_table)).scalar()
    with progress("verifying the ledger", total, enabled=show_bar) as bar:
        result = ledger.verify(store, progress=bar.advance)
    if as_json:
        emit_json(asdict(result))
    elif result.ok:
        typer.echo(f"ledger intact: {result.events} events, hash chain verified")
    if not result.ok:
        typer.echo(f"ledger BROKEN at event #{result.broken_seq} (id {result.broken_event_id}): {result.reason}", err=True)
        raise typer.Exit(EXIT_FAILED)
