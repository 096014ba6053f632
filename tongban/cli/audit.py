"""`tongban audit verify`: recompute the ledger's hash chain."""
from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def verify() -> None:
    """Recompute the hash chain; exit 1 naming the first broken event."""
    from tongban import ledger
    from tongban.settings import load
    from tongban.store import open_store

    store = open_store(load().db_url)
    result = ledger.verify(store)
    if result.ok:
        typer.echo(f"ledger intact: {result.events} events, hash chain verified")
        return
    typer.echo(f"ledger BROKEN at event #{result.broken_seq} (id {result.broken_event_id}): {result.reason}", err=True)
    raise typer.Exit(1)
