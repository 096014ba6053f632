"""居民身份证号码 (citizen ID number), GB 11643-1999: 6-digit region + 8-digit birth date + 3-digit order
code (odd = male) + 1 check character."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from operator import mul

from tongban.codes._text import CodeError, normalise

FIELD = "id-number"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ZERO_SUM = ord("0") * sum(_WEIGHTS)  # the weighted sum of the ASCII bytes, less this, is that of the digits
_CHECK_CHARS = "10X98765432"          # (12 − Σ mod 11) mod 11 for Σ mod 11 = 0 … 10, with 10 written X


@dataclass(frozen=True)
class IdNumber:
    value: str            # normalised: upper-case ASCII, 18 characters
    region: str           # first 6 digits: where the number was issued (not where a case is handled)
    birth_date: date
    sex: str              # "M" or "F"
    check: str


def id_number_check_char(first17: str) -> str:
    """The check character for 17 digits: (12 − Σ mod 11) mod 11, where 10 is written `X`."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise CodeError(FIELD, "check character needs exactly 17 digits")
    return _CHECK_CHARS[(sum(map(mul, first17.encode("ascii"), _WEIGHTS)) - _ZERO_SUM) % 11]


def parse_id_number(value: str) -> IdNumber:
    """Validate and take apart an 18-character ID number (lower-case x and full-width digits accepted)."""
    text = normalise(value)
    if len(text) != 18:
        raise CodeError(FIELD, f"must have 18 characters, got {len(text)}")
    body, check = text[:17], text[17]
    if not body.isascii() or not body.isdigit():
        raise CodeError(FIELD, "characters 1–17 must be digits")
    if check not in "0123456789X":
        raise CodeError(FIELD, "character 18 must be a digit or X")
    # The rule mentions positions, never the birth date itself: error texts end up in logs.
    try:
        birth = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise CodeError(FIELD, "birth date (characters 7–14) is not a real date") from None
    if birth.year < 1800 or birth > date.today():
        raise CodeError(FIELD, "birth date (characters 7–14) is out of range")
    expected = id_number_check_char(body)
    if check != expected:
        raise CodeError(FIELD, f"check digit: expected {expected}, got {check}")
    return IdNumber(value=text, region=body[:6], birth_date=birth, sex="M" if int(body[16]) % 2 else "F", check=check)


def make_id_number(region: str, birth: date, seq: int, sex: str) -> str:
    """Build a valid ID number (sandbox and tests only).

    The 3-digit order code is `seq * 2 + 1` for men and `seq * 2` for women, so `seq` runs 0–499 and
    the parity rule (odd = male) always holds.
    """
    if len(region) != 6 or not region.isdigit():
        raise CodeError(FIELD, "region must have 6 digits")
    if sex not in ("M", "F"):
        raise CodeError(FIELD, "sex must be M or F")
    if not 0 <= seq <= 499:
        raise CodeError(FIELD, "seq must be 0–499")
    order = seq * 2 + (1 if sex == "M" else 0)
    first17 = f"{region}{birth:%Y%m%d}{order:03d}"
    return first17 + id_number_check_char(first17)
