"""Streaming readers for dropped files, one module per format.

A reader takes an open binary file (seekable; the adapter opened it without following links and closes it) and
`ReadOptions`, and yields `(location, data, error)` triples in bounded memory:
`location` is "line 12" / "record 7" / "row 3", `data` the record as a dict (or what could be read of it),
`error` the reason the record is unreadable (None when fine). A reader raises `FileUnreadable` — before
yielding anything — when the file as a whole cannot be read (not XML, hostile XML, wrong encoding, a zip bomb …).

Every size a department's file can make us hold is bounded by an option (the file-drop settings of the same
name, defaults below): a row or line (`max_row_bytes`), its fields (`max_columns`, `max_field_bytes`), JSON
nesting (`max_json_depth`), a workbook's decompressed size and rows (`max_xlsx_bytes`, `max_xlsx_rows`), an XML
file and one record in it (`max_xml_bytes`, `max_xml_record_bytes`; libxml2 itself caps nesting at 256 levels and a
text node at 10 MB). A damaged record keeps only
a bounded excerpt of itself (`excerpt`), never the whole oversized thing.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator

Row = tuple[str, dict[str, Any], str | None]

EXCERPT_CHARS = 200   # of one value kept with a damaged record
EXCERPT_VALUES = 20   # values of a damaged row kept with it


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
    max_row_bytes: int = 1024 * 1024        # one CSV row (all its physical lines) or one JSONL line
    max_columns: int = 1000                 # fields in a CSV row, columns of a sheet
    max_json_depth: int = 64                # nesting of arrays/objects in a JSONL line
    max_xlsx_bytes: int = 256 * 1024 ** 2   # sum of a workbook's decompressed parts (from the zip directory)
    max_xlsx_rows: int = 1_000_000
    max_xml_record_bytes: int = 16 * 1024 ** 2  # bytes the XML parser may read while one record is being built
    name: str = "file"                      # how messages call the file (already escaped by the adapter)


def excerpt(values) -> list:
    """A bounded excerpt of a damaged row, for quarantine: the first values, each cut short."""
    return [value[:EXCERPT_CHARS] if isinstance(value, str) else value for value in list(values[:EXCERPT_VALUES])]


def _readers(fmt: str) -> Callable[[BinaryIO, ReadOptions], Iterator[Row]]:
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


def reader_for(fmt: str) -> Callable[[BinaryIO | str | os.PathLike, ReadOptions], Iterator[Row]]:
    """The reader of `fmt`. It takes an open binary file (what the file-drop adapter passes: opened without
    following links) or a path the caller trusts (a sample file named on the command line, a benchmark's file)."""
    read = _readers(fmt)

    def reader(source, options: ReadOptions) -> Iterator[Row]:
        if hasattr(source, "read"):
            yield from read(source, options)
            return
        with open(source, "rb") as stream:
            name = options.name if options.name != "file" else os.path.basename(os.fspath(source))
            yield from read(stream, dataclasses.replace(options, name=name))

    return reader


def field_too_long(values, max_field_bytes: int, encoding: str) -> str | None:
    """The name of the first value over the byte limit, if any (cheap check first: 4 bytes per char at most)."""
    for name, value in values:
        if isinstance(value, str) and len(value) * 4 > max_field_bytes:
            size = len(value.encode(encoding, errors="replace"))
            if size > max_field_bytes:
                return f"field {name!r} has {size} bytes, over max_field_bytes {max_field_bytes}"
    return None
