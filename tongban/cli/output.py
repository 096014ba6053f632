"""What every command prints, one way: JSON for machines (`--json`), tables and lines for people, a progress
bar for long runs on a terminal.

- `emit_json(data)`: valid JSON on stdout and nothing else there (notices go to stderr: `notice`); masked.
- `JSON_OPTION`: the `--json` option every operator command takes.
- `print_pairs(title, rows)`: a two-column table (what, value) for people.
- `progress(description, total, enabled=...)`: a rich.progress bar when stdout is a terminal and no JSON was
  asked for; a silent stand-in otherwise (cron, Airflow, pipes and `--json` see no escape codes).
"""
from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterable, Iterator

import typer

JSON_OPTION = typer.Option(False, "--json", help="print JSON on stdout (nothing else there)")


def to_json(data: Any) -> str:
    from tongban.codes import mask_text

    return mask_text(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def emit_json(data: Any) -> None:
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


def notice(text: str) -> None:
    """A remark for the operator that is not the command's output (e.g. which bus was chosen): stderr."""
    typer.echo(text, err=True)


def print_pairs(title: str | None, rows: Iterable[tuple[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from tongban.codes import mask_text

    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for label, value in rows:
        table.add_row(label, mask_text("-" if value is None else str(value)))
    Console().print(table, highlight=False)


def interactive(as_json: bool = False) -> bool:
    """A person is watching: stdout is a terminal and no JSON was asked for."""
    return not as_json and sys.stdout.isatty()


class _Quiet:
    def advance(self, steps: int = 1) -> None:
        pass

    def update(self, **_: Any) -> None:
        pass


class _Bar:
    def __init__(self, bar, task):
        self.bar, self.task = bar, task

    def advance(self, steps: int = 1) -> None:
        self.bar.advance(self.task, steps)

    def update(self, **fields: Any) -> None:
        self.bar.update(self.task, **fields)


@contextlib.contextmanager
def progress(description: str, total: float | None = None, *, enabled: bool) -> Iterator[_Bar | _Quiet]:
    """A transient progress bar (gone when done, so the summary lines stay readable)."""
    if not enabled:
        yield _Quiet()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=True) as bar:
        yield _Bar(bar, bar.add_task(description, total=total))
