"""XLSX reader: openpyxl in read-only mode (rows streamed), first row is the header."""
from __future__ import annotations

import zipfile
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Iterator

from adapters.formats import FileUnreadable, ReadOptions, Row, field_too_long


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return value


def read_xlsx(path: Path, options: ReadOptions) -> Iterator[Row]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise FileUnreadable(f"not a readable .xlsx workbook: {exc}") from None
    try:
        if options.sheet:
            if options.sheet not in workbook.sheetnames:
                raise FileUnreadable(f"no sheet {options.sheet!r} (has: {', '.join(workbook.sheetnames)})")
            sheet = workbook[options.sheet]
        else:
            sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header_row = next(rows, None)
        if header_row is None:
            return
        header_cells = list(header_row)
        while header_cells and header_cells[-1] is None:
            header_cells.pop()
        header = [str(cell).strip() if cell is not None else f"column {i}" for i, cell in enumerate(header_cells, 1)]
        columns = len(header)
        for number, values in enumerate(rows, start=2):
            if all(cell is None for cell in values):
                continue
            cells = [_plain(cell) for cell in values]
            if any(cell is not None for cell in cells[columns:]):
                yield f"row {number}", {"_row": cells}, f"expected {columns} columns, got values beyond them"
                continue
            cells += [None] * (columns - len(cells))
            record = dict(zip(header, cells))
            too_long = field_too_long(record.items(), options.max_field_bytes, "utf-8")
            if too_long:
                yield f"row {number}", {}, too_long
                continue
            yield f"row {number}", record, None
    finally:
        workbook.close()
