"""Operators' commands for the dead-letter side: `tongban quarantine …` and `tongban parked …`."""
from __future__ import annotations

from typing import Optional

import typer

from tongban.cli.context import open_configured_store
from tongban.cli.failures import EXIT_FAILED, CliFailure
from tongban.cli.output import JSON_OPTION, emit_json, interactive, notice, progress

quarantine_app = typer.Typer(no_args_is_help=True)
parked_app = typer.Typer(no_args_is_help=True)


def _entry(table, entry_id: int) -> dict:
    """One entry whole, its stored record or envelope decrypted for the operator (masked when printed)."""
    from sqlalchemy import select

    from tongban.store.at_rest import reveal

    with open_configured_store().read() as conn:
        row = conn.execute(select(table).where(table.c.id == entry_id)).mappings().first()
    if row is None:
        raise CliFailure(EXIT_FAILED, f"no {table.name} entry {entry_id}", f"list them: tongban {table.name} list")
    shown = dict(row)
    for column in ("record", "envelope"):
        if shown.get(column):
            shown[column] = reveal(shown[column])
    return shown


def _listing(rows: list[dict], total: int, as_json: bool, columns: list[str], title: str) -> None:
    from tongban.operator.actions import print_rows

    if as_json:
        emit_json({"total": total, "shown": len(rows), "entries": rows})
    else:
        print_rows(rows, columns, title)


def _summary(outcome, as_json: bool) -> None:
    """A replay's outcome: one line for people; for scripts its counts (selected, replayed, republished,
    skipped) with the same line as `summary`."""
    if as_json:
        emit_json(outcome.to_dict())
    else:
        typer.echo(str(outcome))


def _show(table, entry_id: int, as_json: bool, show) -> None:
    """`show ID`: the entry whole as JSON, or `show(store, entry_id)`'s page for people (personal data masked)."""
    entry = _entry(table, entry_id)
    if as_json:
        emit_json(entry)
        return
    show(open_configured_store(), entry_id)


def _replay(what: str, replay, as_json: bool) -> None:
    """`replay`: `replay(store, bus, work)` on the configured bus, which is closed after. It reports only at the end:
    an indeterminate bar says it is working (terminal only)."""
    from tongban.bus import open_bus
    from tongban.bus.topology import cases_work
    from tongban.settings import load

    settings = load()
    bus = open_bus(settings, announce=notice)
    try:
        with progress(f"replaying {what}", None, enabled=interactive()):
            result = replay(open_configured_store(), bus, cases_work(settings.queue_prefix))
    finally:
        bus.close()
    _summary(result, as_json)


@quarantine_app.command("list")
def quarantine_list(system: Optional[str] = typer.Option(None), stage: Optional[str] = typer.Option(None),
                    reason: Optional[str] = typer.Option(None, help="substring of the rule"),
                    since: Optional[str] = typer.Option(None, help="ISO time, e.g. 2026-11-27T00:00"),
                    status: str = typer.Option("open", help="open, replayed or all"),
                    limit: int = typer.Option(50), as_json: bool = JSON_OPTION) -> None:
    """Quarantined records with their rule, filterable; prints the total count. The JSON leaves the stored
    records out (`quarantine show ID --json` has them)."""
    from tongban.operator.actions import list_quarantine

    rows, total = list_quarantine(open_configured_store(), system=system, stage=stage, reason=reason, since=since, status=status,
                                  limit=limit)
    rows = [{k: v for k, v in row.items() if k != "record"} for row in rows]
    _listing(rows, total, as_json, ["id", "at", "system", "source_key", "stage", "field", "rule", "status"],
             f"quarantine: {total}")


@quarantine_app.command("show")
def quarantine_show(entry_id: int, as_json: bool = JSON_OPTION) -> None:
    """One quarantined record in full (personal data masked)."""
    from tongban.operator.actions import show_quarantine
    from tongban.store.tables import quarantine

    _show(quarantine, entry_id, as_json, show_quarantine)


@quarantine_app.command("replay")
def quarantine_replay(ids: list[int] = typer.Argument(None), system: Optional[str] = typer.Option(None),
                      stage: Optional[str] = typer.Option(None), reason: Optional[str] = typer.Option(None),
                      as_json: bool = JSON_OPTION) -> None:
    """Run quarantined records through the current mapping again (after the mapping or data was fixed)."""
    from tongban.operator.actions import replay_quarantine

    _replay("quarantined records", lambda store, bus, work: replay_quarantine(
        store, ids=ids or None, system=system, stage=stage, reason=reason, bus=bus, work=work), as_json)


@parked_app.command("list")
def parked_list(system: Optional[str] = typer.Option(None), reason: Optional[str] = typer.Option(None),
                since: Optional[str] = typer.Option(None), status: str = typer.Option("open"),
                limit: int = typer.Option(50), as_json: bool = JSON_OPTION) -> None:
    """Parked deliveries with their reason; prints the total count. The JSON leaves the stored envelopes out
    (`parked show ID --json` has them)."""
    from tongban.operator.actions import list_parked

    rows, total = list_parked(open_configured_store(), system=system, reason=reason, since=since, status=status, limit=limit)
    rows = [{k: v for k, v in row.items() if k != "envelope"} for row in rows]
    _listing(rows, total, as_json, ["id", "at", "system", "case_number", "reason", "status"], f"parked: {total}")


@parked_app.command("show")
def parked_show(entry_id: int, as_json: bool = JSON_OPTION) -> None:
    """One parked delivery in full (personal data masked)."""
    from tongban.operator.actions import show_parked
    from tongban.store.tables import parked

    _show(parked, entry_id, as_json, show_parked)


@parked_app.command("replay")
def parked_replay(ids: list[int] = typer.Argument(None), system: Optional[str] = typer.Option(None),
                  reason: Optional[str] = typer.Option(None), as_json: bool = JSON_OPTION) -> None:
    """Send parked deliveries again, in case order, with their original idempotency keys."""
    from tongban.operator.actions import replay_parked

    _replay("parked deliveries", lambda store, bus, work: replay_parked(
        store, bus, ids=ids or None, system=system, reason=reason, work=work), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(quarantine_app, name="quarantine", help="Records that broke a rule: list, show, replay.")
    app.add_typer(parked_app, name="parked", help="Deliveries that kept failing: list, show, replay.")
