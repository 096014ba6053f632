"""The mock 渝快办's bundled applications (一件事一次办): applications offered to tongban, the bundle's status back.

Signed like every /api route (tongban.platform.auth):
- `GET /api/v1/bundle-applications?after=N`: the applications after sequence N (growing, also across restarts),
  oldest first, at most 100:
  `{"items": [{"seq", "application_id", "bundle", "submitted_at", "form"}], "last": N'}`;
- `GET /api/v1/bundle-applications/{id}`: one application and every status it received;
- `POST /api/v1/bundle-applications/{id}/status` with an `Idempotency-Key`: `{"status": "受理" | "办结",
  "result": "granted" | "refused" | "partly_granted" (办结 only), "members": [...]}`. The rules: 受理 once; 办结
  once and last; a granted 办结 needs 受理 first (a refused bundle may end before every member was accepted).
  A key seen before answers the first answer with `"duplicate": true`; the same key with another body is 409.
Sandbox control (unsigned): `POST /_sandbox/bundle-applications {"bundle": "newborn", "form": {...}}` offers one.
State is held in memory: the sandbox platform's bundle applications live as long as its process.
"""
from __future__ import annotations

import hashlib
import threading
import uuid
from typing import Any, Callable, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tongban.bus.envelope import canonical_json, utcnow


class Offer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bundle: str = Field(min_length=1, max_length=40)
    form: dict[str, Any]
    application_id: str | None = Field(None, max_length=64)


class Status(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["受理", "办结"]
    result: Literal["granted", "refused", "partly_granted"] | None = None
    members: list[dict[str, Any]] = Field(default_factory=list)
    note: str | None = Field(None, max_length=500)


class BundleDesk:
    def __init__(self) -> None:
        import time

        self.lock = threading.Lock()
        # Sequences grow across restarts too (the desk is in memory): a consumer's watermark stays meaningful.
        self.base = time.time_ns() // 1000  # microseconds
        self.applications: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, tuple[str, dict]] = {}

    def offer(self, offer: Offer) -> dict:
        with self.lock:
            app_id = offer.application_id or f"YKB{len(self.applications) + 1:06d}{uuid.uuid4().hex[:6].upper()}"
            if app_id in self.by_id:
                return {"application_id": app_id, "duplicate": True}
            item = {"seq": self.base + len(self.applications) + 1, "application_id": app_id, "bundle": offer.bundle,
                    "submitted_at": utcnow(), "form": offer.form, "statuses": []}
            self.applications.append(item)
            self.by_id[app_id] = item
            return {"application_id": app_id, "seq": item["seq"]}

    def status(self, app_id: str, body: Any, key: str) -> tuple[int, dict]:
        digest = hashlib.sha256(canonical_json(body)).hexdigest()
        with self.lock:
            if key in self.keys:
                seen_digest, answer = self.keys[key]
                if seen_digest != digest:
                    return 409, {"error": "idempotency key reused with a different body"}
                return 200, {**answer, "duplicate": True}
            item = self.by_id.get(app_id)
            if item is None:
                return 404, {"error": "unknown bundle application"}
            try:
                status = Status.model_validate(body)
            except Exception as exc:  # pydantic's message names the field
                return 422, {"error": "schema", "details": str(exc)[:500]}
            seen = [s["status"] for s in item["statuses"]]
            if "办结" in seen:
                return 409, {"error": "state", "rule": "nothing after 办结"}
            if status.status == "受理" and "受理" in seen:
                return 409, {"error": "state", "rule": "受理 twice"}
            if status.status == "办结":
                if status.result is None:
                    return 422, {"error": "schema", "details": "办结 needs a result"}
                if status.result == "granted" and "受理" not in seen:
                    return 409, {"error": "state", "rule": "granted 办结 before 受理"}
            elif status.result is not None:
                return 422, {"error": "schema", "details": "受理 has no result"}
            item["statuses"].append({**status.model_dump(), "received_at": utcnow()})
            answer = {"application_id": app_id, "status": status.status, "duplicate": False}
            self.keys[key] = (digest, answer)
            return 200, answer


def include_bundles(app: FastAPI, require_signature: Callable) -> BundleDesk:
    desk = BundleDesk()
    app.state.bundles = desk
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_signature)])

    @api.get("/bundle-applications")
    def applications(after: int = Query(0, ge=0)):
        with desk.lock:
            items = [{k: v for k, v in a.items() if k != "statuses"} for a in desk.applications if a["seq"] > after][:100]
        return {"items": items, "last": items[-1]["seq"] if items else after}

    @api.get("/bundle-applications/{app_id}")
    def application(app_id: str):
        with desk.lock:
            item = desk.by_id.get(app_id)
            if item is None:
                return JSONResponse({"error": "unknown bundle application"}, 404)
            return dict(item)

    @api.post("/bundle-applications/{app_id}/status")
    async def status(app_id: str, request: Request):
        import json

        key = request.headers.get("Idempotency-Key")
        if not key:
            return JSONResponse({"error": "missing Idempotency-Key header"}, 400)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "schema", "details": "not JSON"}, 422)
        code, answer = desk.status(app_id, body, key)
        return JSONResponse(answer, code)

    app.include_router(api)

    @app.post("/_sandbox/bundle-applications")
    def offer(body: Offer):
        return desk.offer(body)

    return desk
