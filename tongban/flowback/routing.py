"""Where one national record goes: validated, then routed by its own 行政区划 (AREACODE) — never by the
applicant's 证件号码, whose prefix can be a pre-1997 Sichuan code.

- 500000 (and 9/12-digit codes under it) and records whose 实施编码 has a municipal 行使层级 → the city;
- a configured functional zone (两江新区 …) → where the configuration says;
- a retired code → its successor (tongban.codes.RETIRED_CODES); 9/12-digit codes → their county;
- other provinces, unknown Chongqing codes and records without any region → quarantine, with the rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, TypeVar

from tongban.codes import CHONGQING_CODE, CodeError, ItemCode, Region, normalise, parse_item_code, parse_region

from .config import CITY, RoutingConfig
from .records import AREACODE, ROWGUID, TASKCODE, Record

T = TypeVar("T")


def _parsed_once(parse: Callable[[str], T]) -> Callable[[str], T | CodeError]:
    """`parse`, remembered: a batch repeats a few thousand 实施编码 and a few hundred 行政区划 over and over.
    The cache is bounded, so memory does not grow with the batch; errors are cached as values, not raised from it."""
    @lru_cache(maxsize=8192)
    def parsed(code: str) -> T | CodeError:
        try:
            return parse(code)
        except CodeError as exc:
            return exc
    return parsed


_item: Callable[[str], ItemCode | CodeError] = _parsed_once(parse_item_code)
_region: Callable[[str], Region | CodeError] = _parsed_once(parse_region)


@dataclass(frozen=True)
class Route:
    target: str                      # "500101" … or "city"
    area_code: str                   # the 行政区划 as given (normalised)
    translated_from: str | None = None
    rolled_up: bool = False
    zone: str | None = None
    why: str = "行政区划"              # what decided the target

    def detail(self) -> dict:
        """The route as the message and the ledger show it: one dict per Route, made once (the router's decisions
        are cached, so each is shared by every record it routes; its readers only read it)."""
        try:
            return self.__dict__["_detail"]
        except KeyError:
            out = self.__dict__["_detail"] = self._make_detail()
            return out

    def _make_detail(self) -> dict:
        out = {"target": self.target, "area_code": self.area_code, "by": self.why}
        if self.translated_from:
            out["translated_from"] = self.translated_from
        if self.rolled_up:
            out["rolled_up"] = True
        if self.zone:
            out["zone"] = self.zone
        return out


@dataclass(frozen=True)
class Reject:
    field: str
    rule: str


class Router:
    def __init__(self, routing: RoutingConfig):
        self.zones = routing.zone_map()
        self.municipal_levels = set(routing.municipal_levels)
        # The decision depends on the 实施编码 and the 行政区划 alone, and a batch repeats a few thousand pairs: each
        # pair is decided once (bounded cache: memory does not grow with the batch). Route and Reject are frozen.
        self._decided = lru_cache(maxsize=65536)(self._decide)

    def route(self, record: Record) -> Route | Reject:
        if not record.get(ROWGUID):
            return Reject(ROWGUID, "ROWGUID (row guid) is required: it is the record's key")
        return self._decided(record.get(TASKCODE), record.get(AREACODE))

    def _decide(self, task: str | None, raw_area: str | None) -> Route | Reject:
        if not task:
            return Reject(TASKCODE, "TASKCODE (实施编码) is required")
        item = _item(task)
        if isinstance(item, CodeError):
            return Reject(TASKCODE, f"TASKCODE (实施编码): {item.rule}")
        if item.kind == "basic":
            return Reject(TASKCODE, "TASKCODE must be a 31-character 实施编码, not a 12-character 基本编码")
        if not raw_area:
            return Reject(AREACODE, "no region: AREACODE (行政区划) is missing, so the record has no district")
        area = normalise(raw_area)
        zone = self.zones.get(area[:6]) if len(area) in (6, 9, 12) and area.isdigit() else None
        if zone is not None:
            return Route(zone.route_to, area, rolled_up=len(area) > 6, zone=zone.name, why=f"functional zone {zone.name}")
        region = _region(area)
        if isinstance(region, CodeError):
            if region.rule == "outside Chongqing":
                return Reject(AREACODE, f"other province: AREACODE (行政区划) {area} is outside Chongqing")
            return Reject(AREACODE, f"AREACODE (行政区划) {area}: {region.rule}")
        if region.county_code == CHONGQING_CODE:
            return Route(CITY, area, rolled_up=region.rolled_up, why="行政区划 500000")
        if item.level in self.municipal_levels:
            # A municipal body's case belongs to the city, whichever district it was applied in.
            return Route(CITY, area, region.retired_from, region.rolled_up, why=f"行使层级 {item.level} (municipal)")
        return Route(region.county_code, area, region.retired_from, region.rolled_up)
