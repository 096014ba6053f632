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


def _show(rows: list[tuple[str, object]], as_json: bool = False) -> None:
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


@app.command("id-number")
def id_number(value: str = typer.Argument(..., help="居民身份证号码 (shown masked)."),
             as_json: bool = JSON_OPTION) -> None:
    """Check a 居民身份证号码 (GB 11643): length, birth date and check digit."""
    from tongban.codes import mask_id_number, parse_id_number

    parsed = _parsed(parse_id_number, value)
    _show([
        ("id-number", mask_id_number(parsed.value)),
        ("check", f"{parsed.check} (ok)"),
        ("birth date", "valid (not shown: personal data)"),
    ], as_json)


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
        ("region", parsed.region),
        ("org code", parsed.org_code),
        ("check", f"{parsed.check} ({'ok' if parsed.checksum_ok else 'FAILS CHECKSUM — flagged'})"),
    ], as_json)


@app.command("org-code")
def org_code(value: str = typer.Argument(..., help="组织机构代码, with or without the hyphen."),
             as_json: bool = JSON_OPTION) -> None:
    """Check a 组织机构代码 (GB 11714)."""
    from tongban.codes import parse_org_code

    parsed = _parsed(parse_org_code, value)
    _show([("org-code", parsed.formatted), ("check", f"{parsed.check} (ok)")], as_json)


@app.command("region")
def region(value: str = typer.Argument(..., help="行政区划代码: 6, 9 or 12 digits."),
             as_json: bool = JSON_OPTION) -> None:
    """Resolve a Chongqing 行政区划代码 to the county-level unit cases are routed to."""
    from tongban.codes import parse_region

    parsed = _parsed(parse_region, value)
    _show([
        ("region", parsed.code),
        ("county code", parsed.county_code),
        ("name", parsed.name),
        ("level", parsed.level),
        ("retired from", parsed.retired_from),
        ("rolled up", "yes" if parsed.rolled_up else "no"),
    ], as_json)


@app.command("item-code")
def item_code(value: str = typer.Argument(..., help="基本编码 (12), 实施编码 (31) or 业务办理项编码 (33)."),
             as_json: bool = JSON_OPTION) -> None:
    """Take apart a 政务服务事项编码."""
    from tongban.codes import parse_item_code

    parsed = _parsed(parse_item_code, value)
    rows: list[tuple[str, object]] = [
        ("item-code", parsed.value),
        ("kind", parsed.kind),
        ("basic code", parsed.basic_code),
        ("region prefix", parsed.region_prefix),
        ("item type", f"{parsed.item_type} {parsed.item_type_name}"),
        ("main", parsed.main),
        ("sub", parsed.sub),
    ]
    if parsed.kind != "basic":
        rows += [
            ("implementing body", parsed.implementing_body_credit_code),
            ("level", f"{parsed.level} {parsed.level_name}"),
        ]
    if parsed.handling_suffix is not None:
        rows.append(("handling suffix", parsed.handling_suffix))
    for flag in parsed.flags:
        rows.append(("warning", flag))
    _show(rows, as_json)


@app.command("licence-id")
def licence_id(value: str = typer.Argument(..., help="电子证照标识 (1.2.156.3005.2. …)."),
             as_json: bool = JSON_OPTION) -> None:
    """Check an 电子证照标识 (GB/T 36904), including its MOD 37,36 check character."""
    from tongban.codes import parse_licence_id

    parsed = _parsed(parse_licence_id, value)
    _show([
        ("licence-id", parsed.value),
        ("type code", parsed.type_code),
        ("issuer code", parsed.issuer_code),
        ("serial", parsed.serial),
        ("version", parsed.version),
        ("check", f"{parsed.check} (ok)"),
    ], as_json)
