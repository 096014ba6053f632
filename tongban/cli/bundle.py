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
