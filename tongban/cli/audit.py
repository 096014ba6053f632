"""`tongban audit verify`: recompute the ledger's hash chain and cross-check deliveries against publications."""
from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def verify(as_json: bool = typer.Option(False, "--json", help="print the result as one JSON object")) -> None:
    """Recompute the hash chain and check every delivery has a publication; exit 1 naming the first problem."""
    from tongban import ledger
    from tongban.settings import load
    from tongban.store import open_store

    store = open_store(load().db_url)
    chain = ledger.verify(store)
    deliveries = ledger.unpublished_deliveries(store)
    if as_json:
        typer.echo(json.dumps({
            "ok": chain.ok and deliveries.ok, "events": chain.events, "chain_ok": chain.ok,
            "broken_seq": chain.broken_seq, "broken_event_id": chain.broken_event_id, "reason": chain.reason,
            "deliveries": deliveries.deliveries, "unpublished_deliveries": deliveries.unpublished_count,
            "unpublished": deliveries.unpublished}, ensure_ascii=False))
        raise typer.Exit(0 if chain.ok and deliveries.ok else 1)
    if not chain.ok:
        typer.echo(f"ledger BROKEN at event #{chain.broken_seq} (id {chain.broken_event_id}): {chain.reason}", err=True)
    if not deliveries.ok:
        first = deliveries.unpublished[0]
        typer.echo(f"ledger INCOMPLETE: {deliveries.unpublished_count} delivery events name a message with no "
                   f"\"published\" event (no provenance); first: event #{first['seq']} ({first['hop']}) of message "
                   f"{first['message_id']} from {first['system'] or '-'}", err=True)
    if not (chain.ok and deliveries.ok):
        raise typer.Exit(1)
    typer.echo(f"ledger intact: {chain.events} events, hash chain verified; "
               f"{deliveries.deliveries} delivery events, each with its publication")
