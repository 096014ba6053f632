"""`tongban catalog sync|diff|check|versions`: the unified item catalogue (统一事项标准) and the mapping tables."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tongban.cli.context import open_configured_store
from tongban.cli.failures import EXIT_FAILED, CliFailure
from tongban.cli.output import JSON_OPTION, emit_json

app = typer.Typer(no_args_is_help=True)
NOT_SYNCED = ("no catalogue synced yet", "run `tongban catalog sync` (the platform must answer)")


def _print_diff(changes) -> None:
    typer.echo(f"catalogue version {changes.old_version or '(none)'} → {changes.new_version}")
    if changes.empty:
        typer.echo("  no changes")
    for code in changes.added:
        typer.echo(f"  added     {code}")
    for code in changes.retired:
        typer.echo(f"  retired   {code}")
    for old, new in changes.replaced.items():
        typer.echo(f"  replaced  {old} → {new}")
    for code in changes.removed:
        typer.echo(f"  removed   {code}")
    for code, fields in changes.changed.items():
        text = ", ".join(f"{name}: {old!r} → {new!r}" for name, (old, new) in fields.items())
        typer.echo(f"  changed   {code}: {text}")


@app.command("sync")
def sync(mappings: Optional[Path] = typer.Option(None, help="mapping files folder (default: TONGBAN_MAPPINGS)"),
         as_json: bool = JSON_OPTION) -> None:
    """Fetch the catalogue from the platform, store its version, list what changed and what it affects."""
    from tongban.catalog import CatalogDiff, sync_and_report

    report = sync_and_report(store=open_configured_store(), mappings_dir=mappings)
    if as_json:
        emit_json(report)
        return
    if not report["stored"]:
        typer.echo(f"catalogue version {report['version']} is already the current one")
    else:
        d = report["diff"]
        _print_diff(CatalogDiff(d["old_version"], d["new_version"], d["added"], d["removed"], d["retired"],
                                d["replaced"], {c: {f: tuple(v) for f, v in fs.items()} for c, fs in d["changed"].items()}))
    for row in report["affected"]:
        successor = f" (replaced by {row['replaced_by']})" if row["replaced_by"] else ""
        typer.echo(f"affected: {Path(row['mapping_file']).name} {row['legacy_code']} → {row['code']} {row['change']}"
                   f"{successor}: {row['open_cases']} open cases, {row['quarantined']} quarantined")
    _print_problems(report["mapping_problems"])


def _print_problems(problems: dict[str, list[dict]]) -> int:
    total = 0
    for path, found in problems.items():
        name = Path(path).name
        if not found:
            typer.echo(f"{name}: ok")
        for problem in found:
            total += 1
            where = f"{problem['table']}: {problem['legacy_code']} → {problem['code']}: " if problem.get("table") else ""
            typer.echo(f"{name}: {problem['kind']}: {where}{problem['rule']}")
    return total


@app.command("diff")
def diff(old: Optional[int] = typer.Argument(None, help="older version (default: the one before the newest)"),
         new: Optional[int] = typer.Argument(None, help="newer version (default: the newest synced)"),
         as_json: bool = JSON_OPTION) -> None:
    """What changed between two synced catalogue versions."""
    from dataclasses import asdict

    from tongban.catalog import current, diff as compute, get_version, versions

    store = open_configured_store()
    synced = versions(store)
    if not synced:
        raise CliFailure(EXIT_FAILED, *NOT_SYNCED)
    newer = get_version(store, new) if new is not None else current(store)
    if old is not None:
        older = get_version(store, old)
    else:
        earlier = [v["version"] for v in synced if v["version"] != newer.version] if newer else []
        older = get_version(store, earlier[-1]) if earlier else None
    if newer is None or (old is not None and older is None):
        raise CliFailure(EXIT_FAILED, f"version {new if newer is None else old} was never synced "
                         f"(synced: {', '.join(str(v['version']) for v in synced)})", "name a synced version")
    changes = compute(older, newer)
    if as_json:
        emit_json(asdict(changes))
        return
    _print_diff(changes)


@app.command("check")
def check(files: Optional[list[Path]] = typer.Argument(None, help="mapping files (default: all in TONGBAN_MAPPINGS)"),
          as_json: bool = JSON_OPTION) -> None:
    """Check every mapping file's legacy-item → 实施编码 table against the current catalogue; exit 1 on any
    problem, and when there is no mapping file to check."""
    from dataclasses import asdict

    from tongban.catalog import check_mapping_files, current, mapping_files
    from tongban.settings import load

    catalogue = current(open_configured_store())
    if catalogue is None:
        raise CliFailure(EXIT_FAILED, *NOT_SYNCED)
    directory = load().mappings_dir
    paths = files or mapping_files(directory)
    if not paths:
        raise CliFailure(EXIT_FAILED, f"no mapping files (*.yaml) in {directory}", "set TONGBAN_MAPPINGS or name files")
    problems = {p: [asdict(x) for x in found] for p, found in check_mapping_files(paths, catalogue).items()}
    if as_json:
        emit_json({"catalogue_version": catalogue.version, "items": len(catalogue.items), "problems": problems})
        found = sum(len(v) for v in problems.values())
    else:
        typer.echo(f"checking against catalogue version {catalogue.version} ({len(catalogue.items)} items)")
        found = _print_problems(problems)
    if found:
        raise typer.Exit(EXIT_FAILED)


@app.command("versions")
def list_versions(as_json: bool = JSON_OPTION) -> None:
    """The catalogue versions synced so far."""
    from tongban.catalog import versions

    synced = versions(open_configured_store())
    if as_json:
        emit_json(synced)
        return
    if not synced:
        typer.echo("no catalogue synced yet: run `tongban catalog sync`")
    for row in synced:
        typer.echo(f"version {row['version']}: {row['item_count']} items, published {row['published_at']}, "
                   f"synced {row['synced_at']}")
