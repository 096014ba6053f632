"""Operators' commands for the dead-letter side: `tongban quarantine …` and `tongban parked …`."""
from __future__ import annotations

from typing import Optional

import typer

quarantine_app = typer.Typer(no_args_is_help=True)
parked_app = typer.Typer(no_args_is_help=True)


def _store():
    from tongban.settings import load
    from tongban.store import open_store

    return open_store(load().db_url)


@quarantine_app.command("list")
def quarantine_list(system: Optional[str] = typer.Option(None), stage: Optional[str] = typer.Option(None),
                    reason: Optional[str] = typer.Option(None, help="substring of the rule"),
                    since: Optional[str] = typer.Option(None, help="ISO time, e.g. 2026-11-27T00:00"),
                    status: str = typer.Option("open", help="open, replayed or all"),
                    limit: int = typer.Option(50)) -> None:
    """Quarantined records with their rule, filterable; prints the total count."""
    from tongban.operations import list_quarantine, print_rows

    rows, total = list_quarantine(_store(), system=system, stage=stage, reason=reason, since=since, status=status,
                                  limit=limit)
    print_rows(rows, ["id", "at", "system", "source_key", "stage", "field", "rule", "status"], f"quarantine: {total}")


@quarantine_app.command("show")
def quarantine_show(entry_id: int) -> None:
    """One quarantined record in full (personal data masked)."""
    from tongban.operations import show_quarantine

    if not show_quarantine(_store(), entry_id):
        typer.echo(f"no quarantine entry {entry_id}", err=True)
        raise typer.Exit(1)


@quarantine_app.command("replay")
def quarantine_replay(ids: list[int] = typer.Argument(None), system: Optional[str] = typer.Option(None),
                      stage: Optional[str] = typer.Option(None), reason: Optional[str] = typer.Option(None)) -> None:
    """Run quarantined records through the current mapping again (after the mapping or data was fixed)."""
    from tongban.bus.topology import cases_work
    from tongban.operations import replay_quarantine
    from tongban.settings import load

    result = replay_quarantine(_store(), ids=ids or None, system=system, stage=stage, reason=reason,
                               work=cases_work(load().queue_prefix))
    typer.echo(result)


@parked_app.command("list")
def parked_list(system: Optional[str] = typer.Option(None), reason: Optional[str] = typer.Option(None),
                since: Optional[str] = typer.Option(None), status: str = typer.Option("open"),
                limit: int = typer.Option(50)) -> None:
    """Parked deliveries with their reason; prints the total count."""
    from tongban.operations import list_parked, print_rows

    rows, total = list_parked(_store(), system=system, reason=reason, since=since, status=status, limit=limit)
    print_rows(rows, ["id", "at", "system", "case_number", "reason", "status"], f"parked: {total}")


@parked_app.command("show")
def parked_show(entry_id: int) -> None:
    from tongban.operations import show_parked

    if not show_parked(_store(), entry_id):
        typer.echo(f"no parked entry {entry_id}", err=True)
        raise typer.Exit(1)


@parked_app.command("replay")
def parked_replay(ids: list[int] = typer.Argument(None), system: Optional[str] = typer.Option(None),
                  reason: Optional[str] = typer.Option(None)) -> None:
    """Send parked deliveries again, in case order, with their original idempotency keys."""
    from tongban.bus import open_bus
    from tongban.bus.topology import cases_work
    from tongban.operations import replay_parked
    from tongban.settings import load

    work = cases_work(load().queue_prefix)
    typer.echo(replay_parked(_store(), open_bus(), ids=ids or None, system=system, reason=reason, work=work))
