"""CSV reader: the csv module over per-line decoded text; damaged rows are reported, not fatal."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from adapters.formats import FileUnreadable, ReadOptions, Row, field_too_long
from adapters.formats.text import ERROR_HANDLER, UNDECODABLE, check_head, resolve_encoding

_DIALECT_KEYS = ("delimiter", "quotechar", "escapechar", "doublequote", "skipinitialspace", "strict")


def read_csv(path: Path, options: ReadOptions) -> Iterator[Row]:
    """Rows as dicts keyed by the header. The file is read as one text stream (the csv module's fast path);
    undecodable bytes become U+FFFD through our error handler, so a row holding U+FFFD or NUL is reported as
    damaged while the rows around it go on."""
    encoding = resolve_encoding(path, options.encoding)
    check_head(path, encoding)
    settings = options.csv or {}
    dialect = {key: settings[key] for key in _DIALECT_KEYS if key in settings}
    max_bytes = options.max_field_bytes
    with open(path, encoding=encoding, errors=ERROR_HANDLER, newline="") as stream:
        reader = csv.reader(stream, **dialect)
        if settings.get("fieldnames"):
            header = list(settings["fieldnames"])
            if settings.get("header", False):
                next(reader, None)  # the file has a header of its own that we override
        else:
            try:
                header = next(reader)
            except StopIteration:
                return  # an empty file holds no records
            except csv.Error as exc:
                raise FileUnreadable(f"header row cannot be read: {exc}") from None
            if UNDECODABLE in "".join(header):
                raise FileUnreadable(f"header row has bytes that are not {encoding} (wrong encoding?)")
            header = [name.strip() for name in header]
        columns = len(header)
        last_line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                first, last_line = last_line + 1, reader.line_num
                yield f"line {first}", {}, f"CSV syntax: {exc}"
                continue
            first, last_line = last_line + 1, reader.line_num
            if not row:
                continue  # blank line
            joined = "".join(row)
            if UNDECODABLE in joined or "\x00" in joined:
                reason = (f"undecodable bytes for {encoding}" if UNDECODABLE in joined else "NUL byte in the row")
                yield f"line {first}", {"_row": row}, reason
                continue
            if len(row) != columns:
                yield f"line {first}", {"_row": row}, f"expected {columns} columns, got {len(row)}"
                continue
            record = dict(zip(header, row))
            if len(joined) * 4 > max_bytes:
                too_long = field_too_long(record.items(), max_bytes, encoding)
                if too_long:
                    yield f"line {first}", {"_row": [value[:200] for value in row]}, too_long
                    continue
            yield f"line {first}", record, None
