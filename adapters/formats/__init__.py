"""Streaming readers for dropped files, one module per format.

A reader takes a path and `ReadOptions` and yields `(location, data, error)` triples in constant memory:
`location` is "line 12" / "record 7" / "row 3", `data` the record as a dict (or what could be read of it),
`error` the reason the record is unreadable (None when fine). A reader raises `FileUnreadable` — before
yielding anything — when the file as a whole cannot be read (not XML, hostile XML, wrong encoding …).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

Row = tuple[str, dict[str, Any], str | None]


class FileUnreadable(Exception):
    """The whole file cannot be read; the adapter moves it to failed/ with this reason."""


@dataclass
class ReadOptions:
    encoding: str = "utf-8"                 # utf-8, utf-8-sig, gbk, gb18030 or auto
    max_field_bytes: int = 64 * 1024        # a longer field makes its record unreadable
    csv: dict[str, Any] = field(default_factory=dict)   # delimiter, quotechar, header (bool), fieldnames
    xml_record_tag: str | None = None
    max_xml_bytes: int = 4 * 1024 ** 3
    sheet: str | None = None


def reader_for(fmt: str) -> Callable[[Path, ReadOptions], Iterator[Row]]:
    # Imported lazily so that a CSV-only deployment never imports openpyxl.
    if fmt == "csv":
        from adapters.formats.delimited import read_csv
        return read_csv
    if fmt == "jsonl":
        from adapters.formats.jsonlines import read_jsonl
        return read_jsonl
    if fmt == "xml":
        from adapters.formats.xmlrecords import read_xml
        return read_xml
    if fmt == "xlsx":
        from adapters.formats.spreadsheet import read_xlsx
        return read_xlsx
    raise ValueError(f"unknown file format {fmt!r} (known: csv, jsonl, xml, xlsx)")


def field_too_long(values, max_field_bytes: int, encoding: str) -> str | None:
    """The name of the first value over the byte limit, if any (cheap check first: 4 bytes per char at most)."""
    for name, value in values:
        if isinstance(value, str) and len(value) * 4 > max_field_bytes:
            size = len(value.encode(encoding, errors="replace"))
            if size > max_field_bytes:
                return f"field {name!r} has {size} bytes, over max_field_bytes {max_field_bytes}"
    return None
