"""`tongban flowback …`: national data flowback (数据回流) — route ministry batches to the districts, deliver,
recover a batch, and print the per-batch reconciliation (docs/flowback.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tongban.cli.context import open_configured_store

app = typer.Typer(no_args_is_help=True)

PREFIX_HELP = "exchange/queue prefix of the flowback topology (default: <TONGBAN_QUEUE_PREFIX>.flowback)"
SOURCE_HELP = "ministry source file (mappings/flowback/sources/*.yaml)"


def _source(path: Path):
    from tongban.mapping import MappingFileError
    from tongban.flowback import load_flowback_mapping

    try:
        return load_flowback_mapping(path)
    except MappingFileError as exc:
        typer.echo(f"source file error: {exc}", err=True)
        raise typer.Exit(2) from None


def _notice(message: str) -> None:
    typer.echo(message, err=True)  # stdout stays the command's output (JSON with --json)


def _echo_json(data) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@app.command()
def report(batch: Optional[str] = typer.Argument(None, metavar="[BATCH]", help="batch id (default: every batch)"),
           as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """Print the reconciliation of a batch (or of every batch): received = duplicates + routed + quarantined,
    routed = delivered + held + parked + pending. Exits 1 unless every batch balances."""
    from tongban.flowback.reconcile import reconcile, render

    results = reconcile(open_configured_store(), batch)
    if batch is not None and not results:
        if as_json:
            _echo_json({"error": f"no flowback batch {batch!r} has been received", "batches": []})
        else:
            typer.echo(f"no flowback batch {batch!r} has been received", err=True)
        raise typer.Exit(1)
    balanced = all(r.balanced for r in results)  # no batch yet: nothing is missing
    if as_json:
        _echo_json({"balanced": balanced, "batches": [r.to_dict() for r in results]})
    else:
        if not results:
            typer.echo("no flowback batches received yet")
        for r in results:
            typer.echo(render(r))
    raise typer.Exit(0 if balanced else 1)


def _print_run(result, as_json: bool) -> bool:
    """Print what a run did; True when something failed."""
    failed = bool(result.unreadable)
    for b in result.batches:
        # Not done, or done with nothing routed (every record quarantined: a run that delivers nothing has failed).
        failed |= bool(b.error) or (not b.duplicate and not b.requeued and b.quarantined > 0
                                    and b.routed + b.already_routed == 0)
    if as_json:
        _echo_json(result.to_dict())
        return failed
    for problem in result.unreadable:
        typer.echo(f"unreadable: {problem}", err=True)
    for b in result.batches:
        if b.duplicate:
            typer.echo(f"{b.batch_id}: already done — nothing routed" + (f" ({b.error})" if b.error else ""))
            continue
        if b.requeued:
            typer.echo(f"{b.batch_id}: {b.requeued} quarantined records mapped again: routed {b.routed} to "
                       f"{len(b.per_target)} queues, quarantined {b.quarantined}")
            continue
        if not b.error and b.routed + b.already_routed == 0 and b.quarantined:
            typer.echo(f"{b.batch_id}: {b.records_in} records read, every one quarantined — nothing to deliver: "
                       f"does the source file fit this batch? (`tongban quarantine list --system {result.source}`, "
                       f"then `tongban flowback retry {b.batch_id} SOURCE`)", err=True)
            continue
        line = (f"{b.batch_id}: {b.records_in} records read, {b.duplicates} exact duplicates, routed {b.routed}"
                + (f" (+{b.already_routed} routed before)" if b.already_routed else "")
                + f" to {len(b.per_target)} queues, quarantined {b.quarantined}")
        typer.echo(line + (f" — NOT DONE: {b.error}" if b.error else " — done"), err=bool(b.error))
        if b.accounting:  # every record read has one outcome (read = routed + … + quarantined), or says which not
            typer.echo(f"  {b.accounting}" + ("" if b.accounted else " — NOT ACCOUNTED FOR"), err=not b.accounted)
    return failed


@app.command()
def ingest(source: Path = typer.Argument(..., help=SOURCE_HELP),
           prefix: Optional[str] = typer.Option(None, help=PREFIX_HELP),
           as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """Read the source's waiting batches and route their records onto the district queues (delivery is
    `deliver`). Exits 1 when a batch is not done (it stays in the source) or could not be read."""
    from tongban.bus import open_bus
    from tongban.flowback.run import ingest_source

    from adapters.base import SourceError

    mapping = _source(source)
    bus = open_bus(announce=_notice)
    try:
        result = ingest_source(mapping, store=open_configured_store(), bus=bus, prefix=prefix)
    except SourceError as exc:  # the ministry's service or drop folder is away: nothing was read
        typer.echo(f"{exc}; run again later", err=True)
        raise typer.Exit(1) from None
    finally:
        bus.close()
    failed = _print_run(result, as_json)
    if not as_json and not result.batches and not result.unreadable:
        typer.echo(f"{mapping.system}: no new batches")
    raise typer.Exit(1 if failed else 0)


@app.command()
def deliver(source: Optional[Path] = typer.Argument(None, help=SOURCE_HELP + "; its `flowback.sinks` are used"),
            sinks: Optional[Path] = typer.Option(None, help="district sink config instead of a source file's "
                                                            "(default: <mappings>/flowback/district-sinks.yaml)"),
            prefix: Optional[str] = typer.Option(None, help=PREFIX_HELP),
            idle_exit: float = typer.Option(1.0, help="return once every district queue was empty this long"),
            workers: int = typer.Option(8, help="district queues consumed in parallel"),
            as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """Deliver the routed records to the district sinks until every district queue is empty."""
    from dataclasses import asdict

    from tongban.bus import open_bus
    from tongban.flowback.config import FlowbackConfigError, load_sinks_config
    from tongban.flowback.worker import DistrictDeliverer
    from tongban.settings import load

    if source is not None and sinks is None:
        sink_config = _source(source).sinks
    else:
        path = sinks or load().mappings_dir / "flowback" / "district-sinks.yaml"
        try:
            sink_config = load_sinks_config(path)
        except FlowbackConfigError as exc:
            typer.echo(f"cannot load sink config: {exc}", err=True)
            raise typer.Exit(2) from None
    bus = open_bus(announce=_notice)
    worker = DistrictDeliverer(store=open_configured_store(), bus=bus, sinks=sink_config, prefix=prefix)
    try:
        stats = worker.run(idle_exit=idle_exit, workers=workers)
    finally:
        worker.close()
        bus.close()
    if as_json:
        _echo_json(asdict(stats))
    else:
        typer.echo(f"delivered {stats.delivered}, held by sinks already {stats.held}, retried {stats.retried}, "
                   f"parked {stats.parked}")
    raise typer.Exit(1 if stats.parked else 0)


@app.command()
def retry(batch: str = typer.Argument(..., help="batch id"),
          source: Path = typer.Argument(..., help=SOURCE_HELP + " (fixed)"),
          prefix: Optional[str] = typer.Option(None, help=PREFIX_HELP),
          no_deliver: bool = typer.Option(False, "--no-deliver", help="route only; `deliver` later"),
          as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """Run a batch again after it or its source file was fixed: a batch not done is read again from the source,
    its records quarantined at stage mapping or routing are mapped and routed again; nothing that was routed is
    routed twice. Prints the batch's reconciliation; exits 1 unless it balances."""
    from adapters.base import SourceError
    from tongban.bus import open_bus
    from tongban.flowback.reconcile import render
    from tongban.flowback.run import retry_batch

    mapping = _source(source)
    bus = open_bus(announce=_notice)
    try:
        result = retry_batch(mapping, batch, store=open_configured_store(), bus=bus, prefix=prefix, deliver=not no_deliver)
    except LookupError as exc:
        typer.echo(str(exc.args[0]), err=True)
        raise typer.Exit(1) from None
    except SourceError as exc:
        typer.echo(f"{exc}; run again later", err=True)
        raise typer.Exit(1) from None
    finally:
        bus.close()
    if as_json:
        _echo_json(result.to_dict())
    else:
        _print_run(result, False)
        for r in result.reconciliations:
            typer.echo(render(r))
    raise typer.Exit(0 if result.reconciliations and all(r.balanced for r in result.reconciliations) else 1)


def read_sample(mapping, sample: Path) -> list | None:
    """A sample file read the way the source reads its batches (the files adapter's readers with the source's
    encoding, XML record tag, CSV settings), or None when the sample is not a file format they read."""
    from adapters.formats import ReadOptions, reader_for

    fmt = {".csv": "csv", ".txt": "csv", ".xml": "xml", ".jsonl": "jsonl", ".xlsx": "xlsx"}.get(sample.suffix.lower())
    if fmt is None:
        return None
    settings = mapping.source
    options = ReadOptions(encoding=settings.get("encoding", "utf-8"), csv=dict(settings.get("csv") or {}),
                          xml_record_tag=settings.get("record_tag") or settings.get("xml_record_tag") or "Record", sheet=settings.get("sheet"))
    return [data if error is None else {"_unreadable": f"{where}: {error}"}
            for where, data, error in reader_for(fmt)(sample, options)]


def check_sample(mapping, records: list, file: Path, show: int) -> int:
    """`tongban mapping check SOURCE.yaml --sample FILE` for a flowback source file: each sample record mapped onto
    the national record and routed. Mapping errors are printed with the file's line, the record, the field and the
    rule; records the router would quarantine (other provinces, no region …) are listed apart. Returns 1 when a
    record does not map, or when no record would reach a district (the file does not fit the sample), else 0."""
    from tongban import codes
    from tongban.flowback.routing import Reject, Router
    from tongban.mapping import MappingError

    router = Router(mapping.routing)
    errors = rejected = shown = 0
    for index, record in enumerate(records, start=1):
        if "_unreadable" in record:
            errors += 1
            typer.echo(f"{file}: record #{index} cannot be read: {record['_unreadable']}")
            continue
        try:
            national = mapping.map_record(record)
        except MappingError as exc:
            errors += 1
            line = f"{file}:{exc.line}: " if exc.line else f"{file}: "
            typer.echo(codes.mask_text(f"{line}record {exc.record_key or f'#{index}'}: field {exc.field}: {exc.rule}"))
            continue
        decision = router.route(national)
        if isinstance(decision, Reject):
            rejected += 1
            typer.echo(codes.mask_text(f"routing: record {national.get('ROWGUID') or f'#{index}'} would be quarantined: "
                                       f"{decision.field}: {decision.rule}"))
            continue
        if shown < show:
            shown += 1
            typer.echo(codes.mask_text(json.dumps({"record": national, "route": decision.detail()},
                                                  ensure_ascii=False, indent=2)))
    routed = len(records) - errors - rejected
    typer.echo(f"{len(records)} records: {routed} mapped and routed, {rejected} quarantined by routing, "
               f"{errors} with errors")
    if records and routed == 0 and not errors:
        typer.echo(f"error: no sample record would reach a district — does {file} fit this batch format?")
        return 1
    return 1 if errors else 0
