"""`tongban bundle …`: bundled applications (一件事一次办) — check definitions, run the scatter-gather, list late
members (docs/bundles.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tongban.cli.failures import EXIT_FAILED, EXIT_USAGE
from tongban.cli.output import emit_json

app = typer.Typer(no_args_is_help=True)


@app.command()
def check(files: list[Path] = typer.Argument(..., metavar="FILE...", help="bundle definitions (mappings/bundles/*.yaml)"),
          as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """Check bundle definitions: keys, item codes, JMESPath, dependencies (no cycles), the concluding rule and each
    member's department mapping with its submit: section. Every problem is one line with the file's line.
    Exits 0 when every file is fine, 2 otherwise."""
    from tongban.bundle.definition import check_bundle

    results, bad = [], False
    for path in files:
        defn, problems = check_bundle(path)
        bad |= bool(problems)
        results.append({"file": str(path), "ok": not problems,
                        "bundle": defn.bundle if defn else None, "name": defn.name if defn else None,
                        "order": defn.order() if defn else [],
                        "problems": [{"line": p.line, "rule": p.rule, "text": str(p)} for p in problems]})
    if as_json:
        emit_json({"ok": not bad, "files": results})
    else:
        for result in results:
            if result["ok"]:
                typer.echo(f"{result['file']}: ok — {result['bundle']} ({result['name']}), members in order: "
                           f"{', '.join(result['order'])}")
            for problem in result["problems"]:
                typer.echo(problem["text"], err=True)
    raise typer.Exit(EXIT_USAGE if bad else 0)


def _definitions(directory: Optional[Path]):
    from tongban.bundle.definition import bundles_dir, load_bundles
    from tongban.settings import load

    folder = directory or bundles_dir(load().mappings_dir)
    definitions = load_bundles(folder)
    if not definitions:
        from tongban.cli.failures import CliFailure

        raise CliFailure(EXIT_USAGE, f"no bundle definitions (*.yaml) in {folder}",
                         "write one (docs/bundles.md) or pass --bundles DIR")
    return definitions


BUNDLES_OPTION = typer.Option(None, "--bundles", help="folder of bundle definitions (default: <mappings>/bundles)")


@app.command()
def run(bundles: Optional[Path] = BUNDLES_OPTION,
        idle: float = typer.Option(1.0, "--idle", help="stop after the bundle queue was empty this many seconds"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """Fetch new bundle applications from the platform, evaluate every open bundle (submit the members that are
    ready, gather the cases the departments reported through the ordinary ingest, push 受理/办结, raise 预警) and
    consume the bundle queue until it is idle. Run it periodically, after the departments' ingest."""
    from tongban.bundle.metrics import BundleMetrics
    from tongban.bundle.run import run_bundles
    from tongban.bundle.topology import bundles_work
    from tongban.cli.run import _context

    definitions = _definitions(bundles)
    settings, store, open_bus, open_platform = _context()
    bus, platform = open_bus(), open_platform()
    try:
        result = run_bundles(store=store, bus=bus, platform=platform, definitions=definitions,
                             work=bundles_work(settings.queue_prefix), idle_exit=idle, metrics=BundleMetrics())
    finally:
        bus.close()
        platform.close()
    if as_json:
        emit_json(result)
    else:
        typer.echo(", ".join(f"{k} {v}" for k, v in result.items()))
    raise typer.Exit(EXIT_FAILED if result.get("parked") else 0)


@app.command()
def late(at: Optional[str] = typer.Option(None, "--at", help="judge at this ISO time (default: now)"),
         as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """List the members past their 承诺时限 and not concluded, per department (预警). Exits 1 when any is late."""
    from datetime import datetime, timezone

    from tongban.bundle.views import late_members
    from tongban.cli.run import _context

    when = None
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            from tongban.cli.failures import CliFailure

            raise CliFailure(EXIT_USAGE, f"--at {at!r} is not an ISO time", "e.g. 2026-12-09T09:00:00+08:00") from None
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    _settings, store, *_ = _context()
    late_by_department = late_members(store, when)
    if as_json:
        emit_json({"late": sum(len(v) for v in late_by_department.values()), "departments": late_by_department})
    elif not late_by_department:
        typer.echo("no member is past its deadline")
    else:
        for department, members in late_by_department.items():
            typer.echo(f"{department}: {len(members)} late")
            for m in members:
                typer.echo(f"  {m['application_id']} {m['bundle']}/{m['member']} ({m['system']}, {m['state']}) "
                           f"due {m['due_at'][:16]}, late by {m['late_by_hours']:g} h")
    raise typer.Exit(EXIT_FAILED if late_by_department else 0)


@app.command()
def show(application_id: str = typer.Argument(..., help="the platform's bundle application id"),
         bundles: Optional[Path] = BUNDLES_OPTION,
         as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """One bundle: its state and result, and each member's state, case (办件编号) and whom it waits on."""
    from tongban.bundle.views import bundle_view
    from tongban.cli.run import _context

    _settings, store, *_ = _context()
    view = bundle_view(store, application_id, _definitions(bundles))
    if view is None:
        from tongban.cli.failures import CliFailure

        raise CliFailure(EXIT_FAILED, f"no bundle application {application_id}", "tongban bundle run fetches them")
    if as_json:
        emit_json(view)
        return
    typer.echo(render_bundle(view))


def render_bundle(view: dict) -> str:
    lines = [f"bundle {view['application_id']}  {view['name']} ({view['bundle']})  {view['state']}"
             f"{'  result ' + view['result'] if view['result'] else ''}"]
    for m in view["members"]:
        waits = f"  waits on {', '.join(m['waiting_on'])}" if m["waiting_on"] else ""
        late = "  预警 (late)" if m["warned_at"] else ""
        lines.append(f"  {m['member']:<22} {m['name']:<8} {m['state']:<10} {m['department']}  "
                     f"case {m['case_number'] or '-'}{waits}{late}")
    return "\n".join(lines)


@app.command("try")
def try_(file: Path = typer.Argument(..., help="a bundle definition whose members use the sandbox departments "
                                               "(mappings/bundles/departments/*.yaml)"),
         form: Path = typer.Option(..., "--form", help="the application form, a JSON file"),
         days: int = typer.Option(12, "--days", help="most sandbox days to run"),
         as_json: bool = typer.Option(False, "--json", help="print the bundle's final view as JSON")) -> None:
    """Sandbox only: run one application of a bundle definition through a mock 渝快办 and the sandbox's department
    systems, day by day, and print how it concluded. Exits 1 when it did not conclude in time."""
    import json as jsonlib

    from sandbox.bundle_demo import try_bundle
    from tongban.cli.failures import CliFailure
    from tongban.cli.output import notice
    from tongban.cli.run import _context

    settings, store, open_bus, _ = _context()
    if not settings.is_sandbox:
        raise CliFailure(EXIT_USAGE, "tongban bundle try runs the sandbox only", "unset TONGBAN_ENV=production")
    try:
        application = jsonlib.loads(form.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliFailure(EXIT_USAGE, f"cannot read the form {form}: {exc}", "give a JSON file") from None
    bus = open_bus()
    try:
        view = try_bundle(file, application, store=store, bus=bus, home=settings.home, most_days=days,
                          say=(lambda *a, **k: None) if as_json else notice)
    finally:
        bus.close()
    if as_json:
        emit_json(view)
    else:
        typer.echo(render_bundle(view))
    raise typer.Exit(0 if view.get("state") == "concluded" else EXIT_FAILED)
