"""Shared by every code parser: input normalisation and the one error type.

Legacy systems type codes by hand: full-width digits from Chinese IMEs, stray spaces (including the
ideographic space U+3000), lower-case letters. Every parser normalises first so that a code compares
equal however it was typed.
"""
from __future__ import annotations

# Full-width ASCII variants (U+FF01–U+FF5E) sit at a fixed offset from their ASCII twins.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}


def normalise(text: str) -> str:
    """Full-width digits/letters → ASCII, all whitespace removed (incl. U+3000), upper-case.

    No per-character Python: `str.split()` splits on exactly the characters `str.isspace()` calls whitespace, and
    ASCII text (the usual case) has no full-width characters to translate."""
    text = str(text)
    if not text.isascii():
        text = text.translate(_FULL_WIDTH)
    return "".join(text.split()).upper()


class CodeError(ValueError):
    """A code that breaks a rule of its standard.

    `field` names the kind of code ("id-number", "credit-code" …) and `rule` says what is wrong in a
    few words. The rule never repeats the value itself, so an error about an ID number can be logged
    without leaking personal data.
    """

    def __init__(self, field: str, rule: str):
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule
