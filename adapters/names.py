"""File names (and other text from outside) as they may be stored and shown.

A department's export folder can hold any name the file system allows: bytes that are not UTF-8, a newline, an
ANSI escape sequence, a right-to-left override. Such a name must never crash the ledger's write (a lone surrogate
cannot be encoded), never print a fake line in `tongban trace` and never recolour an operator's terminal.
`printable()` is the one escaping used wherever a name reaches the ledger, quarantine, positions or the CLI.

It refuses to know what the name means: it only makes it inert text, repr-style (`\\n`, `\\x1b`, `\\u202e`);
bytes that were not UTF-8 (Python's surrogateescape) come out as `\\xNN`, as `backslashreplace` writes them.
"""
from __future__ import annotations

import unicodedata

# Unicode categories that move the cursor, change direction or are not characters at all.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that did not decode (surrogateescape): show the byte
        return f"\\x{code - 0xDC00:02x}"
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def printable(text: str) -> str:
    """`text` with every control, format, unassigned or undecodable character escaped; safe for any sink."""
    if text.isprintable():  # the common case, in C
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in text)


def is_utf8(name: str) -> bool:
    """False when the name holds bytes that are not UTF-8 (decoded by the OS layer with surrogateescape)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """`text` with lone surrogates (undecodable bytes, or a JSON "\\udcff" escape) escaped, other characters kept:
    what any UTF-8 database column and the ledger's hash accept."""
    if is_utf8(text):
        return text
    return "".join(_escape(c) if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
