"""`tongban audit verify`: recompute the ledger's hash chain and cross-check deliveries against publications."""
from __future__ import annotations

import typer

from tongban.cli.failures import EXIT_FAILED
from tongban.cli.output import JSON_OPTION, emit_json, interactive, progress

app = typer.Typer(no_args_is_help=True)


@app.command()
def verify(as_json: bool = JSON_OPTION) -> None:
    """Recompute the hash chain and check every delivery has a publication; exit 1 naming the first problem
    (a progress bar on a terminal)."""
    from dataclasses import asdict

    from sqlalchemy import func, select

    from tongban.audit import ledger
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
        chain = ledger.verify(store, progress=bar.advance)
    deliveries = ledger.unpublished_deliveries(store)
    ok = chain.ok and deliveries.ok
    if as_json:
        emit_json({**asdict(chain), "ok": ok, "chain_ok": chain.ok, "deliveries": deliveries.deliveries,
                   "unpublished_deliveries": deliveries.unpublished_count, "unpublished": deliveries.unpublished})
        if not ok:
            raise typer.Exit(EXIT_FAILED)
        return
    if not chain.ok:
        typer.echo(f"ledger BROKEN at event #{chain.broken_seq} (id {chain.broken_event_id}): {chain.reason}", err=True)
    if not deliveries.ok:
        first = deliveries.unpublished[0]
        typer.echo(f"ledger INCOMPLETE: {deliveries.unpublished_count} delivery events name a message with no "
                   f"\"published\" event (no provenance); first: event #{first['seq']} ({first['hop']}) of message "
                   f"{first['message_id']} from {first['system'] or '-'}", err=True)
    if not ok:
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"ledger intact: {chain.events} events, hash chain verified; "
               f"{deliveries.deliveries} delivery events, each with its publication")
