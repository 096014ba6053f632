"""`tongban identity …`: operators' view of the unified user mapping (统一用户体系). Everything printed is
masked, and every lookup of a person is itself a ledger event (`pii_lookup`)."""
from __future__ import annotations

from typing import Optional

import typer

from tongban.cli.context import open_configured_store, operator_name
from tongban.cli.output import JSON_OPTION, emit_json

app = typer.Typer(no_args_is_help=True)


@app.command("lookup")
def lookup(id_number: str = typer.Argument(..., help="居民身份证号码 or 统一社会信用代码"),
           operator: Optional[str] = typer.Option(None, help="who looks (default: the login name)"),
           purpose: Optional[str] = typer.Option(None, help="why (recorded in the ledger)"),
           as_json: bool = JSON_OPTION) -> None:
    """What tongban knows about one person or organisation (masked); the lookup is recorded in the ledger."""
    from rich.console import Console
    from rich.table import Table

    from tongban import codes
    from tongban.identity import IdentityError
    from tongban.identity import lookup as do_lookup

    try:
        result = do_lookup(open_configured_store(), id_number, operator=operator_name(operator), purpose=purpose)
    except IdentityError as exc:
        typer.echo(f"error: {codes.mask_text(str(exc))}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        emit_json(result)
        return
    table = Table(title=f"identity {result['id_number']} (证件类型 {result['id_type']})")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    if not result["found"]:
        table.add_row("status", "never seen by tongban")
    else:
        for name in ("status", "user_id", "reason", "updated_at"):
            table.add_row(name, str(result[name] or "-"))
    for account in result["accounts"]:
        table.add_row("legacy account", f"{account['system']}: {account['account_id']}")
    for conflict in result["conflicts"]:
        table.add_row(f"conflict #{conflict['id']}", f"{conflict['kind']} ({conflict['status']}): {conflict['detail']}")
    table.add_row("cases waiting", str(result["waiting_cases"]))
    Console().print(table, highlight=False)


@app.command("conflicts")
def conflicts(status: str = typer.Option("open", help="open, accepted or all"), as_json: bool = JSON_OPTION) -> None:
    """Identity conflicts flagged by the resolver (never guessed)."""
    from tongban.identity import list_conflicts
    from tongban.operator.actions import print_rows

    rows = list_conflicts(open_configured_store(), status=status)
    if as_json:
        emit_json(rows)
        return
    print_rows(rows, ["id", "at", "kind", "system", "account_ids", "detail", "status"], f"identity conflicts: {len(rows)}")


@app.command("accept")
def accept(conflict_id: int, operator: Optional[str] = typer.Option(None), note: Optional[str] = typer.Option(None),
           as_json: bool = JSON_OPTION) -> None:
    """Accept a conflict as genuine (recorded in the ledger); `tongban identity retry` then replays its cases."""
    from tongban import codes
    from tongban.identity import accept_conflict

    text = accept_conflict(open_configured_store(), conflict_id, operator=operator_name(operator), note=note)
    if as_json:
        emit_json({"conflict_id": conflict_id, "summary": text})
        return
    typer.echo(codes.mask_text(text))


@app.command("retry")
def retry(no_replay: bool = typer.Option(False, "--no-replay", help="only ask the platform again"),
          as_json: bool = JSON_OPTION) -> None:
    """Ask the unified user service again about unresolved applicants and replay the cases that now resolve."""
    from tongban.bus import open_bus
    from tongban.cli.output import notice
    from tongban.identity import retry_unresolved
    from tongban.settings import load

    settings = load()
    bus = open_bus(settings, announce=notice)  # its notice on stderr, never inside the JSON
    try:
        summary = retry_unresolved(replay=not no_replay, bus=bus, settings=settings)
    finally:
        bus.close()
    if as_json:
        emit_json(summary)
        return
    typer.echo(" ".join(f"{key}={value}" for key, value in summary.items()))
