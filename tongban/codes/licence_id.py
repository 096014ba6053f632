"""电子证照标识 (electronic licence identifier), GB/T 36904-2018:

    1.2.156.3005.2.{type code}.{issuer code}.{serial}.{version, 3 digits}.{check}

The check character is ISO/IEC 7064 MOD 37,36 over type + issuer + serial + version written without dots.
"""
from __future__ import annotations

from dataclasses import dataclass

from tongban.codes._text import CodeError, normalise

FIELD = "licence-id"
PREFIX = "1.2.156.3005.2"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUES = {ch: i for i, ch in enumerate(_ALPHABET)}


@dataclass(frozen=True)
class LicenceId:
    value: str
    prefix: str
    type_code: str      # usually the defining ministry's credit code + 3 digits
    issuer_code: str    # usually the issuing body's credit code
    serial: str
    version: str        # 3 digits
    check: str


def mod37_36_check_char(body: str) -> str:
    """ISO/IEC 7064 MOD 37,36, the hybrid system over 0-9 A-Z (M = 36)."""
    if not body:
        raise CodeError(FIELD, "check character needs at least one character")
    product = 36
    for ch in body:
        if ch not in _VALUES:
            raise CodeError(FIELD, f"character outside 0-9 A-Z: {ch}")
        total = (product + _VALUES[ch]) % 36 or 36
        product = (total * 2) % 37
    return _ALPHABET[(37 - product) % 36]


def licence_check_char(body: str) -> str:
    """The check character of a licence identifier; `body` is type + issuer + serial + version, no dots."""
    return mod37_36_check_char(body)


def parse_licence_id(value: str) -> LicenceId:
    text = normalise(value)
    if not text.startswith(PREFIX + "."):
        raise CodeError(FIELD, f"must start with {PREFIX}.")
    parts = text[len(PREFIX) + 1:].split(".")
    if len(parts) != 5:
        raise CodeError(FIELD, "must have type code, issuer code, serial, version and check after the prefix")
    type_code, issuer_code, serial, version, check = parts
    for name, part in (("type code", type_code), ("issuer code", issuer_code), ("serial", serial)):
        if not part or not all(ch in _VALUES for ch in part):
            raise CodeError(FIELD, f"{name} must be non-empty 0-9 A-Z")
    if len(version) != 3 or not version.isdigit():
        raise CodeError(FIELD, "version must have 3 digits")
    if len(check) != 1:
        raise CodeError(FIELD, "check must be one character")
    expected = licence_check_char(type_code + issuer_code + serial + version)
    if check != expected:
        raise CodeError(FIELD, f"check character: expected {expected}, got {check}")
    return LicenceId(text, PREFIX, type_code, issuer_code, serial, version, check)


def make_licence_id(type_code: str, issuer_code: str, serial: str, version: int | str = 1) -> str:
    """Build a valid identifier (sandbox and tests only)."""
    type_code, issuer_code, serial = normalise(type_code), normalise(issuer_code), normalise(serial)
    version_text = f"{int(version):03d}"
    if len(version_text) != 3:
        raise CodeError(FIELD, "version must fit in 3 digits")
    check = licence_check_char(type_code + issuer_code + serial + version_text)
    return f"{PREFIX}.{type_code}.{issuer_code}.{serial}.{version_text}.{check}"
