"""Text decoding for line-based formats: encoding detection, a whole-file sanity check, and damage marking.

One undecodable byte sequence must spoil only its own record, never the rest of the stream: CSV reads through
an error handler that leaves U+FFFD where bytes did not decode (the reader then reports that row), JSONL splits
lines on b"\n" before decoding (safe for UTF-8, GBK and GB18030: 0x0A never occurs inside a multi-byte character).
"""
from __future__ import annotations

import codecs
from typing import Any, BinaryIO, Iterator

from adapters.formats import FileUnreadable

SUPPORTED = ("utf-8", "utf-8-sig", "gbk", "gb18030", "auto")
_HEAD_BYTES = 64 * 1024
_SCAN_CHUNK = 1024 * 1024


def resolve_encoding(stream: BinaryIO, declared: str) -> str:
    """The encoding to read `path` with. `auto`: a UTF-8 BOM, else UTF-8 if the whole file decodes, else GB18030
    (a superset of GBK, which is what Chinese Windows exports usually are)."""
    declared = (declared or "utf-8").lower().replace("_", "-")
    if declared not in SUPPORTED:
        raise ValueError(f"encoding {declared!r} is not supported (use one of {', '.join(SUPPORTED)})")
    stream.seek(0)
    try:
        starts_with_bom = stream.read(3) == codecs.BOM_UTF8
        if declared == "utf-8" and starts_with_bom:
            return "utf-8-sig"  # otherwise the BOM sticks to the first header name
        if declared != "auto":
            return declared
        if starts_with_bom:
            return "utf-8-sig"
        stream.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := stream.read(_SCAN_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
        return "utf-8"
    finally:
        stream.seek(0)


def check_head(stream: BinaryIO, encoding: str) -> None:
    """Fail the whole file when it is plainly in another encoding: its first line, or most of the lines in its
    first 64 KiB, do not decode. A few bad lines are damaged rows, reported one by one instead."""
    stream.seek(0)
    head = stream.read(_HEAD_BYTES)
    stream.seek(0)
    lines = head.split(b"\n")
    if len(head) == _HEAD_BYTES and len(lines) > 1:
        lines.pop()  # probably cut in the middle
    failures, first_error = 0, None
    for number, raw in enumerate(lines, start=1):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as exc:
            failures += 1
            if number == 1 or first_error is None:
                first_error = (number, exc.start + 1)
            if number == 1:
                break
    if first_error and (first_error[0] == 1 or failures * 2 > len(lines)):
        line, column = first_error
        raise FileUnreadable(
            f"the file is not {encoding}: undecodable bytes on line {line} column {column}"
            f" ({failures} of the first {len(lines)} lines fail); set `encoding:` in the source settings, or `auto`"
        )


UNDECODABLE = "\ufffd"
ERROR_HANDLER = "tongban-mark-undecodable"


def _mark_undecodable(exc: UnicodeDecodeError) -> tuple[str, int]:
    # Same as errors="replace", registered under our own name so that a row holding U+FFFD is known damaged.
    return UNDECODABLE, exc.end


codecs.register_error(ERROR_HANDLER, _mark_undecodable)


class LineTooLong(Exception):
    """A physical line (or a row made of several) is longer than the reader's limit."""


class BoundedLines:
    """The physical lines of a binary stream (each ending in b"\\n", the last perhaps not), never more than `limit`
    bytes for one record: `start_record()` opens a record's budget, and a line that would overrun it raises
    `LineTooLong` once — the rest of that physical line is skipped unread-into-memory — and iteration goes on
    with the next line. `number` is the count of physical lines read so far (for positions)."""

    encoding: str | None = None  # set (BoundedTextLines): each line comes decoded, in the same call
    errors = "strict"

    def __init__(self, stream: BinaryIO, limit: int):
        self.stream, self.limit = stream, limit
        self.number = 0
        self._left = limit

    def start_record(self) -> None:
        self._left = self.limit

    def __iter__(self) -> "BoundedLines":
        return self

    def __next__(self) -> Any:  # bytes, or str when `encoding` is set
        line = self.stream.readline(self._left + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) > self._left:
            self._skip_rest(line)
        self._left -= len(line)
        return line if self.encoding is None else line.decode(self.encoding, self.errors)

    def _skip_rest(self, line: bytes) -> None:
        while line and not line.endswith(b"\n"):
            line = self.stream.readline(_SCAN_CHUNK)
        self._left = self.limit
        raise LineTooLong(f"longer than max_row_bytes {self.limit}")


class BoundedTextLines(BoundedLines):
    """The same, decoded in the same `__next__` (one Python call per line: this is the CSV reader's hot loop). 0x0A
    never occurs inside a multi-byte character of UTF-8, GBK or GB18030, so decoding line by line is exact."""

    def __init__(self, stream: BinaryIO, limit: int, encoding: str, errors: str):
        super().__init__(stream, limit)
        self.encoding, self.errors = encoding, errors


def decoded_lines(stream: BinaryIO, encoding: str, limit: int) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, damage) per physical line; a line that fails to decode is replace-decoded and its
    damage says why; a line over `limit` bytes comes as ("", "longer than …") without being held in memory."""
    lines = BoundedLines(stream, limit)
    while True:
        lines.start_record()
        try:
            raw = next(lines)
        except StopIteration:
            return
        except LineTooLong as exc:
            yield lines.number, "", f"line {exc}"
            continue
        damage = None
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            damage = f"undecodable bytes for {encoding} at column {exc.start + 1}"
            text = raw.decode(encoding, errors="replace")
        if "\x00" in text:
            damage = damage or "NUL byte in the line"
            text = text.replace("\x00", "")
        yield lines.number, text, damage
