"""What the sandbox platform's unified item catalogue (统一事项目录) holds when it starts: every 实施编码 that the
mapping files look up, so a new department's items are known without reading any source code.

For every mapping file (`*.yaml`) in a folder:
- each table under `tables:` — a plain path (`items: tables/x.csv`) or `{path, encoding}` — is read as CSV,
  relative to the mapping file, in the declared encoding; a plain path is read as UTF-8 (with or without BOM)
  and, when that fails, as GB18030; every cell holding a 31-character 实施编码 is an item (its row's `name` and
  `item_type` columns, when present, name and type it; the mapping's `department` is its implementing body);
- every 实施编码 written in the mapping itself (a `const`, a `map` value) is an item too.
Every CSV under the folder's `tables/` is read the same way (tables nobody names yet are still known).

This module refuses to judge a mapping: a file or table it cannot read is skipped with a warning, and the platform
starts anyway (`tongban mapping check` is where a broken mapping is reported).
"""
from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from tongban.cases.models import ITEM_CODE_PATTERN

log = logging.getLogger("sandbox.catalogue")
_ITEM_CODE = re.compile(ITEM_CODE_PATTERN)
PLAIN_PATH_ENCODINGS = ("utf-8-sig", "gb18030")
MAX_TABLE_BYTES = 64 * 1024 * 1024


def read_table(path: Path, encoding: str | None = None) -> list[dict[str, str]]:
    """A CSV table's rows: in `encoding` when declared, else UTF-8 (BOM or not) falling back to GB18030."""
    raw = path.read_bytes()[:MAX_TABLE_BYTES]
    for candidate in ([encoding] if encoding else PLAIN_PATH_ENCODINGS):
        try:
            text = raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        return list(csv.DictReader(io.StringIO(text, newline="")))
    raise UnicodeDecodeError(encoding or "utf-8-sig/gb18030", raw, 0, 1, f"{path} is in none of the encodings tried")


def table_specs(doc: dict) -> Iterator[tuple[str, str | None]]:
    """(relative path, declared encoding or None) of every table a mapping names."""
    tables = doc.get("tables")
    if not isinstance(tables, dict):
        return
    for spec in tables.values():
        if isinstance(spec, str):
            yield spec, None
        elif isinstance(spec, dict) and isinstance(spec.get("path"), str):
            encoding = spec.get("encoding")
            yield spec["path"], encoding if isinstance(encoding, str) and encoding != "auto" else None


def _codes_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _codes_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _codes_in(value)
    elif isinstance(node, str) and _ITEM_CODE.match(node.strip()):
        yield node.strip()


def _item(code: str, row: dict | None, body: str | None) -> dict[str, Any]:
    row = row or {}
    name = (row.get("name") or "").strip() if isinstance(row.get("name"), str) else ""
    item_type = (row.get("item_type") or "").strip() if isinstance(row.get("item_type"), str) else ""
    return {"implementation_code": code, "name": name or f"事项 {code[19:]}", "item_type": item_type or code[21:23],
            "implementing_body": body, "implementing_body_code": code[:18], "level": code[18], "status": "active",
            "replaced_by": None}


def _rows_items(rows: Iterable[dict], body: str | None, items: dict[str, dict]) -> None:
    for row in rows:
        for value in row.values():
            code = value.strip() if isinstance(value, str) else ""
            if _ITEM_CODE.match(code) and code not in items:
                items[code] = _item(code, row, body)


def _read(path: Path, encoding: str | None) -> list[dict[str, str]]:
    try:
        return read_table(path, encoding)
    except (OSError, csv.Error, UnicodeDecodeError, LookupError) as exc:
        log.warning("sandbox catalogue: table %s skipped: %s", path, exc)
        return []


def seed_items(directories: Iterable[Path]) -> list[dict[str, Any]]:
    """The catalogue's first version: every 实施编码 the mapping files in `directories` look up or name."""
    items: dict[str, dict[str, Any]] = {}
    for directory in dict.fromkeys(Path(d).resolve() for d in directories):
        named: set[Path] = set()
        for mapping in sorted(directory.glob("*.yaml")):
            try:
                doc = yaml.safe_load(mapping.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                log.warning("sandbox catalogue: mapping %s skipped: %s", mapping, exc)
                continue
            if not isinstance(doc, dict):
                continue
            body = str(doc["department"]) if doc.get("department") else None
            for rel, encoding in table_specs(doc):
                path = (mapping.parent / rel).resolve()
                named.add(path)
                _rows_items(_read(path, encoding), body, items)
            for code in _codes_in(doc.get("case")):
                items.setdefault(code, _item(code, None, body))
        for path in sorted((directory / "tables").glob("*.csv")):
            if path.resolve() not in named:
                _rows_items(_read(path, None), None, items)
    return sorted(items.values(), key=lambda item: item["implementation_code"])
