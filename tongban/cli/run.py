"""Top-level commands: ingest, worker, trace, status, quarantine, parked."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _context():
    """Settings, store, bus and platform client, opened the same way by every command."""
    from tongban.bus import open_bus
    from tongban.platform_client import PlatformClient
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    store = open_store(settings.db_url)
    return settings, store, lambda: open_bus(settings), lambda: PlatformClient(settings)


def _mapping_files(paths: list[Path]) -> list[Path]:
    from tongban.settings import load

    if paths:
        return paths
    return sorted(load().mappings_dir.glob("*.yaml"))


def ingest(files: list[Path] = typer.Argument(None, help="mapping files (default: every file in mappings/)")) -> None:
    """Fetch each legacy system since its watermark, map, validate and publish its case events."""
    from rich.console import Console

    from adapters.base import SourceError
    from tongban.bus import BusError
    from tongban.bus.topology import cases_work
    from tongban.codes import mask_text
    from tongban.ingest import run_ingest
    from tongban.mapping import MappingFileError, load_mapping
    from tongban.platform_client import PlatformRejected, PlatformTransient

    console = Console()
    settings, store, bus_factory, platform_factory = _context()
    bus, platform = bus_factory(), platform_factory()
    failed = False
    for path in _mapping_files(files or []):
        try:
            mapping = load_mapping(path)
        except MappingFileError as exc:
            console.print(f"[red]mapping error[/red] {exc}")
            failed = True
            continue
        try:
            report = run_ingest(mapping, store=store, bus=bus, platform=platform,
                                work=cases_work(settings.queue_prefix))
        except (SourceError, PlatformTransient, PlatformRejected, BusError) as exc:
            # One system's failure does not stop the others; nothing half-done stays behind.
            console.print(f"[red]{mapping.system}: ingest failed[/red]: {mask_text(str(exc))} — the watermark did not "
                          f"move; the next run fetches the same records again")
            failed = True
            continue
        console.print(f"{mapping.system}: fetched {report.fetched}, unchanged {report.unchanged}, "
                      f"cases changed {report.cases_changed}, events published {report.events_published}, "
                      f"quarantined {report.quarantined}")
    bus.close()
    raise typer.Exit(1 if failed else 0)


def worker(idle_exit: Optional[float] = typer.Option(None, help="exit after the queues are empty this many seconds"),
           prefetch: int = typer.Option(50, help="messages in flight per worker"),
           lanes: int = typer.Option(8, help="handler threads (one case always keeps to one lane)"),
           max_attempts: int = typer.Option(8, help="delivery attempts before a message is parked"),
           metrics_port: Optional[int] = typer.Option(None, help="serve Prometheus /metrics on this port")) -> None:
    """Consume case events and deliver them to 渝快办 (SIGTERM: finish the message in hand, then exit)."""
    import signal
    import threading

    from tongban.bus.topology import cases_work
    from tongban.delivery.retry import RedeliveryPolicy
    from tongban.delivery.worker import DeliveryWorker

    settings, store, bus_factory, platform_factory = _context()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    metrics = None
    if metrics_port is not None:
        from tongban.metrics import Metrics

        metrics = Metrics.serve(metrics_port, store=store)
    policy = RedeliveryPolicy(max_attempts=max_attempts)
    w = DeliveryWorker(store=store, bus=bus_factory(), platform=platform_factory(), metrics=metrics, policy=policy,
                       work=cases_work(settings.queue_prefix))
    stats = w.run(stop=stop, idle_exit=idle_exit, prefetch=prefetch, lanes=lanes)
    typer.echo(f"worker stopped: delivered {stats.delivered}, duplicates {stats.duplicates}, retried {stats.retried}, "
               f"parked {stats.parked}, rejected {stats.rejected}")


def trace(ident: str = typer.Argument(..., help="a 办件编号, message id, idempotency key or legacy case key"),
          as_json: bool = typer.Option(False, "--json", help="print the events as JSON")) -> None:
    """Print the ledger timeline of a message or case."""
    from tongban.report import print_trace

    _settings, store, *_ = _context()
    if not print_trace(store, ident, as_json=as_json):
        typer.echo(f"nothing in the ledger for {ident}", err=True)
        raise typer.Exit(1)


def status() -> None:
    """Queue depths, parked and quarantined counts, ledger size."""
    from tongban.report import print_status

    from tongban.bus.topology import cases_work

    settings, store, bus_factory, _ = _context()
    print_status(store, bus_factory(), cases_work(settings.queue_prefix))


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(worker)
    app.command()(trace)
    app.command()(status)
    from tongban.cli import operators

    app.add_typer(operators.quarantine_app, name="quarantine", help="Records that broke a rule: list, show, replay.")
    app.add_typer(operators.parked_app, name="parked", help="Deliveries that kept failing: list, show, replay.")
