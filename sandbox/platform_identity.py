"""The mock 渝快办 platform's unified user service (统一用户体系) and unified item catalogue (统一事项标准).

Unified users — `POST /api/v1/users/resolve` `{"id_type": "111"|"001", "id_number": ...}`:
- 200 `{"user_id": "U…"}`: every check-digit-valid 居民身份证号码 and every well-formed 统一社会信用代码 (registered
  codes that fail their checksum exist, so the checksum is not required) resolves deterministically
  (user id = "U" + 16 digits of an HMAC of type and number), so the sandbox's applicants are all known;
- 404 unknown / 409 ambiguous for numbers marked so through the sandbox control;
- 429 throttled with `Retry-After` for the next k requests (sandbox control);
- 422 for a malformed request (wrong id type, a number that is not one).
Error bodies never echo the number: they end up in logs and quarantine rules.

Unified item catalogue — `GET /api/v1/catalog` (latest version) and `GET /api/v1/catalog?version=N`:
`{"version": N, "published_at": ..., "items": [{implementation_code, name, item_type, implementing_body,
implementing_body_code, level, status, replaced_by}]}`. Version 1 is read at startup from the mapping files of
the sandbox and of TONGBAN_MAPPINGS (sandbox.catalogue_seed: every 实施编码 their tables hold, in the tables'
declared encodings), so the sandbox departments' and a new department's items are all known.

Sandbox controls (unsigned, like the other `/_sandbox` endpoints):
- `POST /_sandbox/users` `{"unknown": [...], "ambiguous": [...], "known": [...], "throttle_next": k,
  "retry_after": s}`; `GET /_sandbox/users` shows the counts (numbers are never shown).
- `POST /_sandbox/catalog` `{"retire": [codes], "replace": {old: new}, "change_type": {code: "07"},
  "add": [items]}` publishes the next version; a replacement item copies the old one's name and type.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
from pathlib import Path
from typing import Any, Callable, Literal

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tongban import codes
from tongban.cases.models import ITEM_CODE_PATTERN
from tongban.bus.envelope import utcnow

_ITEM_CODE = re.compile(ITEM_CODE_PATTERN)
DEFAULT_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


# ------------------------------------------------------------------------------------------ unified users


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id_type: Literal["111", "001"] = Field(description="证件类型: 111 居民身份证 · 001 统一社会信用代码")
    id_number: str = Field(min_length=1, max_length=64)


class UserControl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unknown: list[str] = Field(default_factory=list, description="numbers the service answers 404 for")
    ambiguous: list[str] = Field(default_factory=list, description="numbers the service answers 409 for")
    known: list[str] = Field(default_factory=list, description="numbers to take off both lists")
    throttle_next: int | None = Field(default=None, ge=0, description="answer 429 to the next k resolve requests")
    retry_after: int | None = Field(default=None, ge=0, description="Retry-After seconds of the 429 answers")


class UnifiedUsers:
    def __init__(self, secret: str):
        self._key = secret.encode()
        self._lock = threading.Lock()
        self.unknown: set[str] = set()
        self.ambiguous: set[str] = set()
        self.throttle_next = 0
        self.retry_after = 1
        self.requests = 0
        self.throttled = 0

    def user_id(self, id_type: str, number: str) -> str:
        digest = hmac.new(self._key, f"unified-user:{id_type}:{number}".encode(), hashlib.sha256).digest()
        return "U" + str(int.from_bytes(digest[:8], "big")).zfill(20)[-16:]

    def control(self, plan: UserControl) -> dict:
        with self._lock:
            for number in plan.known:
                self.unknown.discard(codes.normalise(number))
                self.ambiguous.discard(codes.normalise(number))
            self.unknown |= {codes.normalise(n) for n in plan.unknown}
            self.ambiguous |= {codes.normalise(n) for n in plan.ambiguous}
            if plan.throttle_next is not None:
                self.throttle_next = plan.throttle_next
            if plan.retry_after is not None:
                self.retry_after = plan.retry_after
            return self.view()

    def view(self) -> dict:
        return {"unknown": len(self.unknown), "ambiguous": len(self.ambiguous), "throttle_next": self.throttle_next,
                "retry_after": self.retry_after, "requests": self.requests, "throttled": self.throttled}

    def resolve(self, request: ResolveRequest) -> JSONResponse:
        with self._lock:
            self.requests += 1
            if self.throttle_next > 0:
                self.throttle_next -= 1
                self.throttled += 1
                return JSONResponse({"error": "throttled"}, 429, headers={"Retry-After": str(self.retry_after)})
        number = codes.normalise(request.id_number)
        try:
            if request.id_type == "111":
                number = codes.parse_id_number(number).value
            else:
                number = codes.parse_credit_code(number, strict=False).value
        except codes.CodeError as exc:
            return JSONResponse({"error": "invalid id_number", "rule": exc.rule}, 422)
        if number in self.ambiguous:
            return JSONResponse({"error": "ambiguous", "rule": "more than one unified user holds this number"}, 409)
        if number in self.unknown:
            return JSONResponse({"error": "unknown", "rule": "no unified user holds this number"}, 404)
        return JSONResponse({"user_id": self.user_id(request.id_type, number)})


# ------------------------------------------------------------------------------------------ item catalogue


class CatalogControl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retire: list[str] = Field(default_factory=list)
    replace: dict[str, str] = Field(default_factory=dict, description="old 实施编码 → its replacement")
    change_type: dict[str, str] = Field(default_factory=dict, description="实施编码 → new 事项类型")
    add: list[dict[str, Any]] = Field(default_factory=list)


def item_from_code(code: str, name: str | None = None, item_type: str | None = None,
                   implementing_body: str | None = None) -> dict[str, Any]:
    return {
        "implementation_code": code,
        "name": name or f"事项 {code[19:]}",
        "item_type": item_type or code[21:23],
        "implementing_body": implementing_body,
        "implementing_body_code": code[:18],
        "level": code[18],
        "status": "active",
        "replaced_by": None,
    }


def catalogue_from_tables(*mappings_dirs: Path) -> list[dict[str, Any]]:
    """Every 实施编码 the mapping files in these folders look up, whatever their tables' encoding
    (sandbox.catalogue_seed)."""
    from sandbox.catalogue_seed import seed_items

    return seed_items(mappings_dirs)


class Catalogue:
    """Published versions of the catalogue, in memory (version 1 is rebuilt from the tables at startup)."""

    def __init__(self, items: list[dict[str, Any]]):
        self._lock = threading.Lock()
        self.versions: list[dict[str, Any]] = [{"version": 1, "published_at": utcnow(), "items": items}]

    def get(self, version: int | None) -> dict | None:
        if version is None:
            return self.versions[-1]
        return next((v for v in self.versions if v["version"] == version), None)

    def publish(self, change: CatalogControl) -> dict:
        with self._lock:
            items = {item["implementation_code"]: dict(item) for item in self.versions[-1]["items"]}
            missing = [c for c in [*change.retire, *change.replace, *change.change_type] if c not in items]
            if missing:
                return {"error": "unknown implementation codes", "codes": missing}
            for code in change.retire:
                items[code]["status"] = "retired"
            for old, new in change.replace.items():
                if not _ITEM_CODE.match(new):
                    return {"error": "replacement is not a 31-character 实施编码", "codes": [new]}
                items[old]["status"] = "retired"
                items[old]["replaced_by"] = new
                if new not in items:
                    items[new] = item_from_code(new, items[old]["name"], items[old]["item_type"],
                                                items[old]["implementing_body"])
            for code, item_type in change.change_type.items():
                items[code]["item_type"] = item_type
            for extra in change.add:
                code = str(extra.get("implementation_code", ""))
                if not _ITEM_CODE.match(code):
                    return {"error": "added item needs a 31-character implementation_code", "codes": [code]}
                items[code] = {**item_from_code(code), **extra}
            version = {"version": self.versions[-1]["version"] + 1, "published_at": utcnow(),
                       "items": sorted(items.values(), key=lambda i: i["implementation_code"])}
            self.versions.append(version)
            return {"version": version["version"], "items": len(version["items"])}


# ------------------------------------------------------------------------------------------ wiring


def include_identity(app: FastAPI, require_signature: Callable, secret: str, mappings_dir: Path | None = None) -> None:
    """Mount the unified user service and the catalogue on the mock platform (`app.state.users`, `.catalogue`)."""
    from tongban.settings import default_mappings_dir

    # The sandbox departments' items, and every item the mapping files under TONGBAN_MAPPINGS look up (a new
    # department's mapping folder need not look like this checkout's).
    directory = mappings_dir or default_mappings_dir()
    users = UnifiedUsers(secret)
    catalogue = Catalogue(catalogue_from_tables(DEFAULT_MAPPINGS, directory))
    app.state.users, app.state.catalogue = users, catalogue

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_signature)])

    @api.post("/users/resolve")
    def resolve(request: ResolveRequest):
        return users.resolve(request)

    @api.get("/catalog")
    def get_catalog(version: int | None = None):
        found = catalogue.get(version)
        if found is None:
            return JSONResponse({"error": "unknown catalogue version"}, 404)
        return found

    control = APIRouter(prefix="/_sandbox")

    @control.post("/users")
    def set_users(plan: UserControl):
        return users.control(plan)

    @control.get("/users")
    def get_users():
        return users.view()

    @control.post("/catalog")
    def publish_catalog(change: CatalogControl):
        result = catalogue.publish(change)
        return JSONResponse(result, 422 if "error" in result else 200)

    @control.get("/catalog/versions")
    def catalog_versions():
        return [{"version": v["version"], "published_at": v["published_at"], "items": len(v["items"])}
                for v in catalogue.versions]

    app.include_router(api)
    app.include_router(control)
