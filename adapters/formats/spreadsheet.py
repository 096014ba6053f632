"""XLSX reader: openpyxl in read-only mode (rows streamed), first row is the header.

An .xlsx file is a zip: 1.4 MB of it can inflate to gigabytes. Before openpyxl sees the file, the zip directory is
read and the declared sizes of its parts are summed against `max_xlsx_bytes` (Python's zipfile never inflates a
part beyond its declared size, so the declaration is a real bound). Rows are counted against `max_xlsx_rows`,
and only the first `max_columns` + 1 columns are ever materialised (a cell in column XFD cannot make every row
16,384 wide).
"""
from __future__ import annotations

import zipfile
from datetime import date, datetime, time
from typing import Any, BinaryIO, Iterator

from adapters.formats import FileUnreadable, ReadOptions, Row, excerpt, field_too_long

MAX_PARTS = 10_000  # a workbook has a few dozen parts; thousands are a crafted file


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return value


def check_zip(stream: BinaryIO, max_bytes: int) -> None:
    """Refuse a workbook whose parts would decompress beyond `max_bytes` (or that is not a zip at all)."""
    try:
        with zipfile.ZipFile(stream) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise FileUnreadable(f"not a readable .xlsx workbook: {exc}") from None
    finally:
        stream.seek(0)
    if len(parts) > MAX_PARTS:
        raise FileUnreadable(f"the workbook has {len(parts)} parts (more than {MAX_PARTS}): not a plain export")
    total = sum(part.file_size for part in parts)
    if total > max_bytes:
        raise FileUnreadable(f"the workbook would decompress to {total} bytes, over max_xlsx_bytes {max_bytes} "
                             f"(a zip bomb, or raise the limit)")


def read_xlsx(stream: BinaryIO, options: ReadOptions) -> Iterator[Row]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    check_zip(stream, options.max_xlsx_bytes)
    try:
        workbook = load_workbook(stream, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError, TypeError, EOFError) as exc:
        raise FileUnreadable(f"not a readable .xlsx workbook: {exc}") from None
    try:
        if options.sheet:
            if options.sheet not in workbook.sheetnames:
                raise FileUnreadable(f"no sheet {options.sheet!r} (has: {', '.join(workbook.sheetnames)})")
            sheet = workbook[options.sheet]
        else:
            sheet = workbook.worksheets[0]
        max_columns = options.max_columns
        rows = sheet.iter_rows(values_only=True, max_col=max_columns + 1)
        header_row = next(rows, None)
        if header_row is None:
            return
        header_cells = list(header_row)
        while header_cells and header_cells[-1] is None:
            header_cells.pop()
        if len(header_cells) > max_columns:
            raise FileUnreadable(f"the header row has more than max_columns {max_columns} columns")
        header = [str(cell).strip() if cell is not None else f"column {i}" for i, cell in enumerate(header_cells, 1)]
        columns = len(header)
        for number, values in enumerate(rows, start=2):
            if number > options.max_xlsx_rows + 1:
                yield f"row {number}", {}, (f"the sheet has more than max_xlsx_rows {options.max_xlsx_rows} rows; "
                                            f"the rest of the file was not read")
                return
            if all(cell is None for cell in values):
                continue
            cells = [_plain(cell) for cell in values]
            if any(cell is not None for cell in cells[columns:]):
                yield f"row {number}", {"_row": excerpt(cells)}, f"expected {columns} columns, got values beyond them"
                continue
            cells = cells[:columns] + [None] * (columns - len(cells))
            record = dict(zip(header, cells))
            too_long = field_too_long(record.items(), options.max_field_bytes, "utf-8")
            if too_long:
                yield f"row {number}", {}, too_long
                continue
            yield f"row {number}", record, None
    finally:
        workbook.close()
