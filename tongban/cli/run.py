"""Top-level commands that run the pipeline: ingest, worker, trace."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tongban.cli.failures import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliFailure, explain
from tongban.cli.output import JSON_OPTION, emit_json, interactive, notice, progress


def _context():
    """Settings, store, bus and platform client, opened the same way by every command."""
    from tongban.bus import open_bus
    from tongban.platform.client import PlatformClient
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    store = open_store(settings.db_url)
    return settings, store, lambda: open_bus(settings, announce=notice), lambda: PlatformClient(settings)


def mapping_files_or_fail(paths: list[Path] | None) -> list[Path]:
    """The files named, else every *.yaml in TONGBAN_MAPPINGS; none at all is a failure saying where it looked."""
    from tongban.settings import load

    if paths:
        return list(paths)
    directory = load().mappings_dir
    found = sorted(directory.glob("*.yaml"))
    if not found:
        raise CliFailure(EXIT_FAILED, f"no mapping files (*.yaml) in {directory}",
                         "write one there, set TONGBAN_MAPPINGS to the folder that holds them, or name the files")
    return found


def _counting(fetch, bar):
    """The adapter's fetch, advancing the progress bar per record (the adapter itself is untouched)."""
    def counted(watermark):
        for raw in fetch(watermark):
            bar.advance()
            yield raw
    return counted


def _ingest_one(path: Path, settings, store, bus, platform, show_bar: bool) -> dict:
    from tongban.bus.topology import cases_work
    from tongban.pipeline.ingest import Ingest
    from tongban.mapping import load_mapping

    outcome: dict = {"system": None, "mapping_file": str(path), "fetched": 0, "events_published": 0,
                     "quarantined": 0, "error": None}
    try:
        mapping = load_mapping(path)
    except Exception as exc:  # noqa: BLE001 - one file's failure never stops the others
        failure = explain(exc)
        outcome.update(error=failure.line().removeprefix("error: "), exit_code=failure.code or EXIT_USAGE)
        return outcome
    outcome["system"] = mapping.system
    try:
        with progress(f"{mapping.system}: fetching", None, enabled=show_bar) as bar:
            ingest = Ingest(mapping, store=store, bus=bus, platform=platform, work=cases_work(settings.queue_prefix))
            try:
                ingest.adapter.fetch = _counting(ingest.adapter.fetch, bar)
                report = ingest.run()
            finally:
                ingest.close()
    except Exception as exc:  # noqa: BLE001 - named, masked, and the others go on; nothing half-done stays
        failure = explain(exc)
        outcome.update(error=f"{mapping.system}: ingest failed: {failure.line().removeprefix('error: ')}; the "
                       f"watermark did not move, the next run fetches the same records again", exit_code=failure.code)
        return outcome
    outcome.update({k: v for k, v in report.as_dict().items() if k != "system"})
    return outcome


def ingest(files: list[Path] = typer.Argument(None, help="mapping files (default: every *.yaml in TONGBAN_MAPPINGS)"),
           as_json: bool = JSON_OPTION) -> None:
    """Fetch each legacy system since its watermark, map, validate and publish its case events. A failing system
    is named and the others go on; exit 1 (or the failure's code) when any failed, 1 when there is nothing to read."""
    paths = mapping_files_or_fail(files)
    settings, store, bus_factory, platform_factory = _context()
    bus, platform = bus_factory(), platform_factory()
    outcomes = []
    try:
        for path in paths:
            outcome = _ingest_one(path, settings, store, bus, platform, interactive(as_json))
            outcomes.append(outcome)
            if outcome["error"]:  # on stderr with --json too: the JSON has it, the operator sees it
                typer.echo(f"error: {outcome['error']}", err=True)
            elif not as_json:
                typer.echo(f"{outcome['system']}: fetched {outcome['fetched']}, unchanged {outcome['unchanged']}, "
                           f"cases changed {outcome['cases_changed']}, events published {outcome['events_published']}, "
                           f"quarantined {outcome['quarantined']}")
    finally:
        bus.close()
        platform.close()
    if as_json:
        emit_json(outcomes[0] if len(outcomes) == 1 else outcomes)
    codes = {o.get("exit_code", EXIT_FAILED) for o in outcomes if o["error"]}
    raise typer.Exit(EXIT_OK if not codes else codes.pop() if len(codes) == 1 else EXIT_FAILED)


def worker(idle_exit: Optional[float] = typer.Option(None, help="exit after the queues are empty this many seconds"),
           prefetch: int = typer.Option(50, help="messages in flight per worker"),
           lanes: int = typer.Option(8, help="handler threads (one case always keeps to one lane)"),
           max_attempts: int = typer.Option(8, help="delivery attempts before a message is parked"),
           metrics_port: Optional[int] = typer.Option(None, help="serve Prometheus /metrics on this port"),
           as_json: bool = JSON_OPTION) -> None:
    """Consume case events and deliver them to 渝快办 (SIGTERM: finish the message in hand, then exit)."""
    import dataclasses
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
        from tongban.delivery.metrics import Metrics

        metrics = Metrics.serve(metrics_port, store=store)
    policy = RedeliveryPolicy(max_attempts=max_attempts)
    w = DeliveryWorker(store=store, bus=bus_factory(), platform=platform_factory(), metrics=metrics, policy=policy,
                       work=cases_work(settings.queue_prefix))
    stats = w.run(stop=stop, idle_exit=idle_exit, prefetch=prefetch, lanes=lanes)
    if as_json:
        data = dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else dict(vars(stats))
        data.pop("latencies", None)  # one float per delivery: not a summary
        emit_json(data)
        return
    typer.echo(f"worker stopped: delivered {stats.delivered}, duplicates {stats.duplicates}, retried {stats.retried}, "
               f"parked {stats.parked}, rejected {stats.rejected}")


def trace(ident: str = typer.Argument(..., help="a 办件编号, message id, idempotency key or legacy case key"),
          as_json: bool = typer.Option(False, "--json", help="print the events as JSON")) -> None:
    """Print the ledger timeline of a message or case."""
    from tongban.audit.views import print_trace
    from tongban.flowback.trace import trace as trace_events  # the ledger's lineage + each flowback record's routing

    _settings, store, *_ = _context()
    from tongban.bundle.views import trace_header

    bundle = trace_header(store, ident, _settings.mappings_dir)  # a bundle application: it and its members first
    events = trace_events(store, ident)
    if as_json:
        if events:
            emit_json({"bundle": bundle, "events": events} if bundle else events)
    else:
        if bundle:
            typer.echo(bundle["text"])
        if print_trace(store, ident, events=events):
            return
    if not events:
        raise CliFailure(EXIT_FAILED, f"nothing in the ledger for {ident}",
                         "give a 办件编号, message id, idempotency key or legacy case key")


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(worker)
    app.command()(trace)
