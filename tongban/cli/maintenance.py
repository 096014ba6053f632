"""`tongban maintenance add|list`: announced maintenance windows (报备, article 27).

A legacy system announces a planned outage in advance; while a window covers the time an ingest run starts, the
run is skipped (Airflow state `skipped`, no alert) and the first run after it catches up from the watermark.
`add` stores a one-off window (ledger event `maintenance_announced`); the mapping file's own `maintenance:` list
holds the recurring ones. Times are Asia/Shanghai unless they carry an offset. `list` shows both kinds.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from tongban.cli.context import operator_name
from tongban.cli.failures import EXIT_USAGE, CliFailure
from tongban.cli.output import JSON_OPTION, emit_json

app = typer.Typer(no_args_is_help=True)


def _open():
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    return settings, open_store(settings.db_url)


def _declared(mappings_dir) -> dict[str, str]:
    from tongban.mapping.folder import declared_systems

    return declared_systems(mappings_dir)


@app.command("add")
def add(system: str = typer.Argument(..., help="the system (as its mapping file's `system:` names it)"),
        start: str = typer.Option(..., "--from", help="start, e.g. '2026-12-24 22:00' (Asia/Shanghai)"),
        end: str = typer.Option(..., "--to", help="end, e.g. '2026-12-25 06:00' (Asia/Shanghai)"),
        reason: str = typer.Option(..., help="why the system is away (the 报备; recorded in the ledger)"),
        operator: Optional[str] = typer.Option(None, help="who (default: the login name; recorded in the ledger)"),
        as_json: bool = JSON_OPTION) -> None:
    """Announce a maintenance window: ingest runs of SYSTEM that start inside it are skipped, not failed."""
    from tongban.scheduling.maintenance import ZONE, one_off
    from tongban.scheduling.maintenance_tables import add_window

    settings, store = _open()
    declared = _declared(settings.mappings_dir)
    if system not in declared:
        raise CliFailure(EXIT_USAGE, f"unknown system {system!r}: no mapping file in {settings.mappings_dir} "
                         f"declares it (known: {', '.join(declared) or 'none'})", "check the name (tongban status)")
    try:
        window = one_off(start, end, reason, "announced")
    except ValueError as exc:
        raise CliFailure(EXIT_USAGE, f"maintenance window for {system}: {exc}",
                         "give --from and --to as '2026-12-24 22:00' (Asia/Shanghai) and a --reason") from None
    if window.end <= datetime.now(ZONE):
        raise CliFailure(EXIT_USAGE, f"maintenance window for {system}: it ended already ({window.describe()})",
                         "announce windows that are still to come or under way")
    row = add_window(store, system, window, operator_name(operator))
    if as_json:
        emit_json({"window_id": row["window_id"], "system": system, "window": window.describe(),
                   "start": window.start.isoformat(), "end": window.end.isoformat(), "reason": window.reason,
                   "announced_by": row["announced_by"], "ledger_event": "maintenance_announced"})
        return
    typer.echo(f"{system}: maintenance {window.describe()} announced ({window.reason}); ingest runs in it are "
               f"skipped (ledger: maintenance_announced, window {row['window_id']})")


@app.command("list")
def list_(system: Optional[str] = typer.Option(None, help="one system (default: every system)"),
          as_json: bool = JSON_OPTION) -> None:
    """Every maintenance window: the announced ones and the mapping files' own, with whether each is on now."""
    from tongban.mapping import MappingFileError
    from tongban.scheduling.ingest_plans import plan_for
    from tongban.scheduling.maintenance import ZONE
    from tongban.scheduling.maintenance_tables import announced

    settings, store = _open()
    now = datetime.now(ZONE)
    rows = []
    for name, path in _declared(settings.mappings_dir).items():
        if system and name != system:
            continue
        try:
            windows = plan_for(Path(path)).maintenance
        except MappingFileError as exc:
            raise CliFailure(EXIT_USAGE, str(exc), f"fix {path} (tongban mapping check {path})") from None
        rows += [{"system": name, **w.as_dict(), "active": w.covers(now)} for w in windows]
    for name, window in announced(store, system):
        ended = window.end <= now
        rows.append({"system": name, **window.as_dict(), "active": window.covers(now), "ended": ended})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no maintenance windows")
        return
    width = max(len(r["system"]) for r in rows)
    for row in rows:
        state = "ON NOW" if row["active"] else ("ended" if row.get("ended") else row["kind"])
        typer.echo(f"{row['system']:<{width}}  {state:<8}  {row['window']}  {row['reason']}  ({row['origin']})")
