"""The platform seam (tongban/platform/client.py), endpoint by endpoint through httpx.MockTransport: every endpoint
is signed, retried on a transient status, honours Retry-After (seconds and HTTP dates), and names its errors.
The same client against the real mock platform is tested in test_platform_auth.py and test_sandbox_platform.py."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from tongban.cases.changes import events_between
from tongban.cases.samples import SAMPLE_ITEM_CODE, sample_event, sample_snapshot
from tongban.bus.envelope import content_digest
from tongban.platform import PlatformClient, PlatformRejected, PlatformTransient, ReceiptInvalid, SealRejected
from tongban.platform.auth import REQUIRED_HEADERS, RequestVerifier, sign_receipt
from tongban.retry import RetryPolicy
from tongban.settings import Settings

def _event() -> dict:
    snapshot = sample_snapshot("accepted")
    kind, data, at = events_between(None, snapshot)[0]
    return sample_event("CQ-N-1", kind, 1, data, at, snapshot)


def _receipt(request: httpx.Request, secret: str) -> dict:
    event = json.loads(request.content)
    key = request.headers["Idempotency-Key"]
    return sign_receipt({"receipt_id": "R1", "case_number": event["case_number"], "sequence": event["sequence"],
                         "idempotency_key": key, "digest": content_digest(event), "duplicate": False}, secret)


# name, how to call it, the request it makes, the platform's good answer, what the call returns
ENDPOINTS = {
    "numbering": (lambda c: c.case_number("cq-samr-rest", "SB1", SAMPLE_ITEM_CODE), "POST /api/v1/numbering",
                  lambda r, s: {"case_number": "CQ-N-1"}, lambda out: out == "CQ-N-1"),
    "case push": (lambda c: c.push_event(_event(), "key-1"), "POST /api/v1/case-events",
                  _receipt, lambda out: out["receipt_id"] == "R1"),
    "sealed documents": (lambda c: c.push_sealed(b"<Licence/>", "key-s"), "POST /api/v1/sealed-documents",
                         lambda r, s: "<Receipt/>", lambda out: out == b"<Receipt/>"),
    "identity": (lambda c: c.resolve_user("111", "500103199001011234"), "POST /api/v1/users/resolve",
                 lambda r, s: {"user_id": "U1"}, lambda out: out == {"user_id": "U1"}),
    "catalogue": (lambda c: c.catalog(3), "GET /api/v1/catalog",
                  lambda r, s: {"version": 3, "items": []}, lambda out: out["version"] == 3),
    "reconciliation": (lambda c: c.stats(), "GET /api/v1/stats",
                       lambda r, s: {"by_item": {}}, lambda out: out == {"by_item": {}}),
    "case look-up": (lambda c: c.case("CQ-N-1"), "GET /api/v1/cases/CQ-N-1",
                     lambda r, s: {"case_number": "CQ-N-1", "events": []}, lambda out: out["events"] == []),
}


class Platform:
    """A MockTransport handler: checks every request's signature like the mock platform does, answers from a
    script of failures first, then the endpoint's good answer."""

    def __init__(self, settings: Settings, good, failures=()):
        self.verifier = RequestVerifier(settings.platform_access_key, settings.platform_secret)
        self.secret, self.good, self.failures = settings.platform_secret, good, list(failures)
        self.requests: list[httpx.Request] = []
        self.refusals: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reason = self.verifier.check(request.method, request.url.path, request.url.query.decode(),
                                     request.headers, request.content)
        if reason:
            self.refusals.append(reason)
            return httpx.Response(401, json={"error": "unauthorized", "reason": reason})
        if self.failures:
            return self.failures.pop(0)
        answer = self.good(request, self.secret)
        if isinstance(answer, str):
            return httpx.Response(200, content=answer.encode(), headers={"Content-Type": "application/xml"})
        return httpx.Response(200, json=answer)


def _client(tmp_path, platform_for, *, attempts=3, max_wait=5.0):
    settings = Settings(home=tmp_path, platform_url="https://platform.invalid")
    platform = platform_for(settings)
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=attempts, initial_wait=0.01, max_wait=max_wait, rng=random.Random(1),
                         sleep=sleeps.append)
    return PlatformClient(settings, transport=httpx.MockTransport(platform), retry=policy), platform, sleeps


@pytest.mark.parametrize("name", ENDPOINTS)
def test_each_endpoint_is_signed_with_a_fresh_nonce_per_attempt_and_retried_on_a_transient_status(tmp_path, name):
    call, route, good, check = ENDPOINTS[name]
    client, platform, sleeps = _client(tmp_path, lambda s: Platform(s, good, [
        httpx.Response(503, json={"error": "maintenance"}), httpx.Response(502)]))
    assert check(call(client))
    assert [f"{r.method} {r.url.path}" for r in platform.requests] == [route] * 3
    assert platform.refusals == []  # all three attempts passed the platform's signature check
    for request in platform.requests:
        assert all(request.headers.get(h) for h in REQUIRED_HEADERS)
    assert len({r.headers["X-Nonce"] for r in platform.requests}) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("name", ["numbering", "case push", "identity", "reconciliation"])
def test_retry_after_is_honoured_in_seconds_and_as_an_http_date(tmp_path, name):
    call, _route, good, check = ENDPOINTS[name]
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=3), usegmt=True)
    client, platform, sleeps = _client(tmp_path, lambda s: Platform(s, good, [
        httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(503, headers={"Retry-After": soon})]))
    assert check(call(client))
    assert sleeps[0] == 2.0 and 1.0 <= sleeps[1] <= 3.0


def test_a_retry_after_longer_than_the_cap_ends_the_call_at_once_and_carries_the_wait(tmp_path):
    call, _route, good, _check = ENDPOINTS["case push"]
    client, platform, sleeps = _client(tmp_path, lambda s: Platform(s, good, [
        httpx.Response(429, headers={"Retry-After": "600"})]), max_wait=1.0)
    with pytest.raises(PlatformTransient, match=r"HTTP 429 from POST /api/v1/case-events") as caught:
        call(client)
    assert caught.value.retry_after == 600.0 and len(platform.requests) == 1 and sleeps == []


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_refusal_is_not_retried_and_names_the_platforms_reason(tmp_path, name):
    call, _route, good, _check = ENDPOINTS[name]
    refusal = httpx.Response(422, json={"error": "schema", "rule": "application.item_code", "reason": "unknown"})
    client, platform, sleeps = _client(tmp_path, lambda s: Platform(s, good, [refusal]))
    with pytest.raises(PlatformRejected, match=r"HTTP 422\): schema: application.item_code: unknown") as caught:
        call(client)
    assert caught.value.status == 422 and caught.value.body["rule"] == "application.item_code"
    assert len(platform.requests) == 1 and sleeps == []


def test_transient_failures_that_last_are_raised_naming_the_endpoint(tmp_path):
    call, _route, good, _check = ENDPOINTS["catalogue"]
    client, platform, _sleeps = _client(tmp_path, lambda s: Platform(s, good, [httpx.Response(500)] * 5))
    with pytest.raises(PlatformTransient, match=r"HTTP 500 from GET /api/v1/catalog") as caught:
        call(client)
    assert caught.value.attempts == 3 and len(platform.requests) == 3


def test_a_connection_error_is_transient_and_retried(tmp_path):
    settings = Settings(home=tmp_path, platform_url="https://platform.invalid")
    calls = []

    def refuse(request):
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    sleeps: list[float] = []
    client = PlatformClient(settings, transport=httpx.MockTransport(refuse),
                            retry=RetryPolicy(attempts=2, initial_wait=0.01, sleep=sleeps.append))
    with pytest.raises(PlatformTransient, match="ConnectError calling GET /api/v1/stats"):
        client.stats()
    assert len(calls) == 2 and len(sleeps) == 1


def test_a_seal_refusal_carries_the_platforms_reason_code(tmp_path):
    call, _route, good, _check = ENDPOINTS["sealed documents"]
    refusal = httpx.Response(422, json={"error": "seal", "reason": "revoked", "message": "certificate revoked"})
    client, _platform, _sleeps = _client(tmp_path, lambda s: Platform(s, good, [refusal]))
    with pytest.raises(SealRejected, match="revoked: certificate revoked") as caught:
        call(client)
    assert caught.value.code == "revoked" and caught.value.status == 422


@pytest.mark.parametrize("answer, error", [
    (lambda r, s: {"case_number": ""}, "unusable case number ''"),
    (lambda r, s: "<not-json/>", "POST /api/v1/numbering answered with something that is not a JSON object"),
])
def test_an_answer_the_endpoint_does_not_promise_is_a_named_refusal(tmp_path, answer, error):
    client, _platform, _sleeps = _client(tmp_path, lambda s: Platform(s, answer))
    with pytest.raises(PlatformRejected, match=error):
        ENDPOINTS["numbering"][0](client)


def test_a_receipt_for_something_else_is_refused(tmp_path):
    def other_digest(request, secret):
        return sign_receipt({**_receipt(request, secret), "digest": "0" * 64}, secret)

    client, _platform, _sleeps = _client(tmp_path, lambda s: Platform(s, other_digest))
    with pytest.raises(ReceiptInvalid, match="digest does not match the event sent"):
        ENDPOINTS["case push"][0](client)


def test_a_batch_body_is_the_canonical_json_of_its_events():
    from tongban.bus.envelope import canonical_json
    from tongban.platform.client import batch_body

    events = [({"case_number": "CQ-1", "data": {"名称": "张三", "n": 1.5, "ok": True, "none": None}}, "sys:k1:ab"),
              ({"z": [1, {"b": 2, "a": "x\"y\\\n"}], "a": "é\u2028\x00"}, 'key "quoted" 键'), ({}, "k3")]
    expected = canonical_json({"events": [{"idempotency_key": key, "event": event} for event, key in events]})
    assert batch_body([canonical_json(e) for e, _ in events], [k for _, k in events]) == expected
