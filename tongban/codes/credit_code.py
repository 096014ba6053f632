"""统一社会信用代码 (unified social credit code), GB 32100-2015, and the 组织机构代码 (organisation code),
GB 11714, that it embeds in characters 9–17."""
from __future__ import annotations

from dataclasses import dataclass
from operator import mul

from tongban.codes._text import CodeError, normalise

CREDIT_FIELD = "credit-code"
ORG_FIELD = "org-code"

# No I, O, Z, S, V: they are too easily confused with 1, 0, 2, 5, U.
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_VALUES = {ch: i for i, ch in enumerate(CREDIT_ALPHABET)}
_CREDIT_SET = frozenset(CREDIT_ALPHABET)
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ORG_VALUES = {ch: i for i, ch in enumerate(ORG_ALPHABET)}
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# 登记管理部门 (character 1) and, per body, 机构类别 (character 2) — GB 32100-2015 table 1.
REGISTERING_BODIES = {
    "1": "机构编制", "2": "外交", "3": "司法行政", "4": "文化", "5": "民政", "6": "旅游", "7": "宗教",
    "8": "工会", "9": "市场监管", "A": "中央军委改革和编制办公室", "N": "农业", "Y": "其他",
}
CATEGORIES = {
    "1": {"1": "机关", "2": "事业单位", "3": "中央编办直接管理机构编制的群众团体", "9": "其他"},
    "5": {"1": "社会团体", "2": "民办非企业单位", "3": "基金会", "9": "其他"},
    "9": {"1": "企业", "2": "个体工商户", "3": "农民专业合作社"},
    "Y": {"1": "其他"},
}


@dataclass(frozen=True)
class CreditCode:
    value: str
    registering_body: str
    registering_body_name: str | None   # None: a body the table does not know (kept, not rejected)
    category: str
    category_name: str | None
    region: str                         # characters 3–8, GB/T 2260
    org_code: str                       # characters 9–17, the 组织机构代码 with its own check
    check: str
    checksum_ok: bool


@dataclass(frozen=True)
class OrgCode:
    value: str        # 9 characters, no hyphen
    body: str         # the first 8
    check: str

    @property
    def formatted(self) -> str:
        """The printed form, with the hyphen before the check: `12345678-9`."""
        return f"{self.body}-{self.check}"


def _check_alphabet(text: str) -> None:
    if not _CREDIT_SET.issuperset(text):  # a set test in C; the characters are listed only when one is wrong
        bad = sorted(set(text) - _CREDIT_SET)
        raise CodeError(CREDIT_FIELD, f"characters outside the alphabet (no I O Z S V): {''.join(bad)}")


def credit_code_check_char(first17: str) -> str:
    """(31 − Σ mod 31) mod 31 over the 31-character alphabet — a remainder of 0 gives `0`."""
    if len(first17) != 17:
        raise CodeError(CREDIT_FIELD, "check character needs exactly 17 characters")
    _check_alphabet(first17)
    total = sum(map(mul, map(_CREDIT_VALUES.__getitem__, first17), _CREDIT_WEIGHTS))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def parse_credit_code(value: str, strict: bool = True) -> CreditCode:
    """Validate and take apart a credit code.

    With `strict=False` a wrong check character is reported as `checksum_ok=False` instead of raising:
    some real, registered codes fail their checksum and must be flagged, not dropped. Wrong length or
    characters always raise.
    """
    text = normalise(value)
    if len(text) != 18:
        raise CodeError(CREDIT_FIELD, f"must have 18 characters, got {len(text)}")
    _check_alphabet(text)
    region = text[2:8]
    if not region.isdigit():
        raise CodeError(CREDIT_FIELD, "region (characters 3–8) must be digits")
    expected = credit_code_check_char(text[:17])
    ok = text[17] == expected
    if not ok and strict:
        raise CodeError(CREDIT_FIELD, f"check character: expected {expected}, got {text[17]}")
    body, category = text[0], text[1]
    return CreditCode(
        value=text,
        registering_body=body,
        registering_body_name=REGISTERING_BODIES.get(body),
        category=category,
        category_name=CATEGORIES.get(body, {}).get(category),
        region=region,
        org_code=text[8:17],
        check=text[17],
        checksum_ok=ok,
    )


def org_code_check_char(first8: str) -> str:
    """11 − Σ mod 11 with weights 3 7 9 10 5 8 4 2; 10 is written `X` and 11 is written `0`."""
    if len(first8) != 8:
        raise CodeError(ORG_FIELD, "check character needs exactly 8 characters")
    bad = sorted({ch for ch in first8 if ch not in _ORG_VALUES})
    if bad:
        raise CodeError(ORG_FIELD, f"characters outside 0-9 A-Z: {''.join(bad)}")
    value = 11 - sum(_ORG_VALUES[ch] * w for ch, w in zip(first8, _ORG_WEIGHTS)) % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def parse_org_code(value: str) -> OrgCode:
    """Validate an organisation code, written `12345678-9` or `123456789`."""
    text = normalise(value)
    if len(text) == 10 and text[8] == "-":
        text = text[:8] + text[9]
    if len(text) != 9:
        raise CodeError(ORG_FIELD, "must have 9 characters (8 + check, optionally with a hyphen before the check)")
    body, check = text[:8], text[8]
    expected = org_code_check_char(body)
    if check != expected:
        raise CodeError(ORG_FIELD, f"check character: expected {expected}, got {check}")
    return OrgCode(value=text, body=body, check=check)


def make_credit_code(body: str, category: str, region: str, org8: str) -> str:
    """Build a valid credit code (sandbox and tests only); computes the embedded org-code check too."""
    if len(region) != 6 or not region.isdigit():
        raise CodeError(CREDIT_FIELD, "region must have 6 digits")
    org9 = org8 + org_code_check_char(org8)
    first17 = f"{body}{category}{region}{org9}"
    return first17 + credit_code_check_char(first17)
