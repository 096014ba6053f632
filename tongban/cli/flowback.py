"""`tongban flowback …`: national data flowback (数据回流) — route ministry batches to the districts, deliver,
and print the per-batch reconciliation."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)

PREFIX_HELP = "exchange/queue prefix of the flowback topology"


def _store():
    from tongban.settings import load
    from tongban.store import open_store

    return open_store(load().db_url)


@app.command()
def report(batch: Optional[str] = typer.Argument(None, metavar="[BATCH]", help="batch id (default: every batch)"),
           as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """Print the reconciliation manifest of a batch (or of every batch); exit 1 on any gap."""
    from tongban.flowback.reconcile import reconcile, render

    results = reconcile(_store(), batch)
    if batch is not None and not results:
        typer.echo(f"no flowback batch {batch!r} has been received", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        if not results:
            typer.echo("no flowback batches received yet")
        for r in results:
            typer.echo(render(r))
    raise typer.Exit(0 if all(r.balanced for r in results) else 1)


@app.command()
def ingest(config: Path = typer.Argument(..., help="ministry source config (mappings/flowback/sources/*.yaml)"),
           prefix: Optional[str] = typer.Option(None, help=PREFIX_HELP)) -> None:
    """Fetch the source's new batches and route their records onto the district queues (delivery is `deliver`)."""
    from tongban.bus import open_bus
    from tongban.flowback.config import FlowbackConfigError, load_source_config
    from tongban.flowback.run import ingest_source

    try:
        source = load_source_config(config)
    except FlowbackConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2) from None
    bus = open_bus()
    try:
        result = ingest_source(source, store=_store(), bus=bus, prefix=prefix)
    finally:
        bus.close()
    failed = bool(result.unreadable)
    for problem in result.unreadable:
        typer.echo(f"unreadable: {problem}", err=True)
    for b in result.batches:
        if b.duplicate:
            typer.echo(f"{b.batch_id}: already received — nothing routed" + (f" ({b.error})" if b.error else ""))
        elif b.error:
            typer.echo(f"{b.batch_id}: {b.error}", err=True)
        else:
            typer.echo(f"{b.batch_id}: {b.records_in} records, routed {b.routed} to {len(b.per_target)} queues, "
                       f"quarantined {b.quarantined}, digest {'matches' if b.digest_ok else 'DOES NOT MATCH'} the manifest")
        failed |= bool(b.error) or (not b.duplicate and not b.digest_ok)
    if not result.batches and not result.unreadable:
        typer.echo(f"{source.source}: no new batches")
    raise typer.Exit(1 if failed else 0)


@app.command()
def deliver(sinks: Optional[Path] = typer.Option(None, help="district sink config (default: "
                                                               "<mappings>/flowback/district-sinks.yaml)"),
            prefix: str = typer.Option("tongban.flowback", help=PREFIX_HELP),
            idle_exit: float = typer.Option(1.0, help="return once every district queue was empty this long"),
            workers: int = typer.Option(8, help="district queues consumed in parallel")) -> None:
    """Deliver the routed records to the district sinks until every district queue is empty."""
    from tongban.bus import open_bus
    from tongban.flowback.config import FlowbackConfigError, load_sinks_config
    from tongban.flowback.worker import DistrictDeliverer
    from tongban.settings import load

    path = sinks or load().mappings_dir / "flowback" / "district-sinks.yaml"
    try:
        sink_config = load_sinks_config(path)
    except FlowbackConfigError as exc:
        typer.echo(f"cannot load sink config: {exc}", err=True)
        raise typer.Exit(2) from None
    bus = open_bus()
    worker = DistrictDeliverer(store=_store(), bus=bus, sinks=sink_config, prefix=prefix)
    try:
        stats = worker.run(idle_exit=idle_exit, workers=workers)
    finally:
        worker.close()
        bus.close()
    typer.echo(f"delivered {stats.delivered}, duplicates {stats.duplicates}, retried {stats.retried}, "
               f"parked {stats.parked}")
