"""The mock 渝快办 platform's batch push (批量推送) and its capabilities answer.

`GET /api/v1/capabilities` (signed) says what this platform offers:
    {"case_events_batch": {"path": "/api/v1/case-events/batch", "max_events": N}}
`POST /api/v1/case-events/batch` (signed, TB-HMAC-SHA256-2 over the body's SHA-256 like every call) takes
    {"events": [{"idempotency_key": "...", "event": {...case event...}}, ...]}      1 ≤ len ≤ N
and answers 200 with one result per event, in the order sent:
    {"results": [{"idempotency_key": k, "status": 200, "receipt": {...}},            as the single push answers
                 {"idempotency_key": k, "status": 409, "error": {...}}, ...]}         its refusal, as the single push
Each event goes through exactly the single push's path (`Platform.receive_event`): schema, case number, the case
state machine with no sequence gap, idempotency per key (a key seen before returns its original receipt marked
`"duplicate": true`), its own receipt signed twice (JWS + HMAC). The events are taken in order, so n and n + 1 of
one case may share a call; one event's refusal does not fail the others. A malformed call (not a list, more than N,
an item without a key) is refused whole (413/422) and stores nothing; so are injected faults (POST /_sandbox/faults),
drawn once per call before anything is stored.

Sandbox control: `POST /_sandbox/batch {"bad_receipt_keys": [k, ...]}` makes the receipts of those idempotency keys
come back signed with a wrong key (JWS) in batch answers — what the platform stored stays right, so a later push of
the same key gets a good receipt. `GET /_sandbox/batch` counts calls and events.
"""
from __future__ import annotations

import threading

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from tongban.platform.auth import sign_receipt

BATCH_PATH = "/api/v1/case-events/batch"
CAPABILITIES_PATH = "/api/v1/capabilities"
DEFAULT_MAX_EVENTS = 50


class BatchState:
    def __init__(self, max_events: int):
        self.max_events = max_events
        self.lock = threading.Lock()
        self.bad_receipt_keys: set[str] = set()
        self.calls = 0
        self.events = 0


def include_batch(app: FastAPI, require_signature, *, max_events: int = DEFAULT_MAX_EVENTS) -> None:
    """Mount the capabilities answer and the batch endpoint on the platform app (its state: app.state.platform)."""
    from fastapi import APIRouter, Depends

    from sandbox.platform import MAX_IDEMPOTENCY_KEY, Refusal, _parse_json

    platform, faults = app.state.platform, app.state.faults
    state = BatchState(max_events)
    app.state.batch = state
    api = APIRouter(dependencies=[Depends(require_signature)])

    @api.get(CAPABILITIES_PATH)
    def capabilities():
        return {"case_events_batch": {"path": BATCH_PATH, "max_events": state.max_events}}

    def one(item) -> dict:
        key = item["idempotency_key"]
        try:
            receipt = platform.receive_event(item["event"], key)
        except Refusal as refusal:
            platform.counts.add("rejected")
            return {"idempotency_key": key, "status": refusal.status, "error": refusal.body}
        with state.lock:
            bad = key in state.bad_receipt_keys
        if bad and platform.receipt_signer is not None:
            fields = {k: v for k, v in receipt.items() if k not in ("signature", "jws")}
            receipt = sign_receipt({**fields, "jws": platform.receipt_signer.sign(fields, "wrong")}, platform.secret)
        return {"idempotency_key": key, "status": 200, "receipt": receipt}

    def receive(items: list) -> dict:
        with state.lock:
            state.calls += 1
            state.events += len(items)
        return {"results": [one(item) for item in items]}

    @api.post(BATCH_PATH)
    async def batch(request: Request):
        platform.counts.add("received")
        kind = faults.draw()
        if kind is not None:
            platform.counts.fail(kind)
            return await faults.response(kind)
        body = _parse_json(await request.body())  # at most MAX_BODY_BYTES, like the single push
        items = body.get("events") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise Refusal(422, {"error": "schema", "details": ["events: a non-empty list is required"]})
        if len(items) > state.max_events:
            raise Refusal(413, {"error": f"{len(items)} events in one call; at most {state.max_events}",
                                "max_events": state.max_events})
        for index, item in enumerate(items):
            key = item.get("idempotency_key") if isinstance(item, dict) else None
            if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY:
                raise Refusal(422, {"error": "schema", "details": [
                    f"events[{index}].idempotency_key: a string of 1 to {MAX_IDEMPOTENCY_KEY} characters is required"]})
            if not isinstance(item.get("event"), dict):
                raise Refusal(422, {"error": "schema", "details": [f"events[{index}].event: an object is required"]})
        return await run_in_threadpool(receive, items)

    app.include_router(api)

    @app.post("/_sandbox/batch")
    def set_batch_faults(plan: dict):
        with state.lock:
            state.bad_receipt_keys = set(plan.get("bad_receipt_keys") or [])
        return {"bad_receipt_keys": sorted(state.bad_receipt_keys)}

    @app.get("/_sandbox/batch")
    def batch_counts():
        with state.lock:
            return {"calls": state.calls, "events": state.events, "max_events": state.max_events}
