"""`tongban adapter describe FILE`: what a mapping file's source adapter will talk to.

For a SOAP source it loads the WSDL and lists services, ports, operations and the fields of the records at
`records_path` (what a mapping author needs to write the `case:` section). For REST, file drops and third-party
adapters it prints the declared settings. Secrets are never printed: a mapping file only names the environment
variables that hold them, and the command says whether each is set, never its value.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True)

_SECRET_KEY = re.compile(r"(password|secret|token|api_key|apikey|key)$", re.I)


def redacted(settings: Any) -> Any:
    """Settings safe to print: variable names (…_env) stay, with whether they are set; any literal value under
    a secret-looking key is replaced (the loader refuses those, but a third-party adapter's settings may differ)."""
    if isinstance(settings, dict):
        out: dict[str, Any] = {}
        for key, value in settings.items():
            if isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                out[key] = f"{value} ({'set' if value in os.environ else 'NOT SET'})"
            elif isinstance(key, str) and _SECRET_KEY.search(key) and isinstance(value, str) and value:
                out[key] = "***"
            else:
                out[key] = redacted(value)
        return out
    if isinstance(settings, list):
        return [redacted(item) for item in settings]
    return settings


def _print_soap(result: dict[str, Any]) -> None:
    typer.echo(f"WSDL {result['wsdl']}")
    for service, ports in result["services"].items():
        for port, info in ports.items():
            typer.echo(f"  service {service}  port {port}  address {info.get('address')}")
            for name, op in info["operations"].items():
                inputs = ", ".join(f"{f['name']}{'' if f['required'] else '?'}" for f in op["input"])
                typer.echo(f"    operation {name}({inputs})")
    if "record_fields" in result:
        typer.echo(f"records of {result['operation']} at {result['records_path'] or '(the response)'}:")
        for f in result["record_fields"]:
            flags = ("required" if f["required"] else "optional") + (", repeated" if f["repeated"] else "")
            typer.echo(f"  {f['name']:<24} {f['type']:<12} {flags}")


@app.command()
def describe(file: Path = typer.Argument(..., help="the mapping file whose source to describe"),
             as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """Describe the source a mapping file declares: the WSDL's operations and record fields for SOAP, the
    declared settings for REST, file drops and other adapters. Exits 1 when the file or the source is wrong."""
    from adapters.base import SourceError
    from tongban.mapping import MappingFileError, load_mapping

    try:
        mapping = load_mapping(file)
    except MappingFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    source = dict(mapping.source)
    kind = source.get("adapter")
    header = {"system": mapping.system, "department": mapping.department, "adapter": kind}
    if kind == "soap":
        from adapters.soap import describe as describe_soap

        try:
            result = describe_soap(source, system=mapping.system)
        except SourceError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1)
        if as_json:
            typer.echo(json.dumps({**header, **result}, ensure_ascii=False, indent=2))
        else:
            typer.echo(f"{mapping.system} ({mapping.department}): soap")
            _print_soap(result)
        return
    settings = redacted(source)
    if as_json:
        typer.echo(json.dumps({**header, "settings": settings}, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{mapping.system} ({mapping.department}): {kind}")
    typer.echo(json.dumps(settings, ensure_ascii=False, indent=2))
