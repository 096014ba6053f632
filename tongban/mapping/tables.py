"""Lookup tables of a mapping file (legacy item → 实施编码 …): declared, confined, decoded, bounded.

A table is declared under `tables:` as a path or as `{path, encoding}`:

    tables:
      items: tables/samr_items.csv                              # UTF-8, with or without a BOM
      towns: {path: tables/towns.csv, encoding: gb18030}        # any codec Python knows (gb18030, gbk, big5 …)

What this module refuses (each a `MappingFileError` naming the mapping file and the line that declares the table):
  - an absolute path, a path that leaves the mapping file's folder (`../../etc/passwd`), or a symlink whose target
    is outside it: tables are configuration kept beside the mapping, never files elsewhere on the machine;
  - anything that is not a regular file (`/dev/zero`, a FIFO, a folder);
  - a table larger than MAX_TABLE_BYTES (it is read whole, so the cap bounds memory);
  - an unknown encoding name, or bytes that are not in the declared encoding — the message names the table file and
    its line, and says which encoding was declared;
  - an unreadable CSV (NUL bytes, a field over the csv module's limit), a table without a header row;
  - unknown keys in a table declaration (`{path, encoding}` only).
"""
from __future__ import annotations

import codecs
import csv
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MappingFileError

MAX_TABLE_BYTES = 16 * 1024 * 1024  # the largest code table seen is ~2 MB (every 实施编码 of one department)
TABLE_KEYS = {"path", "encoding"}
DEFAULT_ENCODING = "utf-8"


class TableRows(list):
    """The rows of a table (dicts keyed by the header) and its `columns`, even when it has no rows."""

    columns: list[str]


@dataclass(frozen=True)
class TableSpec:
    name: str
    path: str
    encoding: str
    line: int | None


def table_spec(name: str, node: Any, mapping_path: str, line: int | None) -> TableSpec:
    """One `tables:` entry as declared (a path string or `{path, encoding}`)."""
    lines = getattr(node, "key_lines", {})
    if isinstance(node, str):
        rel, encoding = node, DEFAULT_ENCODING
    elif isinstance(node, dict):
        unknown = sorted(set(node) - TABLE_KEYS, key=str)
        if unknown:
            raise MappingFileError(mapping_path, lines.get(unknown[0], line),
                                   f"table {name}: unknown key {unknown[0]!r} (allowed: path, encoding)")
        if not isinstance(node.get("path"), str) or not node["path"]:
            raise MappingFileError(mapping_path, line, f"table {name}: needs `path:` (relative to the mapping file)")
        rel, encoding = node["path"], node.get("encoding", DEFAULT_ENCODING)
        if not isinstance(encoding, str):
            raise MappingFileError(mapping_path, lines.get("encoding", line), f"table {name}: encoding must be a name")
    else:
        raise MappingFileError(mapping_path, line, f"table {name}: give a path or {{path: …, encoding: …}}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise MappingFileError(mapping_path, lines.get("encoding", line) if isinstance(node, dict) else line,
                               f"table {name}: unknown encoding {encoding!r} (e.g. utf-8, gb18030, gbk)") from None
    return TableSpec(name, rel, encoding, line)


def confined_path(base: Path, rel: str, mapping_path: str, line: int | None, what: str) -> Path:
    """`rel` resolved under `base` (the mapping file's folder), symlinks followed, or a MappingFileError."""
    if "\x00" in rel:
        raise MappingFileError(mapping_path, line, f"{what}: path contains a NUL byte")
    candidate = Path(rel)
    if candidate.is_absolute():
        raise MappingFileError(mapping_path, line, f"{what}: {rel} is an absolute path; table paths are relative to "
                                                   f"the mapping file's folder ({base})")
    root = base.resolve()
    outside = MappingFileError(mapping_path, line, f"{what}: {rel} leads outside the mapping file's folder ({root}); "
                                                   f"keep tables beside the mapping file")
    # Climbing out by `..` is refused before the file is looked for: whether something exists outside the folder
    # is not the mapping's business (and the answer must not depend on how deep the folder sits).
    if not Path(os.path.normpath(root / candidate)).is_relative_to(root):
        raise outside
    try:
        resolved = (root / candidate).resolve(strict=True)
    except FileNotFoundError:
        raise MappingFileError(mapping_path, line, f"{what}: cannot read table {rel}: no such file") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        raise MappingFileError(mapping_path, line, f"{what}: cannot read table {rel}: {exc}") from None
    if not resolved.is_relative_to(root):  # a symlink inside the folder that points out of it
        raise outside
    return resolved


def read_table(spec: TableSpec, base: Path, mapping_path: str) -> TableRows:
    """The rows of a table, as dicts keyed by its header row."""
    what = f"table {spec.name}"
    path = confined_path(base, spec.path, mapping_path, spec.line, what)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)  # the resolved path: O_NOFOLLOW refuses a symlink swapped in since
    except OSError as exc:
        raise MappingFileError(mapping_path, spec.line, f"{what}: cannot read {spec.path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MappingFileError(mapping_path, spec.line, f"{what}: {spec.path} is not a regular file")
        chunks, size = [], 0
        while size <= MAX_TABLE_BYTES:  # read at most one byte past the cap, whatever the file claims
            chunk = os.read(fd, min(1 << 20, MAX_TABLE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        raw = b"".join(chunks)
    except OSError as exc:
        raise MappingFileError(mapping_path, spec.line, f"{what}: cannot read {spec.path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_TABLE_BYTES:
        raise MappingFileError(mapping_path, spec.line, f"{what}: {spec.path} is larger than {MAX_TABLE_BYTES} bytes")
    return parse_table(raw, spec, mapping_path)


def parse_table(raw: bytes, spec: TableSpec, mapping_path: str) -> TableRows:
    what = f"table {spec.name}"
    encoding = "utf-8-sig" if codecs.lookup(spec.encoding).name == "utf-8" else spec.encoding
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        table_line = raw[:exc.start].count(b"\n") + 1
        hint = "" if spec.encoding != DEFAULT_ENCODING else " — declare it: {path: …, encoding: gb18030}"
        raise MappingFileError(mapping_path, spec.line,
                               f"{what}: {spec.path} line {table_line} is not {spec.encoding} "
                               f"(byte {exc.object[exc.start]:#04x} at offset {exc.start}){hint}") from None
    if text.startswith("\ufeff"):  # a BOM in another encoding (GB18030 has one too)
        text = text[1:]
    if "\x00" in text:
        raise MappingFileError(mapping_path, spec.line, f"{what}: {spec.path} contains NUL bytes")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = TableRows(reader)
    except csv.Error as exc:
        raise MappingFileError(mapping_path, spec.line, f"{what}: {spec.path} line {reader.line_num + 1}: "
                                                        f"not readable CSV ({exc})") from None
    if not reader.fieldnames:
        raise MappingFileError(mapping_path, spec.line, f"{what}: {spec.path} has no header row")
    rows.columns = [str(name) for name in reader.fieldnames]
    return rows


def load_tables(doc: Any, mapping_path: Path) -> tuple[dict[str, TableRows], dict[str, list[str]], dict[str, TableSpec]]:
    """(rows, columns, specs) by name of every table the document's `tables:` section declares, read beside
    `mapping_path` (any YAML file of the mapping language: department mappings, flowback sources)."""
    path_text = str(mapping_path)
    node = doc.get("tables") or {}
    if not isinstance(node, dict):
        raise MappingFileError(path_text, getattr(doc, "key_lines", {}).get("tables"),
                               "tables: must map names to table files")
    rows: dict[str, TableRows] = {}
    specs: dict[str, TableSpec] = {}
    for name, entry in node.items():
        specs[name] = table_spec(str(name), entry, path_text, getattr(node, "key_lines", {}).get(name))
        rows[name] = read_table(specs[name], Path(mapping_path).parent, path_text)
    return rows, {name: table.columns for name, table in rows.items()}, specs
