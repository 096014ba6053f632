"""The mock legacy REST API of `cq-samr-rest`, serving a LegacyWorld.

    GET  /api/cases?updated_since=YYYY-mm-dd HH:MM:SS&page=1&size=100   (Authorization: Bearer <token>)
         → {"code": 0, "data": {"items": [...], "total": N, "page": p, "size": s}}
    POST /_sandbox/advance?days=1     move the legacy clock on
    GET  /_sandbox/bad                the deliberately bad cases (key → kind)
    GET  /_sandbox/state              tick, legacy time, fault plan
    POST /_sandbox/faults             {"fail_next": k, "status": 503} and/or {"delay_next": k, "seconds": s}:
                                      the next k requests to /api/cases fail / are delayed

Run it with uvicorn's factory mode: `uvicorn sandbox.legacy_rest:app_from_env --factory --port 8701`.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from http import HTTPStatus

from fastapi import Body, FastAPI, Header, Query
from fastapi.responses import JSONResponse

from sandbox.legacy_world import TIME_FORMAT, LegacyWorld

DEFAULT_TOKEN = "sandbox-legacy-token"


@dataclass
class FaultPlan:
    """Failures to inject into the next requests to /api/cases (a fail and a delay may both apply)."""

    fail_next: int = 0                                # requests to fail,
    status: int = HTTPStatus.SERVICE_UNAVAILABLE      # with this status (an int: the body may set any)
    delay_next: int = 0                               # requests to hold back,
    seconds: float = 0.0                              # this long each


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


def create_app(world: LegacyWorld, token: str = DEFAULT_TOKEN) -> FastAPI:
    app = FastAPI(title="cq-samr-rest (sandbox)", docs_url=None, redoc_url=None)
    faults = FaultPlan()
    app.state.world = world
    app.state.faults = faults

    # Handlers are async on purpose: they then run one at a time on the event loop, so the world and the
    # fault counters need no locks.

    @app.get("/api/cases")
    async def list_cases(
        updated_since: str | None = Query(None),
        page: int = Query(1, ge=1),
        size: int = Query(100, ge=1, le=1000),
        authorization: str | None = Header(None),
    ):
        if faults.delay_next > 0:
            faults.delay_next -= 1
            await asyncio.sleep(faults.seconds)
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return _error(faults.status, "injected fault")
        if authorization != f"Bearer {token}":
            return _error(401, "unauthorized")
        if updated_since:
            try:
                datetime.strptime(updated_since.strip(), TIME_FORMAT)
            except ValueError:
                return _error(400, "updated_since must be YYYY-mm-dd HH:MM:SS")
        items, total = world.page(updated_since or None, (page - 1) * size, size)
        return {"code": 0, "data": {"items": items, "total": total, "page": page, "size": size}}

    @app.post("/_sandbox/advance")
    async def advance(days: int = Query(1, ge=0)):
        tick = world.advance(days)
        return {"code": 0, "data": {"tick": tick, "now": world.now.strftime(TIME_FORMAT)}}

    @app.get("/_sandbox/bad")
    async def bad(existing_only: bool = Query(False)):
        return {"code": 0, "data": world.bad_cases(existing_only=existing_only)}

    @app.get("/_sandbox/state")
    async def state():
        return {"code": 0, "data": {
            "tick": world.tick, "now": world.now.strftime(TIME_FORMAT), "settled_tick": world.settled_tick,
            "cases": world.case_count, "faults": asdict(faults),
        }}

    @app.post("/_sandbox/faults")
    async def set_faults(plan: dict = Body(...)):
        if "fail_next" in plan:
            faults.fail_next = int(plan["fail_next"])
            faults.status = int(plan.get("status", 503))
        if "delay_next" in plan:
            faults.delay_next = int(plan["delay_next"])
            faults.seconds = float(plan.get("seconds", 1.0))
        return {"code": 0, "data": asdict(faults)}

    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn: TONGBAN_LEGACY_SEED, _CASES, _BAD_SHARE, _STATE (tick file), _TOKEN."""
    world = LegacyWorld(
        seed=int(os.environ.get("TONGBAN_LEGACY_SEED", "7")),
        cases=int(os.environ.get("TONGBAN_LEGACY_CASES", "3000")),
        bad_share=float(os.environ.get("TONGBAN_LEGACY_BAD_SHARE", "0.03")),
        state_file=os.environ.get("TONGBAN_LEGACY_STATE") or None,
    )
    return create_app(world, token=os.environ.get("TONGBAN_LEGACY_TOKEN", DEFAULT_TOKEN))
