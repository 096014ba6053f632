"""`tongban watermark show|set|reset`: where each legacy system's incremental fetch resumes.

The watermark is the newest change time (更新时间 …) the last successful run saw; the next run asks the source
for records changed since then. `set` moves it (to re-fetch from a date, or to skip a history nobody needs) and
`reset` clears it (the next run fetches everything; change detection keeps unchanged cases from being sent
again). Both are ledger events (`watermark_set`, `watermark_reset`) naming the operator, the old and the new
value. A system is accepted only when a mapping file declares it or the store knows it (no typo creates a
watermark nobody reads); a value is checked against the mapping's `incremental.format` when it declares one.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer

from tongban.cli.context import operator_name
from tongban.cli.failures import EXIT_FAILED, EXIT_USAGE, CliFailure
from tongban.cli.output import JSON_OPTION, emit_json

app = typer.Typer(no_args_is_help=True)
MAX_VALUE = 100  # the watermarks table's column


def _open():
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    return settings, open_store(settings.db_url)


def _rows(store, mappings_dir: Path) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from tongban.mapping.folder import declared_systems
    from tongban.store.tables import watermarks

    rows = {name: {"system": name, "watermark": None, "updated_at": None, "mapping_file": path}
            for name, path in declared_systems(mappings_dir).items()}
    with store.read() as conn:
        for row in conn.execute(select(watermarks)):
            rows.setdefault(row.system, {"system": row.system, "mapping_file": None})
            rows[row.system].update(watermark=row.value, updated_at=row.updated_at)
    return dict(sorted(rows.items()))


def _known(rows: dict[str, dict], system: str) -> dict:
    if system not in rows:
        known = ", ".join(rows) or "none"
        raise CliFailure(EXIT_USAGE, f"unknown system {system!r}: no mapping file in TONGBAN_MAPPINGS declares it "
                         f"and it has no watermark (known: {known})", "check the name (tongban watermark show)")
    return rows[system]


def _declared_format(mapping_file: str | None) -> str | None:
    """The strftime format of the mapping's `source.incremental.format`, if it declares one."""
    import yaml

    if not mapping_file:
        return None
    try:
        doc = yaml.safe_load(Path(mapping_file).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    incremental = (doc.get("source") or {}).get("incremental") if isinstance(doc, dict) else None
    fmt = incremental.get("format") if isinstance(incremental, dict) else None
    return fmt if isinstance(fmt, str) else None


@app.command("show")
def show(system: Optional[str] = typer.Argument(None, help="one system (default: every system)"),
         as_json: bool = JSON_OPTION) -> None:
    """Each system's watermark and when it last moved ("-": none yet, the next run fetches everything)."""
    settings, store = _open()
    rows = _rows(store, settings.mappings_dir)
    chosen = [_known(rows, system)] if system else list(rows.values())
    if as_json:
        emit_json(chosen[0] if system else chosen)
        return
    if not chosen:
        typer.echo(f"no systems: no mapping files in {settings.mappings_dir} and no watermark stored")
        return
    width = max(len(r["system"]) for r in chosen)
    for row in chosen:
        typer.echo(f"{row['system']:<{width}}  {row['watermark'] or '-':<26}  "
                   f"{('moved ' + row['updated_at']) if row['updated_at'] else 'never moved'}")


def _change(system: str, new: str | None, operator: str | None, reason: str | None, as_json: bool) -> None:
    from tongban.audit import ledger
    from tongban.audit.ledger import LedgerEvent
    from tongban.store import state
    from tongban.store.tables import watermarks

    settings, store = _open()
    rows = _rows(store, settings.mappings_dir)
    row = _known(rows, system)
    old = row["watermark"]
    if new is None and old is None:
        raise CliFailure(EXIT_FAILED, f"{system} has no watermark to reset", "nothing changed: the next run already "
                         "fetches everything")
    detail = {"from": old, "to": new, "operator": operator_name(operator), "reason": reason}
    with store.write() as conn:
        if new is None:
            conn.execute(watermarks.delete().where(watermarks.c.system == system))
        else:
            state.set_watermark(conn, system, new)
        ledger.append(conn, [LedgerEvent("watermark_reset" if new is None else "watermark_set", detail, system=system)])
    if as_json:
        emit_json({"system": system, **detail})
    elif new is None:
        typer.echo(f"{system}: watermark {old} cleared (ledger: watermark_reset); the next run fetches everything")
    else:
        typer.echo(f"{system}: watermark {old or '-'} → {new} (ledger: watermark_set)")


@app.command("set")
def set_(system: str = typer.Argument(..., help="the system (as its mapping file's `system:` names it)"),
         value: str = typer.Argument(..., help="the new watermark, in the form the source compares"),
         operator: Optional[str] = typer.Option(None, help="who (default: the login name; recorded in the ledger)"),
         reason: Optional[str] = typer.Option(None, help="why (recorded in the ledger)"),
         as_json: bool = JSON_OPTION) -> None:
    """Move a system's watermark; the next run asks the source for records changed since VALUE."""
    value = value.strip()
    if not value or len(value) > MAX_VALUE:
        raise CliFailure(EXIT_USAGE, f"watermark value must be 1 to {MAX_VALUE} characters", "give the value the "
                         "source compares, e.g. 2026-11-27 08:00:00")
    settings, store = _open()
    fmt = _declared_format(_known(_rows(store, settings.mappings_dir), system)["mapping_file"])
    if fmt:
        try:
            datetime.strptime(value, fmt)
        except ValueError:
            raise CliFailure(EXIT_USAGE, f"{value!r} does not fit the mapping's incremental.format {fmt!r}",
                             f"write it as {datetime(2026, 11, 27, 8, 0, 0).strftime(fmt)} looks") from None
    _change(system, value, operator, reason, as_json)


@app.command("reset")
def reset(system: str = typer.Argument(..., help="the system (as its mapping file's `system:` names it)"),
          operator: Optional[str] = typer.Option(None, help="who (default: the login name; recorded in the ledger)"),
          reason: Optional[str] = typer.Option(None, help="why (recorded in the ledger)"),
          as_json: bool = JSON_OPTION) -> None:
    """Clear a system's watermark: the next run fetches everything (unchanged cases are not sent again)."""
    _change(system, None, operator, reason, as_json)
