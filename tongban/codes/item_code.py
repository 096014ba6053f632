"""政务服务事项编码 (ZWFW C0109.1-2018 / GB/T 39554.1-2020).

基本编码 (12) = 2 区划 + 2 事项类型 + 5 主项 + 3 子项
实施编码 (31) = 18-char 统一社会信用代码 of the implementing body + 1-digit 行使层级 + 基本编码
业务办理项编码 (33) = 实施编码 + 2 digits

GB/T 39046-2020 prints shorter lengths that contradict every real code: this module builds to 12 / 31 / 33.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tongban.codes._text import CodeError, normalise
from tongban.codes.credit_code import CreditCode, parse_credit_code

FIELD = "item-code"

# 事项类型, GB/T 39046-2020 appendix A.1. 11–19 extend 行政权力, 21–99 extend 公共服务 (行政备案 in
# Chongqing is one such extension; which number it has is configuration, not a national fact).
ITEM_TYPES = {
    "00": "行政权力", "01": "行政许可", "02": "行政处罚", "03": "行政强制", "04": "行政征收", "05": "行政给付",
    "06": "行政检查", "07": "行政确认", "08": "行政奖励", "09": "行政裁决", "10": "其他行政权力", "20": "公共服务",
}

# 行使层级
LEVELS = {"1": "国家", "2": "省级", "3": "市级", "4": "县级", "5": "乡镇/街道", "6": "村/社区", "7": "分级管理"}

KINDS = {12: "basic", 31: "implementation", 33: "handling"}


@dataclass(frozen=True)
class ItemCode:
    value: str
    kind: str                          # "basic" (基本编码), "implementation" (实施编码), "handling" (业务办理项编码)
    basic_code: str
    region_prefix: str
    item_type: str
    item_type_name: str
    main: str                          # 主项: 2-digit central department + 3-digit sequence
    sub: str                           # 子项: 000, 00Y or 001–999
    implementing_body_credit_code: str | None = None
    implementing_body: CreditCode | None = None
    level: str | None = None           # 行使层级
    level_name: str | None = None
    handling_suffix: str | None = None
    flags: tuple[str, ...] = field(default=())   # kept-but-suspicious findings (e.g. a failing credit-code checksum)


def item_type_name(item_type: str) -> str:
    if item_type in ITEM_TYPES:
        return ITEM_TYPES[item_type]
    # Every other two-digit type is 11–19 or 21–99: an extension of one of the two families.
    return "行政权力扩展类型" if int(item_type) < 20 else "公共服务扩展类型"


def _parse_basic(basic: str) -> tuple[str, str, str, str]:
    region, item_type, main, sub = basic[0:2], basic[2:4], basic[4:9], basic[9:12]
    if not region.isdigit():
        raise CodeError(FIELD, "basic code: region prefix (characters 1–2) must be digits")
    if not item_type.isdigit():
        raise CodeError(FIELD, "basic code: item type (characters 3–4) must be digits")
    if not main.isdigit():
        raise CodeError(FIELD, "basic code: main item (characters 5–9) must be 5 digits")
    if not (sub.isdigit() or sub == "00Y"):
        raise CodeError(FIELD, "basic code: sub item (characters 10–12) must be 000, 00Y or 001–999")
    return region, item_type, main, sub


def parse_item_code(value: str) -> ItemCode:
    """Take apart a 基本编码, 实施编码 or 业务办理项编码, decided by its length."""
    text = normalise(value)
    kind = KINDS.get(len(text))
    if kind is None or not text.isascii():
        raise CodeError(FIELD, f"must have 12 (基本编码), 31 (实施编码) or 33 (业务办理项编码) characters, got {len(text)}")
    basic = text if kind == "basic" else text[19:31]
    region, item_type, main, sub = _parse_basic(basic)
    result = dict(
        value=text, kind=kind, basic_code=basic, region_prefix=region, item_type=item_type,
        item_type_name=item_type_name(item_type), main=main, sub=sub,
    )
    if kind != "basic":
        try:
            body = parse_credit_code(text[:18], strict=False)
        except CodeError as exc:
            raise CodeError(FIELD, f"implementing body (characters 1–18): {exc.rule}") from None
        level = text[18]
        if level not in LEVELS:
            raise CodeError(FIELD, "level (character 19) must be 1–7")
        flags = () if body.checksum_ok else ("implementing body credit code fails its checksum",)
        result.update(
            implementing_body_credit_code=body.value, implementing_body=body,
            level=level, level_name=LEVELS[level], flags=flags,
        )
    if kind == "handling":
        suffix = text[31:33]
        if not suffix.isdigit():
            raise CodeError(FIELD, "handling suffix (characters 32–33) must be 2 digits")
        result["handling_suffix"] = suffix
    return ItemCode(**result)
