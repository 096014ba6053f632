"""The unified item catalogue (统一事项标准) as data: items by 实施编码, and what changed between two versions."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACTIVE, RETIRED = "active", "retired"
# Fields whose change is worth telling the departments about.
WATCHED = ("name", "item_type", "implementing_body", "implementing_body_code", "level", "status", "replaced_by")


@dataclass(frozen=True)
class CatalogItem:
    code: str                     # 实施编码
    name: str
    item_type: str                # 事项类型
    implementing_body: str | None
    implementing_body_code: str | None
    level: str | None             # 行使层级
    status: str                   # active | retired
    replaced_by: str | None = None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> "CatalogItem":
        return cls(code=str(item["implementation_code"]), name=str(item.get("name") or ""),
                   item_type=str(item.get("item_type") or ""), implementing_body=item.get("implementing_body"),
                   implementing_body_code=item.get("implementing_body_code"), level=item.get("level"),
                   status=str(item.get("status") or ACTIVE), replaced_by=item.get("replaced_by"))

    @property
    def retired(self) -> bool:
        return self.status != ACTIVE


@dataclass
class Catalogue:
    version: int
    items: dict[str, CatalogItem]
    published_at: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "Catalogue":
        items = [CatalogItem.from_json(item) for item in body.get("items") or []]
        return cls(version=int(body["version"]), items={i.code: i for i in items}, published_at=body.get("published_at"))

    def get(self, code: str) -> CatalogItem | None:
        return self.items.get(code)


@dataclass
class CatalogDiff:
    old_version: int | None
    new_version: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)          # gone from the catalogue altogether
    retired: list[str] = field(default_factory=list)          # status active → retired, no replacement
    replaced: dict[str, str] = field(default_factory=dict)    # old → new 实施编码
    changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)   # code → field → (old, new)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.retired or self.replaced or self.changed)

    @property
    def withdrawn(self) -> list[str]:
        """Codes a mapping table must no longer send: retired, replaced or removed."""
        return sorted({*self.retired, *self.replaced, *self.removed})

    def as_dict(self) -> dict[str, Any]:
        return {"old_version": self.old_version, "new_version": self.new_version, "added": self.added,
                "removed": self.removed, "retired": self.retired, "replaced": self.replaced,
                "changed": {code: {f: list(v) for f, v in fields.items()} for code, fields in self.changed.items()}}


def diff(old: Catalogue | None, new: Catalogue) -> CatalogDiff:
    result = CatalogDiff(old.version if old else None, new.version)
    before = old.items if old else {}
    for code in sorted(new.items):
        item = new.items[code]
        previous = before.get(code)
        if previous is None:
            result.added.append(code)
            continue
        if item.retired and not previous.retired:
            if item.replaced_by:
                result.replaced[code] = item.replaced_by
            else:
                result.retired.append(code)
        fields = {name: (getattr(previous, name), getattr(item, name)) for name in WATCHED
                  if getattr(previous, name) != getattr(item, name) and name not in ("status", "replaced_by")}
        if fields:
            result.changed[code] = fields
    result.removed = sorted(set(before) - set(new.items))
    return result
