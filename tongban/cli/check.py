"""`tongban check …`: validate one national code and show its parts.

Exit 0 when the code is valid, 1 with `invalid <field>: <rule>` when not. ID numbers are personal data:
they are shown masked and their birth date and sex are not printed; error rules never repeat the value.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

import typer

from tongban.cli.output import JSON_OPTION, emit_json

app = typer.Typer(no_args_is_help=True)
T = TypeVar("T")
Rows = list[tuple[str, object]]


def _show(rows: Rows, as_json: bool = False) -> None:
    if as_json:  # one key per row; repeated labels (warnings) become a list
        data: dict[str, object] = {}
        for label, value in rows:
            key = label.replace(" ", "_").replace("-", "_")
            if key in data:
                data[key] = [*(data[key] if isinstance(data[key], list) else [data[key]]), value]
            else:
                data[key] = value
        emit_json(data)
        return
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        typer.echo(f"{label.ljust(width)}  {'-' if value is None else value}")


def _parsed(parse: Callable[..., T], *args: Any, **options: Any) -> T:
    """`parse(*args, **options)`, or exit 1 with `invalid <field>: <rule>` (a rule never repeats the value)."""
    from tongban.codes import CodeError

    try:
        return parse(*args, **options)
    except CodeError as error:
        typer.echo(f"invalid {error.field}: {error.rule}", err=True)
        raise typer.Exit(1) from None


def _parts(parsed: object, *names: str) -> Rows:
    """Rows of parts shown as they are, each labelled by its name (`county_code` → "county code")."""
    return [(name.replace("_", " "), getattr(parsed, name)) for name in names]


def _code_command(name: str, parser: str, value_help: str) -> Callable[[Callable[[Any], Rows]], Callable[[Any], Rows]]:
    """`tongban check <name> VALUE [--json]`: VALUE parsed by `tongban.codes.<parser>` (invalid: exit 1 with the
    rule), then shown as the rows the decorated function makes of it. The function's docstring is the command's help."""
    def register(rows_of: Callable[[Any], Rows]) -> Callable[[Any], Rows]:
        def command(value: str = typer.Argument(..., help=value_help), as_json: bool = JSON_OPTION) -> None:
            import tongban.codes

            _show(rows_of(_parsed(getattr(tongban.codes, parser), value)), as_json)
        command.__doc__ = rows_of.__doc__
        app.command(name)(command)
        return rows_of
    return register


@_code_command("id-number", "parse_id_number", "居民身份证号码 (shown masked).")
def id_number(parsed) -> Rows:
    """Check a 居民身份证号码 (GB 11643): length, birth date and check digit."""
    from tongban.codes import mask_id_number

    return [("id-number", mask_id_number(parsed.value)), ("check", f"{parsed.check} (ok)"),
            ("birth date", "valid (not shown: personal data)")]


@app.command("credit-code")
def credit_code(
    value: str = typer.Argument(..., help="统一社会信用代码 (18 characters)."),
    lenient: bool = typer.Option(False, "--lenient", help="Flag a wrong check character instead of failing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a 统一社会信用代码 (GB 32100) and show its parts."""
    from tongban.codes import parse_credit_code

    parsed = _parsed(parse_credit_code, value, strict=not lenient)
    _show([
        ("credit-code", parsed.value),
        ("registering body", f"{parsed.registering_body} {parsed.registering_body_name or '(unknown)'}"),
        ("category", f"{parsed.category} {parsed.category_name or '(unknown)'}"),
        *_parts(parsed, "region", "org_code"),
        ("check", f"{parsed.check} ({'ok' if parsed.checksum_ok else 'FAILS CHECKSUM — flagged'})"),
    ], as_json)


@_code_command("org-code", "parse_org_code", "组织机构代码, with or without the hyphen.")
def org_code(parsed) -> Rows:
    """Check a 组织机构代码 (GB 11714)."""
    return [("org-code", parsed.formatted), ("check", f"{parsed.check} (ok)")]


@_code_command("region", "parse_region", "行政区划代码: 6, 9 or 12 digits.")
def region(parsed) -> Rows:
    """Resolve a Chongqing 行政区划代码 to the county-level unit cases are routed to."""
    return [("region", parsed.code), *_parts(parsed, "county_code", "name", "level", "retired_from"),
            ("rolled up", "yes" if parsed.rolled_up else "no")]


@_code_command("item-code", "parse_item_code", "基本编码 (12), 实施编码 (31) or 业务办理项编码 (33).")
def item_code(parsed) -> Rows:
    """Take apart a 政务服务事项编码."""
    rows = [("item-code", parsed.value), *_parts(parsed, "kind", "basic_code", "region_prefix"),
            ("item type", f"{parsed.item_type} {parsed.item_type_name}"), *_parts(parsed, "main", "sub")]
    if parsed.kind != "basic":
        rows += [("implementing body", parsed.implementing_body_credit_code),
                 ("level", f"{parsed.level} {parsed.level_name}")]
    if parsed.handling_suffix is not None:
        rows.append(("handling suffix", parsed.handling_suffix))
    return rows + [("warning", flag) for flag in parsed.flags]


@_code_command("licence-id", "parse_licence_id", "电子证照标识 (1.2.156.3005.2. …).")
def licence_id(parsed) -> Rows:
    """Check an 电子证照标识 (GB/T 36904), including its MOD 37,36 check character."""
    return [("licence-id", parsed.value), *_parts(parsed, "type_code", "issuer_code", "serial", "version"),
            ("check", f"{parsed.check} (ok)")]
