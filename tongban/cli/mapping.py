"""`tongban mapping check FILE [--sample RECORDS] [--json]`.

Exit codes: 0 the file (and every sample record) is fine; 1 anything is wrong — the mapping file (bad YAML, unknown key,
an unreadable or wrongly encoded table …), its `source:` settings (checked against the adapter's settings model), an
unreadable sample, or a sample record that does not map. Every problem is one line naming the file and line; nothing
prints a traceback.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(no_args_is_help=True)


MAX_SAMPLE_BYTES = 64 * 1024 * 1024
MAX_SAMPLE_NESTING = 100  # the whole sample (a list of records, or an envelope around it); records are bounded again


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


def _json(text: str) -> Any:
    try:
        data = json.loads(text)
    except RecursionError:
        raise SampleError(f"nested deeper than {MAX_SAMPLE_NESTING} levels") from None
    from tongban.mapping.engine import nesting_exceeds

    if nesting_exceeds(data, MAX_SAMPLE_NESTING):
        raise SampleError(f"nested deeper than {MAX_SAMPLE_NESTING} levels")
    return data


def _read_samples(path: Path, record_tag: str | None = None) -> list:
    """A JSON list, a JSON object with the records under a list value, JSON Lines, YAML, or XML."""
    if path.stat().st_size > MAX_SAMPLE_BYTES:
        raise SampleError(f"sample larger than {MAX_SAMPLE_BYTES} bytes")
    if path.suffix.lower() == ".xml":
        return _xml_records(path, record_tag)
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise SampleError("sample contains NUL bytes")
    text = raw.decode("utf-8-sig")
    if path.suffix.lower() in (".yaml", ".yml"):
        from tongban.mapping import MappingFileError
        from tongban.mapping.loader import parse_yaml

        try:
            data = parse_yaml(text, str(path), max_nesting=MAX_SAMPLE_NESTING)
        except MappingFileError as exc:
            raise SampleError(exc.rule + (f" (line {exc.line})" if exc.line else "")) from None
    else:
        try:
            data = _json(text)
        except json.JSONDecodeError:
            data = [_json(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if lists else [data]
    if not isinstance(data, list):
        raise SampleError(f"expected records (a list of objects), found a {type(data).__name__}")
    return data


class _Report:
    """What the check found, printed as lines or as one JSON object (--json)."""

    def __init__(self, file: Path, as_json: bool):
        self.file, self.as_json = file, as_json
        self.out: dict[str, Any] = {"file": str(file), "ok": True, "errors": [], "warnings": [], "notes": []}

    def error(self, text: str, line: int | None = None, **extra: Any) -> None:
        self.out["ok"] = False
        self.out["errors"].append({"line": line, "message": text, **extra})
        if not self.as_json:
            typer.echo(text, err="record" not in extra)

    def warning(self, text: str) -> None:
        self.out["warnings"].append(text)
        if not self.as_json:
            typer.echo(f"warning: {text}", err=True)

    def info(self, text: str) -> None:
        if not self.as_json:
            typer.echo(text)

    def finish(self) -> None:
        if self.as_json:
            typer.echo(json.dumps(self.out, ensure_ascii=False, indent=2))
        raise typer.Exit(0 if self.out["ok"] else 1)


@app.command()
def check(file: Path = typer.Argument(..., help="the mapping file"),
          sample: Optional[Path] = typer.Option(None, help="legacy records to map: JSON list, JSON Lines, YAML or XML"),
          record_tag: Optional[str] = typer.Option(None, help="XML samples: the record element (default: the root's children)"),
          show: int = typer.Option(3, help="how many mapped cases to print"),
          as_json: bool = typer.Option(False, "--json", help="print one JSON object (errors, warnings, counts)")) -> None:
    """Check a mapping file and its `source:` settings (against the adapter's declared model); with --sample, map the
    records and report every error with the mapping file's line, the record key, the field and the rule.
    Exits 1 when anything is wrong."""
    from pydantic import ValidationError

    from tongban import codes
    from tongban.cases.models import CaseSnapshot, describe_errors
    from tongban.mapping import MappingError, MappingFileError, load_mapping
    from tongban.mapping.source_check import check_source

    report = _Report(file, as_json)
    try:
        mapping = load_mapping(file)
    except MappingFileError as exc:
        report.error(f"error: {exc}", exc.line)
        report.finish()
    report.out.update(system=mapping.system, department=mapping.department, adapter=mapping.source["adapter"])
    if getattr(mapping, "kind", None) != "flowback":
        from tongban.scheduling.ingest_plans import plan_for  # schedule:, retries:, concurrency:, maintenance:

        try:
            plan_for(file)
        except MappingFileError as exc:
            report.error(f"error: {exc}", exc.line)
    source = check_source(mapping)
    for problem in source.problems:
        report.error(f"error: {problem}", problem.line)
    for warning in source.warnings:
        report.warning(warning)
    if not source.problems and report.out["ok"]:
        report.info(f"{file}: mapping for {mapping.system} ({mapping.department}) is well-formed; "
                    f"source adapter {mapping.source['adapter']}"
                    + (" (settings checked against its model)" if source.model is not None else ""))
    if sample is None:
        report.finish()
    if getattr(mapping, "kind", None) == "flowback":  # a ministry flowback source file (tongban.cli.flowback)
        from tongban.cli.flowback import check_sample, read_sample

        if report.out["errors"]:
            report.finish()
        try:
            records = read_sample(mapping, sample) or _read_samples(sample, record_tag)
        except Exception as exc:  # noqa: BLE001 - an unreadable sample is one line, not a traceback
            report.error(f"error: cannot read sample {sample}: {exc}")
            report.finish()
        raise typer.Exit(check_sample(mapping, records, file, show))
    try:
        records = _read_samples(sample, record_tag)
    except (OSError, ValueError, SampleError) as exc:
        report.error(f"error: cannot read sample {sample}: {exc}")
        report.finish()
    errors, shown = 0, 0
    for index, record in enumerate(records, start=1):
        notes: list[str] = []
        try:
            snapshot = mapping.map_record(record, notes)
            snapshot.pop("_flags", None)
            CaseSnapshot.model_validate(snapshot)
        except MappingError as exc:
            errors += 1
            where = f"{file}:{exc.line}: " if exc.line else f"{file}: "
            report.error(codes.mask_text(f"{where}record {exc.record_key or f'#{index}'}: field {exc.field}: {exc.rule}"),
                         exc.line, record=exc.record_key or f"#{index}", field=exc.field, rule=codes.mask_text(exc.rule))
            continue
        except ValidationError as exc:
            errors += 1
            for problem, detail in zip(describe_errors(exc), exc.errors()):
                line = mapping.field_line(tuple(detail["loc"]))
                where = f"{file}:{line}: " if line else f"{file}: "
                report.error(codes.mask_text(f"{where}record {snapshot.get('source_key')}: {problem}"), line,
                             record=snapshot.get("source_key"), rule=codes.mask_text(problem))
            continue
        for note in notes:
            report.out["notes"].append({"record": snapshot["source_key"], "note": note})
            report.info(f"note: record {snapshot['source_key']}: {note}")
        if shown < show:
            shown += 1
            report.info(codes.mask_text(json.dumps(snapshot, ensure_ascii=False, indent=2)))
    report.out["records"] = {"total": len(records), "mapped": len(records) - errors, "with_errors": errors}
    report.info(f"{len(records)} records: {len(records) - errors} mapped, {errors} with errors")
    report.finish()
