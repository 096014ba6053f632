"""Masking personal identifiers for logs, CLI output and auditors' views (DESIGN.md promise 6).

`mask_text` is deliberately shape-based and over-inclusive: anything that looks like an ID number or a
mobile number is masked, valid or not, because a mistyped ID number is still personal data.
"""
from __future__ import annotations

import re

# 18 characters (17 digits + digit/X) or the old 15-digit form, not part of a longer run of letters or
# digits. `\d` is Unicode-aware, so full-width digits are caught too.
_ID_PATTERN = re.compile(r"(?<![0-9A-Za-z０-９Ａ-Ｚａ-ｚ])(?:\d{17}[\dXxＸｘ]|\d{15})(?![0-9A-Za-z０-９Ａ-Ｚａ-ｚ])")
# Mainland mobile numbers, optionally written 138-0013-8000 or 138 0013 8000, optionally after +86.
_PHONE_PATTERN = re.compile(r"(?<!\d)1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")


def mask_id_number(value: str) -> str:
    """Keep the first 4 and last 4 characters: `5001**********1234`. Short values are masked entirely."""
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_phone(value: str) -> str:
    """Keep the first 3 and last 4 digits: `138****8000`."""
    digits = [i for i, ch in enumerate(value) if ch.isdigit()]
    if len(digits) <= 7:
        return "*" * len(value)
    hidden = set(digits[3:-4])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(value))


def mask_text(text: str) -> str:
    """Mask every ID-number-looking and mobile-number-looking substring of free text."""
    masked = _ID_PATTERN.sub(lambda m: mask_id_number(m.group()), text)
    return _PHONE_PATTERN.sub(lambda m: mask_phone(m.group()), masked)
