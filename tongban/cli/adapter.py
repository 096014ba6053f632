"""`tongban adapter describe FILE` and `tongban adapter schema KIND`.

`describe`: what a mapping file's source adapter will talk to. For a SOAP source it loads the WSDL and lists services,
ports, operations and the fields of the records at `records_path` (what a mapping author needs to write the `case:`
section). For REST, file drops and third-party adapters it prints the declared settings. Secrets are never printed: a
mapping file only names the environment variables that hold them, and the command says whether each is set, never its
value; every value under `auth:`, under a credential-looking key, or expanded from a `${VAR}` whose name looks like a
secret (…PASSWORD, …TOKEN, …SECRET, …KEY …) is shown as `***`.

`schema`: the settings an adapter declares (its `settings_model`), as a table or as JSON Schema (`--json`).
Exit codes: 0 printed; 1 the mapping file, the source or the adapter is wrong (one line says what).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer
from tongban.settings import environment_value

app = typer.Typer(no_args_is_help=True)

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_key|apikey|key|credentials?)$", re.I)
# Settings under `auth:` that say how to log in, not with what: shown as written. Everything else there is masked.
_AUTH_SHAPE_KEYS = {"type", "url", "method", "header", "prefix", "token_path", "expires_in_path", "body_format",
                    "scope", "token_url", "conn_id", "refresh_before_seconds"}
MASK = "***"


def redacted(settings: Any, secret_locs: set[tuple] = frozenset(), loc: tuple = (), in_auth: bool = False) -> Any:
    """Settings safe to print: variable names (…_env) stay, with whether they are set; a literal value under a
    secret-looking key, any value under `auth:` that is not part of the login's shape, and any value expanded from a
    secret-looking `${VAR}` (`secret_locs`) are replaced by ***."""
    if loc in secret_locs:
        return MASK
    if isinstance(settings, dict):
        out: dict[str, Any] = {}
        for key, value in settings.items():
            here = (*loc, key)
            inside = in_auth or key == "auth"
            if isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                out[key] = f"{value} ({'set' if environment_value(value) is not None else 'NOT SET'})"
            elif isinstance(key, str) and _SECRET_KEY.search(key) and isinstance(value, (str, int)) and value != "":
                out[key] = MASK
            elif in_auth and not isinstance(value, (dict, list)) and key not in _AUTH_SHAPE_KEYS and value not in (None, ""):
                out[key] = MASK
            else:
                out[key] = redacted(value, secret_locs, here, inside)
        return out
    if isinstance(settings, list):
        return [redacted(item, secret_locs, (*loc, i), in_auth) for i, item in enumerate(settings)]
    return settings


def secret_locations(mapping) -> set[tuple]:
    """Where in `source:` a value came from a `${VAR}` whose name looks like a secret."""
    from tongban.mapping.loader import SECRET_VARIABLE

    return {loc for loc, name in getattr(mapping, "env_refs", []) if SECRET_VARIABLE.search(name)}


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
    settings = redacted(source, secret_locations(mapping))
    if as_json:
        typer.echo(json.dumps({**header, "settings": settings}, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{mapping.system} ({mapping.department}): {kind}")
    typer.echo(json.dumps(settings, ensure_ascii=False, indent=2))


@app.command()
def schema(kind: str = typer.Argument(..., help="the adapter kind (rest, soap, files, … any registered adapter)"),
           as_json: bool = typer.Option(False, "--json", help="print the JSON Schema")) -> None:
    """The settings an adapter declares for a mapping file's `source:` section: every setting with its type, default
    and meaning (--json: the JSON Schema). Exits 1 when no adapter is registered under KIND or it declares no model."""
    from tongban.mapping.schema_walk import setting_rows
    from tongban.mapping.source_check import settings_model_of

    try:
        cls, model = settings_model_of(kind)
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    except Exception as exc:  # a third-party module that fails to import
        typer.echo(f"error: adapter {kind!r} cannot be loaded ({type(exc).__name__}: {exc})", err=True)
        raise typer.Exit(1)
    if model is None:
        typer.echo(f"error: adapter {kind!r} ({cls.__module__}.{cls.__name__}) declares no settings model", err=True)
        raise typer.Exit(1)
    try:
        document = model.model_json_schema()
    except Exception as exc:  # a third-party model pydantic cannot describe
        typer.echo(f"error: the settings model of adapter {kind!r} has no JSON Schema ({type(exc).__name__}: {exc})",
                   err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    typer.echo(f"source: settings of adapter {kind} ({cls.__module__}.{cls.__name__}); `adapter: {kind}` is required")
    for row in setting_rows(document):
        flags = "required" if row.required else (f"default {json.dumps(row.default, ensure_ascii=False)}"
                                                 if row.has_default else "optional")
        variant = f" [{row.variant}]" if row.variant else ""
        typer.echo(f"  {row.name}{variant}: {row.type}; {flags}" + (f" — {row.description}" if row.description else ""))
