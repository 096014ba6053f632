"""`tongban outbox`: messages committed with their ledger events but not yet confirmed by the broker."""
from __future__ import annotations

import json
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="print the counts as JSON")) -> None:
    """Messages waiting in the outbox, by system (a run that died between its commit and the broker's confirm)."""
    from tongban.bus import outbox
    from tongban.settings import load
    from tongban.store import open_store

    waiting = outbox.pending(open_store(load().db_url))
    if as_json:
        typer.echo(json.dumps({"pending": waiting, "total": sum(waiting.values())}, ensure_ascii=False))
        return
    if not waiting:
        typer.echo("outbox empty: every published message is on the bus")
        return
    for system, n in sorted(waiting.items()):
        typer.echo(f"{system}: {n} messages waiting (the next ingest of the system, or `tongban outbox relay`, "
                   f"sends them)")


@app.command()
def relay(system: Optional[str] = typer.Option(None, help="only this system's messages"),
          as_json: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
    """Publish what waits in the outbox, with confirms; exit 1 if the bus refuses (the messages stay)."""
    from tongban.bus import outbox
    from tongban.bus import BusError, open_bus
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    store = open_store(settings.db_url)
    bus = open_bus(settings, announce=None if as_json else print)
    try:
        sent = outbox.relay(store, bus, system=system, declare=True)
    except BusError as exc:
        message = f"outbox relay failed: {exc}; the messages stay in the outbox — fix the bus and run it again"
        typer.echo(json.dumps({"sent": None, "error": str(exc)}) if as_json else message, err=not as_json)
        raise typer.Exit(1)
    finally:
        bus.close()
    typer.echo(json.dumps({"sent": sent, "error": None}) if as_json else f"relayed {sent} messages from the outbox")
