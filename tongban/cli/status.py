"""`tongban status [--json]`: queue depths, parked and quarantined counts, the ledger's size, and one row per
legacy system (cases and events delivered, open quarantine and parking, its watermark)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tongban.cli.output import JSON_OPTION, emit_json
from tongban.mapping.folder import declared_systems


def system_rows(store, mappings_dir: Path) -> list[dict[str, Any]]:
    """One row per system that a mapping file declares or the store knows."""
    from sqlalchemy import func, select

    from tongban.store.tables import case_numbers, deliveries, parked, quarantine, watermarks

    with store.read() as conn:
        delivered = {system: (cases, events) for system, cases, events in conn.execute(
            select(case_numbers.c.system, func.count(func.distinct(deliveries.c.case_number)), func.count())
            .select_from(deliveries.join(case_numbers, deliveries.c.case_number == case_numbers.c.case_number))
            .group_by(case_numbers.c.system))}
        open_quarantine = dict(conn.execute(select(quarantine.c.system, func.count())
                                            .where(quarantine.c.status == "open").group_by(quarantine.c.system)).all())
        open_parked = dict(conn.execute(select(parked.c.system, func.count())
                                        .where(parked.c.status == "open").group_by(parked.c.system)).all())
        marks = {row.system: (row.value, row.updated_at) for row in conn.execute(select(watermarks))}
        numbered = {s for (s,) in conn.execute(select(case_numbers.c.system).distinct())}
    declared = declared_systems(mappings_dir)
    names = set(declared) | set(delivered) | set(open_quarantine) | set(open_parked) | set(marks) | numbered
    rows = []
    for name in sorted(n for n in names if n):
        cases, events = delivered.get(name, (0, 0))
        value, updated = marks.get(name, (None, None))
        rows.append({"system": name, "mapping_file": declared.get(name), "cases_delivered": cases,
                     "events_delivered": events, "quarantined_open": open_quarantine.get(name, 0),
                     "parked_open": open_parked.get(name, 0), "watermark": value, "watermark_updated_at": updated})
    return rows


def status_data(store, bus, work, mappings_dir: Path) -> dict[str, Any]:
    from tongban.audit import ledger
    from tongban.operator import quarantine as q

    names = bus.queues(work)
    counts = q.counts(store)
    return {
        "bus": bus.name,
        "queues": bus.depths(names),
        "oldest_message_at": bus.oldest_created_at(work.queue),
        "parked_open": counts["parked"], "oldest_parked_at": counts.get("oldest_parked"),
        "quarantined_open": counts["quarantined"], "oldest_quarantined_at": counts.get("oldest_quarantined"),
        "quarantined_by_rule": counts["by_rule"],
        "ledger": ledger.count_by_hop(store),
        "systems": system_rows(store, mappings_dir),
    }


def _print_systems(rows: list[dict[str, Any]]) -> None:
    """One line per system (a table would cut the names at 80 columns)."""
    if not rows:
        return
    typer.echo("per system:")
    width = max(len(row["system"]) for row in rows)
    for row in rows:
        typer.echo(f"  {row['system']:<{width}}  cases delivered {row['cases_delivered']}, events delivered "
                   f"{row['events_delivered']}, quarantined {row['quarantined_open']}, parked {row['parked_open']}, "
                   f"watermark {row['watermark'] or '-'}")


def status(as_json: bool = JSON_OPTION) -> None:
    """Queue depths, parked and quarantined counts, ledger size, and per system: delivered, open, watermark."""
    from tongban.bus.topology import cases_work
    from tongban.cli.run import _context
    from tongban.audit.views import print_status

    settings, store, bus_factory, _ = _context()
    bus = bus_factory()
    try:
        work = cases_work(settings.queue_prefix)
        if as_json:
            emit_json(status_data(store, bus, work, settings.mappings_dir))
            return
        print_status(store, bus, work)
        _print_systems(system_rows(store, settings.mappings_dir))
    finally:
        bus.close()


def register(app: typer.Typer) -> None:
    app.command()(status)
