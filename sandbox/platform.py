"""The mock 渝快办 platform: numbering (统一赋码), the case-push API with signed receipts, fault injection.

It keeps the promises the real platform is expected to keep, strictly enough that tongban's mistakes show:
- every /api call is signed (tongban.platform.auth, docs/platform-auth.md): the signature binds method, path,
  query, the body's SHA-256, the Idempotency-Key, the date (±5 min) and a nonce the platform remembers, so a
  wrong or missing signature, a changed body or key, a stale date or a replayed request is 401 with the reason;
- a case event is validated against the published schema (422), must belong to a case number the platform
  issued (422), and must follow the case state machine with no sequence gap (409 naming the rule);
- an `Idempotency-Key` seen before returns the original receipt marked `"duplicate": true` and stores
  nothing; the same key with a different body is 409;
- state lives in SQLite (`db_path`), so a restarted sandbox still knows every case.

Fault injection (`POST /_sandbox/faults`) applies to /api/v1/case-events and /api/v1/numbering only, after
the signature check and *before* anything is stored, so a failed request has no effect. Each POST replaces
the whole fault plan; `DELETE /_sandbox/faults` clears it. Kinds:
- "500": HTTP 500; "429": HTTP 429 with `Retry-After: retry_after`;
- "timeout": waits `timeout_seconds` (set it above the client's timeout) and then answers 504;
- "reset": a true TCP reset is not reachable through ASGI/uvicorn (an exception in the app becomes a 500),
  so "reset" answers 502 with `Connection: close` and body `{"error": "reset"}`; the connection is closed
  after the response.
`{"fail_next": k, "status": s}` fails the next k requests with status s (Retry-After on 429/503).
`{"receipt_key": "wrong" | "untrusted"}` signs case receipts with a key other than the platform's
(sandbox/platform_receipts.py); the default "platform" signs them properly. Batch push (批量推送, up to N events a
call, a receipt or refusal per event) and `GET /api/v1/capabilities`: sandbox/platform_batch.py.

Run it: `python -m sandbox.platform --port 8700 --db .tongban/platform.db`.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import threading
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from sandbox.platform_identity import include_identity
from sandbox.platform_receipts import receipt_signer_for
from sandbox.platform_store import PlatformStore
from tongban.cases.models import CASE_NUMBER_MAX, ItemCode, describe_errors
from tongban.cases.schema import validate_event
from tongban.cases.statemachine import TransitionError
from tongban.bus.envelope import canonical_json, utcnow
from tongban.platform.auth import RequestVerifier, sign_receipt

DEFAULT_ACCESS_KEY = "sandbox-access-key"
DEFAULT_SECRET = "sandbox-secret-not-for-production"
BEIJING = timezone(timedelta(hours=8))
MAX_BODY_BYTES = 1_000_000
MAX_IDEMPOTENCY_KEY = 200


class Unauthorized(Exception):
    def __init__(self, reason: str): self.reason = reason


class Refusal(Exception):
    """An answer other than 200, raised from the threadpool part of a handler."""

    def __init__(self, status: int, body: dict, headers: dict | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


# ------------------------------------------------------------------------------------------ faults


class FaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="share of requests that fail")
    kinds: list[Literal["500", "timeout", "reset", "429"]] = Field(default_factory=lambda: ["500"])
    retry_after: int = Field(default=1, ge=0, description="Retry-After seconds on 429/503")
    timeout_seconds: float = Field(default=2.0, ge=0.0, le=120.0, description="how long a 'timeout' waits before 504")
    seed: int | None = Field(default=None, description="seed of the fault dice, for reproducible chaos")
    fail_next: int = Field(default=0, ge=0, description="fail exactly the next k requests")
    status: int = Field(default=503, ge=400, le=599, description="status of the fail_next failures")
    receipt_key: Literal["platform", "wrong", "untrusted"] = Field(
        default="platform", description="which key signs case receipts (JWS): the platform's, or a wrong one")


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan = FaultPlan()
        self._dice = random.Random()

    def configure(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self._dice = random.Random(plan.seed)

    def draw(self) -> str | None:
        """The fault for this request ("fail_next", "500", "timeout", "reset", "429") or None."""
        with self._lock:
            if self.plan.fail_next > 0:
                self.plan = self.plan.model_copy(update={"fail_next": self.plan.fail_next - 1})
                return "fail_next"
            if self.plan.error_rate > 0 and self.plan.kinds and self._dice.random() < self.plan.error_rate:
                return self._dice.choice(self.plan.kinds)
            return None

    async def response(self, kind: str) -> JSONResponse:
        plan = self.plan
        retry = {"Retry-After": str(plan.retry_after)}
        if kind == "fail_next":
            headers = retry if plan.status in (429, 503) else {}
            return JSONResponse({"error": "injected fault", "kind": "fail_next"}, plan.status, headers=headers)
        if kind == "429":
            return JSONResponse({"error": "too many requests", "kind": "429"}, 429, headers=retry)
        if kind == "timeout":
            await asyncio.sleep(plan.timeout_seconds)
            return JSONResponse({"error": "timeout", "kind": "timeout"}, 504)
        if kind == "reset":
            return JSONResponse({"error": "reset"}, 502, headers={"Connection": "close"})
        return JSONResponse({"error": "injected fault", "kind": "500"}, 500)


class RequestCounts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def add(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def fail(self, kind: str) -> None:
        with self._lock:
            self.failed[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "received": self.counts["received"],
                "failed": dict(self.failed),
                "stored": self.counts["stored"],
                "duplicates": self.counts["duplicates"],
                "rejected": self.counts["rejected"],
                "numbers_issued": self.counts["numbers_issued"],
            }


# ------------------------------------------------------------------------------------------ the platform


class NumberingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_system: str = Field(min_length=1, max_length=200)
    source_key: str = Field(min_length=1, max_length=200)
    item_code: ItemCode


def _parse_json(raw: bytes) -> Any:
    if len(raw) > MAX_BODY_BYTES:
        raise Refusal(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise Refusal(422, {"error": "schema", "details": ["<body>: not valid JSON"]}) from None


class Platform:
    def __init__(self, store: PlatformStore, secret: str, receipt_signer=None, faults: "Faults | None" = None):
        self.store = store
        self.secret = secret
        self.counts = RequestCounts()
        self.receipt_signer, self.faults = receipt_signer, faults  # JWS receipts when the sandbox CA is there

    def _sign(self, receipt: dict) -> dict:
        """The receipt signed twice: a JWS by the platform's receipt key (when it has one), then the HMAC."""
        fields = {k: v for k, v in receipt.items() if k not in ("signature", "jws")}
        if self.receipt_signer is not None:
            which = self.faults.plan.receipt_key if self.faults is not None else "platform"
            fields["jws"] = self.receipt_signer.sign(fields, which)
        return sign_receipt(fields, self.secret)

    def issue_number(self, body: Any) -> dict:
        try:
            request = NumberingRequest.model_validate(body)
        except ValidationError as error:
            raise Refusal(422, {"error": "schema", "details": describe_errors(error)}) from None
        now = datetime.now(BEIJING)
        number, new = self.store.issue_number(
            request.source_system, request.source_key, request.item_code, now.strftime("%Y%m%d"), utcnow()
        )
        if new:
            self.counts.add("numbers_issued")
        return {"case_number": number}

    def receive_event(self, body: Any, idempotency_key: str) -> dict:
        digest = hashlib.sha256(canonical_json(body)).hexdigest()
        # Held across check and store: two concurrent deliveries of one event must not both get through.
        with self.store.lock:
            seen = self.store.receipt(idempotency_key)
            if seen is not None:
                stored_digest, receipt = seen
                if stored_digest != digest:
                    raise Refusal(409, {"error": "idempotency key reused with a different body"})
                self.counts.add("duplicates")
                return self._sign({**receipt, "duplicate": True})

            problems = validate_event(body)
            if problems:
                raise Refusal(422, {"error": "schema", "details": problems})
            case = self.store.case(body["case_number"])
            if case is None:
                raise Refusal(422, {"error": "unknown case number"})
            for field in ("source_system", "source_key"):
                # The number was issued for one legacy case; an event of another case under it is a wiring bug.
                if case[field] != body[field]:
                    raise Refusal(422, {"error": "case number belongs to another source record", "field": field})
            try:
                new_state = case["state"].apply(body["event"], body["sequence"])
            except TransitionError as error:
                raise Refusal(409, {"error": "state", "rule": error.rule}) from None

            receipt = self._sign(
                {
                    "receipt_id": f"R{uuid.uuid4().hex}",
                    "case_number": body["case_number"],
                    "event": body["event"],
                    "sequence": body["sequence"],
                    "idempotency_key": idempotency_key,
                    "digest": digest,
                    "received_at": utcnow(),
                    "duplicate": False,
                },
            )
            self.store.store_event(body, new_state, idempotency_key, digest, receipt)
            self.counts.add("stored")
            return receipt

    def case_view(self, case_number: str) -> dict | None:
        case = self.store.case(case_number)
        if case is None:
            return None
        return {
            "case_number": case["case_number"],
            "source_system": case["source_system"],
            "source_key": case["source_key"],
            "item_code": case["item_code"],
            "issued_at": case["issued_at"],
            "state": case["state"].to_dict(),
            "events": self.store.events(case_number),
        }


def create_app(
    db_path: str | None = None,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret: str = DEFAULT_SECRET,
    certs_dir: str | None = None, batch_max: int = 50,
) -> FastAPI:
    """The mock platform as an ASGI app; state in SQLite at `db_path` (None: in memory). With `certs_dir` (a
    sandbox CA from `tongban certs init`) it also serves the sealed-document API (sandbox/platform_seal.py)."""
    store = PlatformStore(db_path)
    faults = Faults()
    platform = Platform(store, secret, receipt_signer_for(certs_dir), faults)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        store.close()

    app = FastAPI(title="渝快办 sandbox platform", description=__doc__, lifespan=lifespan)
    app.state.platform, app.state.faults, app.state.store = platform, faults, store

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, error: Unauthorized) -> JSONResponse:
        return JSONResponse({"error": "unauthorized", "reason": error.reason}, 401)

    @app.exception_handler(Refusal)
    async def _refused(request: Request, refusal: Refusal) -> JSONResponse:
        if request.method == "POST":
            platform.counts.add("rejected")
        return JSONResponse(refusal.body, refusal.status, headers=refusal.headers)

    verifier = RequestVerifier(access_key, secret)  # one per platform: a nonce spent on one route is spent on all
    app.state.verifier = verifier

    async def require_signature(request: Request) -> None:
        body = await request.body()  # cached by Starlette: the route reads the same bytes
        reason = verifier.check(request.method, request.url.path, request.url.query, request.headers, body)
        if reason:
            raise Unauthorized(reason)

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_signature)])

    async def fault_for_this_request() -> JSONResponse | None:
        platform.counts.add("received")
        kind = faults.draw()
        if kind is None:
            return None
        platform.counts.fail(kind)
        return await faults.response(kind)

    @api.post("/numbering")
    async def numbering(request: Request):
        injected = await fault_for_this_request()
        if injected is not None:
            return injected
        body = _parse_json(await request.body())
        return await run_in_threadpool(platform.issue_number, body)

    @api.post("/case-events")
    async def case_events(request: Request):
        injected = await fault_for_this_request()
        if injected is not None:
            return injected
        key = request.headers.get("Idempotency-Key")
        if not key:
            raise Refusal(400, {"error": "missing Idempotency-Key header"})
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise Refusal(400, {"error": f"Idempotency-Key longer than {MAX_IDEMPOTENCY_KEY} characters"})
        body = _parse_json(await request.body())
        return await run_in_threadpool(platform.receive_event, body, key)

    @api.get("/cases/{case_number}")
    def get_case(case_number: str):
        if len(case_number) > CASE_NUMBER_MAX:
            raise Refusal(404, {"error": "unknown case number"})
        view = platform.case_view(case_number)
        if view is None:
            raise Refusal(404, {"error": "unknown case number"})
        return view

    @api.get("/stats")
    def stats(): return store.stats()

    @api.get("/receipts")
    def receipt(idempotency_key: str):
        seen = store.receipt(idempotency_key)
        if seen is None:
            raise Refusal(404, {"error": "no receipt for this idempotency key"})
        return seen[1]

    app.include_router(api)
    include_identity(app, require_signature, secret)  # unified users + item catalogue (统一用户/统一事项)
    from sandbox.platform_batch import include_batch
    from sandbox.platform_bundles import include_bundles

    include_batch(app, require_signature, max_events=batch_max)  # batch push (批量推送) + capabilities

    include_bundles(app, require_signature)  # bundled applications (一件事一次办)
    if certs_dir is not None:
        from sandbox.platform_seal import mount_sealed_documents

        mount_sealed_documents(app, certs_dir, access_key=access_key, secret=secret, verifier=verifier)

    # Sandbox controls: unsigned on purpose (they exist only in the sandbox, for tests and demos).
    @app.post("/_sandbox/faults")
    def set_faults(plan: FaultPlan):
        faults.configure(plan)
        return plan.model_dump()

    @app.delete("/_sandbox/faults")
    def clear_faults():
        faults.configure(FaultPlan())
        return faults.plan.model_dump()

    @app.get("/_sandbox/faults")
    def get_faults(): return faults.plan.model_dump()

    @app.get("/_sandbox/requests")
    def request_counts(): return platform.counts.snapshot()

    @app.get("/healthz")
    def health(): return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the mock 渝快办 platform.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--db", default=None, help="SQLite file (default: in memory)")
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--certs", default=None, help="a sandbox CA folder (`tongban certs init`): receipts are signed "
                                                      "(JWS) with its receipt key and the sealed-document API is served")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.db, args.access_key, args.secret, certs_dir=args.certs), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
