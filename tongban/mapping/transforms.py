"""Named value transforms a mapping file can apply. Each takes the value and the field spec and returns
the new value or raises ValueError with the rule that failed.

`compile_transform(name, spec)` gives the engine a function of (value, ctx) with the spec's options read once, when the
mapping is loaded: the formats of a date-time, its zone. Date-times in the common `%Y-%m-%d %H:%M:%S` / `%Y-%m-%d`
shape are read with one regular expression instead of strptime's (anything else, or anything the shortcut does
not accept, goes through strptime exactly as before, with the same errors).
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from tongban import codes

BEIJING = ZoneInfo("Asia/Shanghai")
CASE_TIME = "%Y%m%dT%H%M%S"  # GB/T 39046 time format


def _parse_first(text: str, formats: list[str]) -> datetime | None:
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _formats(spec: dict, default: str) -> list[str]:
    """`format:` is one strptime format or a list of them, tried in order: one department's exports
    often write the same field differently per file type (CSV text `2024/03/05 14:22`, XLSX date cells)."""
    fmt = spec.get("format", default)
    return [str(f) for f in fmt] if isinstance(fmt, (list, tuple)) else [str(fmt)]


_QUICK = {  # formats read without strptime: the exact two-digit shape only (strptime also takes `2024-3-1 9:30:00`)
    "%Y-%m-%d %H:%M:%S": re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})", re.ASCII),
    "%Y-%m-%d": re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII),
}
NO_DST_SINCE = 1992  # Asia/Shanghai has kept UTC+8 without summer time since 1991: its wall time is its own


def _quick_parse(text: str, formats: list[str]) -> datetime | None:
    """strptime's answer when the first format is a quick one and the text has its exact shape, else None."""
    pattern = _QUICK.get(formats[0])
    match = pattern.fullmatch(text) if pattern is not None else None
    if match is None:
        return None
    try:
        return datetime(*map(int, match.groups()))
    except ValueError:
        return None  # not a real date: strptime says so, in its own words


def _compile_datetime(spec: dict) -> Callable[[Any, dict], str]:
    formats = _formats(spec, "%Y-%m-%d %H:%M:%S")
    fixed = spec.get("timezone")

    def transform(value: Any, ctx: dict) -> str:
        text = str(value).strip()
        parsed = _quick_parse(text, formats) or _parse_first(text, formats)
        if parsed is None:
            raise ValueError(f"{value!r} is not a valid date-time in format {' or '.join(formats)}")
        zone = ZoneInfo(fixed or ctx.get("timezone") or "Asia/Shanghai")
        if zone is BEIJING and parsed.year >= NO_DST_SINCE:
            return f"{parsed.year:04d}{parsed.month:02d}{parsed.day:02d}T{parsed.hour:02d}{parsed.minute:02d}" \
                   f"{parsed.second:02d}"
        return parsed.replace(tzinfo=zone).astimezone(BEIJING).strftime(CASE_TIME)
    return transform


def _compile_date(spec: dict) -> Callable[[Any, dict], str]:
    formats = _formats(spec, "%Y-%m-%d")

    def transform(value: Any, ctx: dict) -> str:
        text = str(value).strip()
        parsed = _quick_parse(text, formats) or _parse_first(text, formats)
        if parsed is None:
            raise ValueError(f"{value!r} is not a valid date in format {' or '.join(formats)}")
        return parsed.strftime("%Y%m%d")
    return transform


def _datetime(value: Any, spec: dict, ctx: dict) -> str:
    formats = _formats(spec, "%Y-%m-%d %H:%M:%S")
    text = codes.normalise_spaces(str(value)) if hasattr(codes, "normalise_spaces") else str(value).strip()
    parsed = _parse_first(text, formats)
    if parsed is None:
        raise ValueError(f"{value!r} is not a valid date-time in format {' or '.join(formats)}")
    zone = ZoneInfo(spec.get("timezone") or ctx.get("timezone") or "Asia/Shanghai")
    return parsed.replace(tzinfo=zone).astimezone(BEIJING).strftime(CASE_TIME)


def _date(value: Any, spec: dict, ctx: dict) -> str:
    formats = _formats(spec, "%Y-%m-%d")
    parsed = _parse_first(str(value).strip(), formats)
    if parsed is None:
        raise ValueError(f"{value!r} is not a valid date in format {' or '.join(formats)}")
    return parsed.strftime("%Y%m%d")


def _region(value: Any, spec: dict, ctx: dict) -> str:
    """行政区划 → the current 6-digit county code. A retired code (綦江县 500222 → 綦江区 500110) is translated and
    noted (the `notes` of map_record, written into the ledger), or refused with `retired: reject`; a 9/12-digit town or village code
    is rolled up to its county and noted."""
    try:
        region = codes.parse_region(str(value))
    except codes.CodeError as exc:
        raise ValueError(exc.rule) from None
    field = ctx.get("field", "region")
    if region.retired_from:
        if spec.get("retired", "translate") == "reject":
            raise ValueError(f"{region.retired_from} is a retired region code (its successor is {region.county_code} "
                             f"{region.name}) and the mapping says retired: reject")
        ctx.setdefault("notes", []).append(f"{field}: retired region code {region.retired_from} rewritten to its "
                                           f"successor {region.county_code} ({region.name})")
    if region.rolled_up:
        ctx.setdefault("notes", []).append(f"{field}: {region.code} rolled up to its county {region.county_code} "
                                           f"({region.name})")
    return region.county_code


def _identity(value: Any, spec: dict, ctx: dict) -> str:
    """证件号码: normalised, then validated by its 证件类型 (111 居民身份证 → GB 11643, 001 → GB 32100)."""
    id_type = ctx.get("id_type")
    text = codes.normalise(str(value))
    try:
        if id_type == "111":
            return codes.parse_id_number(text).value
        if id_type == "001":
            # Registered codes that fail the checksum exist: accept them (flagged in the ledger), don't drop.
            parsed = codes.parse_credit_code(text, strict=False)
            if not parsed.checksum_ok:
                ctx.setdefault("flags", []).append("credit code checksum fails (registered code kept)")
            return parsed.value
    except codes.CodeError as exc:
        raise ValueError(exc.rule) from None
    return text


def _satisfaction(value: Any, spec: dict, ctx: dict) -> int:
    """好差评: national scale is 1 非常满意 … 5 非常不满意; `scale: reversed` flips a legacy 5-is-best scale."""
    try:
        score = int(str(value).strip())
    except ValueError:
        raise ValueError(f"satisfaction {value!r} is not a number 1–5") from None
    if not 1 <= score <= 5:
        raise ValueError(f"satisfaction {score} is outside 1–5")
    scale = spec.get("scale", "national")
    if scale not in ("national", "reversed"):
        raise ValueError(f"scale must be national or reversed, not {scale!r}")
    return 6 - score if scale == "reversed" else score


def _int(value: Any, spec: dict, ctx: dict) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def _float(value: Any, spec: dict, ctx: dict) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None


def _str(value: Any, spec: dict, ctx: dict) -> str:
    return str(value).strip()


def _upper(value: Any, spec: dict, ctx: dict) -> str:
    return codes.normalise(str(value))


TRANSFORMS: dict[str, Callable[[Any, dict, dict], Any]] = {
    "datetime": _datetime, "date": _date, "region": _region, "identity": _identity,
    "satisfaction": _satisfaction, "int": _int, "float": _float, "str": _str, "upper": _upper,
}

_COMPILERS: dict[str, Callable[[dict], Callable[[Any, dict], Any]]] = {
    "datetime": _compile_datetime, "date": _compile_date,
}


def compile_transform(name: str, spec: dict) -> Callable[[Any, dict], Any]:
    """The transform `name` with the field's options bound: a function of (value, ctx)."""
    compiler = _COMPILERS.get(name)
    if compiler is not None:
        return compiler(spec)
    function = TRANSFORMS[name]
    return lambda value, ctx: function(value, spec, ctx)
