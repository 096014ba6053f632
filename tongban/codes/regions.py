"""行政区划代码 (GB/T 2260) for Chongqing: the 38 county-level units of the 2024 list, the city itself,
retired codes still found in legacy data, and town/village codes that roll up to their county.

Functional zones (两江新区 …) have no GB/T 2260 code; they are configured elsewhere, not here.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from tongban.codes._text import CodeError, normalise

FIELD = "region"

CHONGQING_CODE = "500000"
CHONGQING_NAME = "重庆市"

# The 38 county-level units (2024 list). 5001xx are districts (区), 5002xx counties (县, 自治县).
CHONGQING_UNITS: dict[str, str] = {
    "500101": "万州区", "500102": "涪陵区", "500103": "渝中区", "500104": "大渡口区", "500105": "江北区",
    "500106": "沙坪坝区", "500107": "九龙坡区", "500108": "南岸区", "500109": "北碚区", "500110": "綦江区",
    "500111": "大足区", "500112": "渝北区", "500113": "巴南区", "500114": "黔江区", "500115": "长寿区",
    "500116": "江津区", "500117": "合川区", "500118": "永川区", "500119": "南川区", "500120": "璧山区",
    "500151": "铜梁区", "500152": "潼南区", "500153": "荣昌区", "500154": "开州区", "500155": "梁平区",
    "500156": "武隆区",
    "500229": "城口县", "500230": "丰都县", "500231": "垫江县", "500233": "忠县", "500235": "云阳县",
    "500236": "奉节县", "500237": "巫山县", "500238": "巫溪县",
    "500240": "石柱土家族自治县", "500241": "秀山土家族苗族自治县", "500242": "酉阳土家族苗族自治县",
    "500243": "彭水苗族土家族自治县",
}

# Counties and county-level cities that became districts; legacy records still carry the old codes.
RETIRED_CODES: dict[str, str] = {
    "500222": "500110", "500223": "500152", "500224": "500151", "500225": "500111", "500226": "500153",
    "500227": "500120", "500228": "500155", "500232": "500156", "500234": "500154", "500381": "500116",
    "500382": "500117", "500383": "500118", "500384": "500119",
}


@dataclass(frozen=True)
class Region:
    code: str                 # as given, normalised (6, 9 or 12 digits)
    county_code: str          # the current 6-digit code to route by
    name: str
    level: str                # "city" (500000), "district" or "county"
    retired_from: str | None  # the retired 6-digit code that was translated, if any
    rolled_up: bool           # True when a 9/12-digit town or village code was cut to its county


def parse_region(value: str) -> Region:
    """Resolve a Chongqing region code to the current county-level unit it belongs to."""
    return _resolve(normalise(value))


@lru_cache(maxsize=8192)  # a few hundred codes recur in every batch; Region is frozen, so sharing it is safe
def _resolve(text: str) -> Region:
    if len(text) not in (6, 9, 12) or not text.isascii() or not text.isdigit():
        raise CodeError(FIELD, "region code must have 6, 9 or 12 digits")
    six = text[:6]
    if not six.startswith("50"):
        raise CodeError(FIELD, "outside Chongqing")
    rolled_up = len(text) > 6
    if six == CHONGQING_CODE:
        return Region(text, CHONGQING_CODE, CHONGQING_NAME, "city", None, rolled_up)
    retired_from = six if six in RETIRED_CODES else None
    county = RETIRED_CODES.get(six, six)
    name = CHONGQING_UNITS.get(county)
    if name is None:
        raise CodeError(FIELD, "unknown region code")
    level = "district" if county.startswith("5001") else "county"
    return Region(text, county, name, level, retired_from, rolled_up)
