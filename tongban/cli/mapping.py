"""`tongban mapping check FILE [--sample RECORDS]`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


MAX_SAMPLE_BYTES = 64 * 1024 * 1024


class SampleError(Exception):
    pass


def _xml_records(path: Path, record_tag: str | None) -> list[dict]:
    """Records from an XML sample, parsed like the adapters parse XML: no DTD, no entities, no network."""
    from adapters import safexml

    try:
        root = safexml.parse_bytes(path.read_bytes(), max_bytes=MAX_SAMPLE_BYTES, source=str(path))
    except safexml.XMLRejected as exc:
        raise SampleError(str(exc)) from exc
    elements = list(root.iter(record_tag)) if record_tag else list(root)
    return [{child.tag: (child.text or "").strip() or None for child in element} for element in elements]


def _read_samples(path: Path, record_tag: str | None = None) -> list[dict]:
    """A JSON list, a JSON object with the records under a list value, JSON Lines, or XML."""
    if path.stat().st_size > MAX_SAMPLE_BYTES:
        raise SampleError(f"sample larger than {MAX_SAMPLE_BYTES} bytes")
    if path.suffix.lower() == ".xml":
        return _xml_records(path, record_tag)
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise SampleError("sample contains NUL bytes")
    text = raw.decode("utf-8-sig")
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
          sample: Optional[Path] = typer.Option(None, help="legacy records to map: JSON list, JSON Lines or XML"),
          record_tag: Optional[str] = typer.Option(None, help="XML samples: the record element (default: the root's children)"),
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
    if getattr(mapping, "kind", None) == "flowback":  # a ministry flowback source file (tongban.cli.flowback)
        from tongban.cli.flowback import check_sample, read_sample

        try:
            records = read_sample(mapping, sample) or _read_samples(sample, record_tag)
        except Exception as exc:  # noqa: BLE001 - an unreadable sample is one line, not a traceback
            typer.echo(f"error: cannot read sample {sample}: {exc}", err=True)
            raise typer.Exit(1)
        raise typer.Exit(check_sample(mapping, records, file, show))
    try:
        records = _read_samples(sample, record_tag)
    except (OSError, ValueError, SampleError) as exc:
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
