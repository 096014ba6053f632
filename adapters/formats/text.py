"""Text decoding for line-based formats: encoding detection, a whole-file sanity check, and damage marking.

One undecodable byte sequence must spoil only its own record, never the rest of the stream: CSV reads through
an error handler that leaves U+FFFD where bytes did not decode (the reader then reports that row), JSONL splits
lines on b"\n" before decoding (safe for UTF-8, GBK and GB18030: 0x0A never occurs inside a multi-byte character).
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import BinaryIO, Iterator

from adapters.formats import FileUnreadable

SUPPORTED = ("utf-8", "utf-8-sig", "gbk", "gb18030", "auto")
_HEAD_BYTES = 64 * 1024
_SCAN_CHUNK = 1024 * 1024


def resolve_encoding(path: Path, declared: str) -> str:
    """The encoding to read `path` with. `auto`: a UTF-8 BOM, else UTF-8 if the whole file decodes, else GB18030
    (a superset of GBK, which is what Chinese Windows exports usually are)."""
    declared = (declared or "utf-8").lower().replace("_", "-")
    if declared not in SUPPORTED:
        raise ValueError(f"encoding {declared!r} is not supported (use one of {', '.join(SUPPORTED)})")
    with open(path, "rb") as stream:
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


def check_head(path: Path, encoding: str) -> None:
    """Fail the whole file when it is plainly in another encoding: its first line, or most of the lines in its
    first 64 KiB, do not decode. A few bad lines are damaged rows, reported one by one instead."""
    with open(path, "rb") as stream:
        head = stream.read(_HEAD_BYTES)
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


def decoded_lines(stream: BinaryIO, encoding: str, damaged: dict[int, str]) -> Iterator[str]:
    """Decode line by line; a line that fails is replaced-decoded and its number noted in `damaged` with why."""
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            damaged[number] = f"undecodable bytes for {encoding} at column {exc.start + 1}"
            text = raw.decode(encoding, errors="replace")
        if "\x00" in text:
            damaged.setdefault(number, "NUL byte in the line")
            text = text.replace("\x00", "")
        yield text
