"""`tongban mapping check FILE [--sample RECORDS]`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


def _read_samples(path: Path) -> list[dict]:
    """A JSON list, a JSON object with the records under a list value, or JSON Lines."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if lists else [data]
    return data


@app.command()
def check(file: Path = typer.Argument(..., help="the mapping file"),
          sample: Optional[Path] = typer.Option(None, help="legacy records (JSON list or JSON Lines) to map"),
          show: int = typer.Option(3, help="how many mapped cases to print")) -> None:
    """Check a mapping file; with --sample, map the records and report every error with the mapping
    file's line, the record key, the field and the rule. Exits 1 when anything is wrong."""
    from pydantic import ValidationError

    from tongban import codes
    from tongban.cases.models import CaseSnapshot, describe_errors
    from tongban.mapping import MappingError, MappingFileError, load_mapping

    try:
        mapping = load_mapping(file)
    except MappingFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{file}: mapping for {mapping.system} ({mapping.department}) is well-formed; "
               f"source adapter {mapping.source['adapter']}")
    if sample is None:
        return
    try:
        records = _read_samples(sample)
    except (OSError, json.JSONDecodeError) as exc:
        typer.echo(f"error: cannot read sample {sample}: {exc}", err=True)
        raise typer.Exit(1)
    errors, shown = 0, 0
    for index, record in enumerate(records, start=1):
        try:
            snapshot = mapping.map_record(record)
            snapshot.pop("_flags", None)
            CaseSnapshot.model_validate(snapshot)
        except MappingError as exc:
            errors += 1
            line = f"{file}:{exc.line}: " if exc.line else f"{file}: "
            typer.echo(codes.mask_text(f"{line}record {exc.record_key or f'#{index}'}: field {exc.field}: {exc.rule}"))
            continue
        except ValidationError as exc:
            errors += 1
            for problem in describe_errors(exc):
                typer.echo(codes.mask_text(f"{file}: record {snapshot.get('source_key')}: {problem}"))
            continue
        if shown < show:
            shown += 1
            typer.echo(codes.mask_text(json.dumps(snapshot, ensure_ascii=False, indent=2)))
    typer.echo(f"{len(records)} records: {len(records) - errors} mapped, {errors} with errors")
    raise typer.Exit(1 if errors else 0)
