"""JSON Lines reader: one object per line; a bad line is reported and the rest go on.

Bounds (ReadOptions): a line is at most `max_row_bytes` (a longer one is reported and skipped without being held),
its arrays and objects nest at most `max_json_depth` deep (checked before parsing, so a line of 100,000 `[` is a
damaged record with a clear reason, never a RecursionError).
"""
from __future__ import annotations

import json
import re
from typing import BinaryIO, Iterator

from adapters.formats import EXCERPT_CHARS, ReadOptions, Row, field_too_long
from adapters.formats.text import check_head, decoded_lines, resolve_encoding

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str, give_up_at: int) -> int:
    """How deep arrays and objects nest in a JSON text (brackets inside strings do not count); stops counting
    once `give_up_at` is passed. Cheap for ordinary records: fewer openers than the limit cannot exceed it."""
    if text.count("[") + text.count("{") <= give_up_at:
        return 0
    depth = deepest = 0
    for char in _NOT_BRACKETS.sub("", _STRINGS.sub('""', text)):
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > give_up_at:
                    return deepest
        else:
            depth -= 1
    return deepest


def read_jsonl(stream: BinaryIO, options: ReadOptions) -> Iterator[Row]:
    encoding = resolve_encoding(stream, options.encoding)
    check_head(stream, encoding)
    max_bytes, max_depth = options.max_field_bytes, options.max_json_depth
    for number, line, damage in decoded_lines(stream, encoding, options.max_row_bytes):
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        if not line.strip() and damage is None:
            continue
        where = f"line {number}"
        excerpt = {"_line": line[:EXCERPT_CHARS]}
        if damage:
            yield where, excerpt, damage
            continue
        depth = nesting_depth(line, max_depth)
        if depth > max_depth:
            yield where, excerpt, f"JSON nested more than max_json_depth {max_depth} deep"
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield where, excerpt, f"not valid JSON: {exc}"
            continue
        if not isinstance(record, dict):
            yield where, excerpt, f"expected a JSON object, got {type(record).__name__}"
            continue
        if len(line) * 4 > max_bytes:
            too_long = field_too_long(record.items(), max_bytes, "utf-8")
            if too_long:
                yield where, excerpt, too_long
                continue
        yield where, record, None
