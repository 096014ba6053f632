"""CSV reader: the csv module over bounded, per-line decoded text; damaged rows are reported, not fatal.

Bounds (ReadOptions): a row — all the physical lines of one record, quoted line breaks included — is at most
`max_row_bytes` (a longer one is reported as damaged and skipped without being held whole), a row has at most
`max_columns` fields (34 million commas are one damaged row, kept as a short excerpt), a field at most
`max_field_bytes`.
"""
from __future__ import annotations

import codecs
import csv
from typing import BinaryIO, Iterator

from adapters.formats import FileUnreadable, ReadOptions, Row, excerpt, field_too_long
from adapters.formats.text import (ERROR_HANDLER, UNDECODABLE, BoundedTextLines, LineTooLong, check_head,
                                   resolve_encoding)

_DIALECT_KEYS = ("delimiter", "quotechar", "escapechar", "doublequote", "skipinitialspace", "strict")


def read_csv(stream: BinaryIO, options: ReadOptions) -> Iterator[Row]:
    """Rows as dicts keyed by the header; a row holding U+FFFD or NUL is reported as damaged while the rows around
    it go on."""
    encoding = resolve_encoding(stream, options.encoding)
    check_head(stream, encoding)
    if encoding == "utf-8-sig":
        if stream.read(3) != codecs.BOM_UTF8:
            stream.seek(0)
        encoding = "utf-8"
    settings = options.csv or {}
    dialect = {key: settings[key] for key in _DIALECT_KEYS if key in settings}
    max_bytes, max_columns = options.max_field_bytes, options.max_columns
    lines = BoundedTextLines(stream, options.max_row_bytes, encoding, ERROR_HANDLER)
    reader = csv.reader(lines, **dialect)

    def next_row() -> list[str]:
        lines.start_record()
        return next(reader)

    if settings.get("fieldnames"):
        header = list(settings["fieldnames"])
        if settings.get("header", False):
            try:
                next_row()  # the file has a header of its own that we override
            except (StopIteration, csv.Error, LineTooLong):
                pass
    else:
        try:
            header = next_row()
        except StopIteration:
            return  # an empty file holds no records
        except csv.Error as exc:
            raise FileUnreadable(f"header row cannot be read: {exc}") from None
        except LineTooLong as exc:
            raise FileUnreadable(f"header row is {exc}") from None
        if UNDECODABLE in "".join(header):
            raise FileUnreadable(f"header row has bytes that are not {encoding} (wrong encoding?)")
        if len(header) > max_columns:
            raise FileUnreadable(f"header row has {len(header)} columns, over max_columns {max_columns}")
        header = [name.strip() for name in header]
    columns = len(header)
    last_line = lines.number
    row_limit = options.max_row_bytes
    while True:
        lines._left = row_limit  # start_record(), inlined: this loop runs once per row
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            first, last_line = last_line + 1, lines.number
            yield f"line {first}", {}, f"CSV syntax: {exc}"
            continue
        except LineTooLong as exc:
            first, last_line = last_line + 1, lines.number
            yield f"line {first}", {}, f"row {exc} (skipped unread)"
            continue
        first, last_line = last_line + 1, lines.number
        if not row:
            continue  # blank line
        if len(row) > max_columns:
            yield f"line {first}", {"_row": excerpt(row)}, f"{len(row)} fields, over max_columns {max_columns}"
            continue
        joined = "".join(row)
        if UNDECODABLE in joined or "\x00" in joined:
            reason = (f"undecodable bytes for {encoding}" if UNDECODABLE in joined else "NUL byte in the row")
            yield f"line {first}", {"_row": excerpt(row)}, reason
            continue
        if len(row) != columns:
            yield f"line {first}", {"_row": excerpt(row)}, f"expected {columns} columns, got {len(row)}"
            continue
        record = dict(zip(header, row))
        if len(joined) * 4 > max_bytes:
            too_long = field_too_long(record.items(), max_bytes, encoding)
            if too_long:
                yield f"line {first}", {"_row": excerpt(row)}, too_long
                continue
        yield f"line {first}", record, None
