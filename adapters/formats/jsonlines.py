"""JSON Lines reader: one object per line; a bad line is reported and the rest go on."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from adapters.formats import ReadOptions, Row, field_too_long
from adapters.formats.text import check_head, decoded_lines, resolve_encoding


def read_jsonl(path: Path, options: ReadOptions) -> Iterator[Row]:
    encoding = resolve_encoding(path, options.encoding)
    check_head(path, encoding)
    damaged: dict[int, str] = {}
    max_bytes = options.max_field_bytes
    with open(path, "rb") as stream:
        for number, line in enumerate(decoded_lines(stream, encoding, damaged), start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            if number in damaged:
                yield where, {"_line": line[:200]}, damaged.pop(number)
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                yield where, {"_line": line[:200]}, f"not valid JSON: {exc}"
                continue
            if not isinstance(record, dict):
                yield where, {"_line": line[:200]}, f"expected a JSON object, got {type(record).__name__}"
                continue
            if len(line) * 4 > max_bytes:
                too_long = field_too_long(record.items(), max_bytes, "utf-8")
                if too_long:
                    yield where, {"_line": line[:200]}, too_long
                    continue
            yield where, record, None
