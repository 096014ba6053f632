"""The mock 渝快办 platform (sandbox/platform.py) and the shared signing functions (tongban/platform/auth.py)."""
from __future__ import annotations

import copy
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import httpx
import uvicorn
from fastapi.testclient import TestClient

from sandbox.platform import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, create_app
from tongban.cases.changes import events_between
from tongban.cases.samples import SAMPLE_ITEM_CODE, sample_event, sample_snapshot
from tongban.bus.envelope import content_digest
from tongban.platform.auth import PlatformAuth, http_date, sign_request, signed_headers, verify_receipt


class SignedClient:
    """A TestClient that signs every call the way tongban's platform client does."""

    def __init__(self, app, access_key=DEFAULT_ACCESS_KEY, secret=DEFAULT_SECRET):
        self.http = TestClient(app)
        self.access_key, self.secret = access_key, secret
        self.auth = PlatformAuth(access_key, secret)

    def request(self, method, url, **kwargs):
        return self.http.request(method, url, auth=self.auth, **kwargs)

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def number(self, source_key="SB2024000123", item_code=SAMPLE_ITEM_CODE, source_system="cq-samr-rest"):
        response = self.post("/api/v1/numbering", json={"source_system": source_system, "source_key": source_key,
                                                        "item_code": item_code})
        assert response.status_code == 200, response.text
        return response.json()["case_number"]

    def push(self, event, key=None):
        key = key or f"key-{event['case_number']}-{event['sequence']}"
        return self.post("/api/v1/case-events", json=event, headers={"Idempotency-Key": key})


@pytest.fixture
def client():
    return SignedClient(create_app())


def lifecycle_events(case_number, stage="evaluated"):
    snapshot = sample_snapshot(stage)
    return [
        sample_event(case_number, event_type, number, data, occurred_at, snapshot)
        for number, (event_type, data, occurred_at) in enumerate(events_between(None, snapshot), start=1)
    ]


# --------------------------------------------------------------------------------------------- signing


def test_unsigned_and_badly_signed_calls_are_401_with_a_reason(client):
    unsigned = client.http.post("/api/v1/numbering", json={})
    assert unsigned.status_code == 401
    assert "missing header" in unsigned.json()["reason"]

    wrong_secret = SignedClient(client.http.app, secret="guessed").post("/api/v1/numbering", json={})
    assert (wrong_secret.status_code, wrong_secret.json()["reason"]) == (401, "signature does not match")

    wrong_key = SignedClient(client.http.app, access_key="someone-else").get("/api/v1/stats")
    assert (wrong_key.status_code, wrong_key.json()["reason"]) == (401, "unknown access key")

    # Signed for another path: the signature covers method, path and query.
    headers = signed_headers("GET", "/api/v1/stats", DEFAULT_ACCESS_KEY, DEFAULT_SECRET)
    moved = client.http.get("/api/v1/receipts?idempotency_key=x", headers=headers)
    assert moved.status_code == 401

    stale_date = http_date(datetime.now(timezone.utc) - timedelta(hours=1))
    stale = client.http.get("/api/v1/stats", headers=signed_headers("GET", "/api/v1/stats", DEFAULT_ACCESS_KEY,
                                                                      DEFAULT_SECRET, date=stale_date))
    assert stale.status_code == 401 and "away from the platform clock" in stale.json()["reason"]

    assert client.get("/api/v1/stats").status_code == 200


def test_signature_is_hmac_sha256_over_the_documented_string():
    import base64
    import hashlib
    import hmac

    date = "Tue, 02 Apr 2024 10:00:00 GMT"
    nonce, empty = "n" * 24, hashlib.sha256(b"").hexdigest()
    text = f"TB-HMAC-SHA256-2\nGET\n/api/v1/receipts\nidempotency_key=k1\nak\n{date}\n{nonce}\n{empty}\n"
    expected = base64.b64encode(hmac.new(b"s3cret", text.encode(), hashlib.sha256).digest()).decode()
    assert sign_request("GET", "/api/v1/receipts", "idempotency_key=k1", "ak", "s3cret", date, nonce=nonce,
                        content_sha256=empty) == expected
    # The query is canonicalised: parameter order and encoding do not change the signature.
    assert sign_request("GET", "/p", "b=2&a=%E6%B8%9D", "ak", "s", date, nonce=nonce, content_sha256=empty) == \
        sign_request("GET", "/p", "a=渝&b=2", "ak", "s", date, nonce=nonce, content_sha256=empty)
    headers = signed_headers("GET", "http://127.0.0.1:8700/api/v1/receipts?idempotency_key=k1", "ak", "s3cret",
                             date=date, nonce=nonce)
    assert headers == {"X-Access-Key": "ak", "X-Date": date, "X-Nonce": nonce, "X-Content-SHA256": empty,
                       "X-Signature": expected}


# --------------------------------------------------------------------------------------------- numbering


def test_numbering_is_idempotent_and_never_reuses_a_number(client):
    first = client.number("SB1")
    assert client.number("SB1") == first
    second = client.number("SB2")
    other_system = client.number("SB1", source_system="cq-hrss-soap")
    assert len({first, second, other_system}) == 3
    today = datetime.now(timezone(timedelta(hours=8))).strftime("%Y%m%d")
    assert re.fullmatch(SAMPLE_ITEM_CODE + today + r"\d{4}", first)
    assert len(first) <= 50


def test_numbering_rejects_a_bad_item_code_naming_the_field(client):
    response = client.post("/api/v1/numbering", json={"source_system": "s", "source_key": "k", "item_code": "SX-0012"})
    assert response.status_code == 422
    assert response.json()["details"][0].startswith("item_code:")


# --------------------------------------------------------------------------------------------- case events


def test_a_whole_lifecycle_is_stored_in_order_with_verifiable_receipts(client):
    number = client.number()
    events = lifecycle_events(number)
    for event in events:
        response = client.push(event)
        assert response.status_code == 200, response.text
        receipt = response.json()
        assert verify_receipt(receipt, DEFAULT_SECRET)
        assert (receipt["case_number"], receipt["sequence"], receipt["duplicate"]) == (number, event["sequence"], False)
        assert receipt["digest"] == content_digest(event)

    case = client.get(f"/api/v1/cases/{number}").json()
    assert [e["event"] for e in case["events"]] == [e["event"] for e in events]
    assert case["state"]["concluded"] and case["state"]["evaluated"]
    stats = client.get("/api/v1/stats").json()
    assert stats["cases"] == 1 and stats["events"] == len(events)
    assert stats["by_item"] == {SAMPLE_ITEM_CODE: 1}
    assert stats["by_event"]["step"] == 2


def test_a_schema_violation_is_422_naming_the_field(client):
    event = lifecycle_events(client.number())[0]
    event["data"]["applied_at"] = "20240230T093000"
    response = client.push(event)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "schema"
    assert body["details"][0].startswith("data.applied_at:")


def test_an_unknown_case_number_is_422(client):
    event = lifecycle_events("NEVER-ISSUED-0001")[0]
    response = client.push(event)
    assert (response.status_code, response.json()) == (422, {"error": "unknown case number"})


def test_an_event_of_another_legacy_case_under_this_number_is_422(client):
    event = lifecycle_events(client.number("SB1"))[0]
    event["source_key"] = "SB2"
    response = client.push(event)
    assert response.status_code == 422 and response.json()["field"] == "source_key"


def test_a_state_machine_violation_is_409_with_the_rule(client):
    number = client.number()
    snapshot = sample_snapshot()
    assert client.push(lifecycle_events(number)[0]).status_code == 200
    conclusion = sample_event(number, "conclusion", 2, snapshot["conclusion"], "20240304T110000")
    response = client.push(conclusion)
    assert (response.status_code, response.json()) == (409, {"error": "state", "rule": "conclusion before acceptance"})
    assert client.get(f"/api/v1/cases/{number}").json()["state"]["last_sequence"] == 1  # nothing stored


def test_a_sequence_gap_is_409(client):
    number = client.number()
    application, acceptance, step = lifecycle_events(number)[:3]
    assert client.push(application).status_code == 200
    response = client.push(step)  # sequence 3 after 1: the acceptance went missing
    assert (response.status_code, response.json()["rule"]) == (409, "sequence gap: expected 2, got 3")


def test_missing_idempotency_key_is_400(client):
    event = lifecycle_events(client.number())[0]
    response = client.post("/api/v1/case-events", json=event)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]


def test_a_repeated_idempotency_key_returns_the_original_receipt_and_stores_nothing(client):
    event = lifecycle_events(client.number())[0]
    original = client.push(event, key="k-1").json()
    again = client.push(event, key="k-1")
    assert again.status_code == 200
    duplicate = again.json()
    assert duplicate["duplicate"] is True
    assert {k: v for k, v in duplicate.items() if k not in ("duplicate", "signature")} == \
        {k: v for k, v in original.items() if k not in ("duplicate", "signature")}
    assert verify_receipt(duplicate, DEFAULT_SECRET)
    assert client.get("/api/v1/stats").json()["events"] == 1
    assert client.http.get("/_sandbox/requests").json()["duplicates"] == 1

    changed = copy.deepcopy(event)
    changed["data"]["applicant_phone"] = "13900139000"
    conflict = client.push(changed, key="k-1")
    assert (conflict.status_code, conflict.json()["error"]) == (409, "idempotency key reused with a different body")

    looked_up = client.get("/api/v1/receipts?idempotency_key=k-1")
    assert looked_up.json() == original
    assert client.get("/api/v1/receipts?idempotency_key=never-used").status_code == 404


def test_a_tampered_receipt_does_not_verify(client):
    receipt = client.push(lifecycle_events(client.number())[0]).json()
    assert verify_receipt(receipt, DEFAULT_SECRET)
    assert not verify_receipt({**receipt, "sequence": 2}, DEFAULT_SECRET)
    assert not verify_receipt({**receipt, "digest": "0" * 64}, DEFAULT_SECRET)
    assert not verify_receipt(receipt, "another-secret")
    assert not verify_receipt({k: v for k, v in receipt.items() if k != "signature"}, DEFAULT_SECRET)


# --------------------------------------------------------------------------------------------- faults


def test_fail_next_fails_exactly_k_requests_and_stores_nothing(client):
    number = client.number()
    client.http.post("/_sandbox/faults", json={"fail_next": 2, "status": 503, "retry_after": 3})
    event = lifecycle_events(number)[0]
    first, second, third = (client.push(event) for _ in range(3))
    assert (first.status_code, first.headers["Retry-After"]) == (503, "3")
    assert second.status_code == 503
    assert third.status_code == 200 and third.json()["duplicate"] is False  # the failures left no trace
    counts = client.http.get("/_sandbox/requests").json()
    assert counts["failed"] == {"fail_next": 2}
    assert counts["stored"] == 1


@pytest.mark.parametrize(
    "kind, status, check",
    [
        ("500", 500, lambda r: r.json()["kind"] == "500"),
        ("429", 429, lambda r: r.headers["Retry-After"] == "1"),
        ("timeout", 504, lambda r: r.json()["error"] == "timeout"),
        ("reset", 502, lambda r: r.json() == {"error": "reset"} and r.headers["Connection"] == "close"),
    ],
)
def test_each_fault_kind_answers_as_documented(client, kind, status, check):
    client.http.post("/_sandbox/faults", json={"error_rate": 1.0, "kinds": [kind], "retry_after": 1, "timeout_seconds": 0})
    response = client.post("/api/v1/numbering", json={"source_system": "s", "source_key": "k", "item_code": SAMPLE_ITEM_CODE})
    assert response.status_code == status and check(response)
    assert client.http.get("/_sandbox/requests").json()["failed"] == {kind: 1}
    assert client.get("/api/v1/stats").json()["numbers_issued"] == 0  # the fault came before anything was stored

    client.http.delete("/_sandbox/faults")
    assert client.post("/api/v1/numbering", json={"source_system": "s", "source_key": "k",
                                                  "item_code": SAMPLE_ITEM_CODE}).status_code == 200


def test_an_error_rate_is_reproducible_with_a_seed_and_only_hits_the_push_and_numbering_apis(client):
    def outcomes():
        client.http.post("/_sandbox/faults", json={"error_rate": 0.5, "kinds": ["500", "429"], "seed": 7})
        return [client.post("/api/v1/numbering", json={"source_system": "s", "source_key": f"k{i}",
                                                       "item_code": SAMPLE_ITEM_CODE}).status_code for i in range(20)]

    first = outcomes()
    assert set(first) == {200, 500, 429}
    assert outcomes() == first  # same seed, same faults
    assert all(client.get("/api/v1/stats").status_code == 200 for _ in range(10))  # reads are never faulted


def test_fault_configuration_is_validated(client):
    response = client.http.post("/_sandbox/faults", json={"error_rate": 2, "kinds": ["meteor"]})
    assert response.status_code == 422


# --------------------------------------------------------------------------------------------- persistence


def test_a_restarted_platform_knows_every_case(tmp_path):
    db = str(tmp_path / "platform.db")
    before = SignedClient(create_app(db))
    number = before.number()
    events = lifecycle_events(number)
    for event in events[:3]:
        assert before.push(event).status_code == 200
    original = before.get(f"/api/v1/receipts?idempotency_key=key-{number}-3").json()

    after = SignedClient(create_app(db))
    assert after.number() == number  # same legacy case, same number
    assert after.push(events[2]).json()["duplicate"] is True  # it remembers what it stored
    assert after.push(events[4]).json()["rule"] == "sequence gap: expected 4, got 5"  # and where the case stands
    assert after.push(events[3]).status_code == 200
    assert after.get(f"/api/v1/receipts?idempotency_key=key-{number}-3").json() == original
    assert after.number("SB-NEW") != number  # numbers are not reused after a restart
    assert len(after.get(f"/api/v1/cases/{number}").json()["events"]) == 4


# --------------------------------------------------------------------------------------------- over real HTTP


@pytest.fixture
def served_platform():
    """The platform under uvicorn on 127.0.0.1 at a free port."""
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "sandbox platform did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_over_http_signed_calls_work_and_a_timeout_fault_outlasts_the_client(served_platform):
    auth = PlatformAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET)

    def call(http, method, path, **kwargs):
        return http.request(method, served_platform + path, auth=auth, **kwargs)

    with httpx.Client(timeout=5) as http:
        numbered = call(http, "POST", "/api/v1/numbering",
                        json={"source_system": "cq-samr-rest", "source_key": "SB2024000123", "item_code": SAMPLE_ITEM_CODE})
        assert numbered.status_code == 200
        event = lifecycle_events(numbered.json()["case_number"])[0]
        pushed = call(http, "POST", "/api/v1/case-events", json=event, headers={"Idempotency-Key": "cq:SB 1/2&x=y+z"})
        assert pushed.status_code == 200
        url = served_platform + "/api/v1/receipts"
        looked_up = http.get(url, params={"idempotency_key": "cq:SB 1/2&x=y+z"},
                             headers=signed_headers("GET", url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET))
        assert looked_up.status_code == 401  # params added after signing are not covered: signature must fail
        from urllib.parse import quote
        looked_up = call(http, "GET", "/api/v1/receipts?idempotency_key=" + quote("cq:SB 1/2&x=y+z"))
        assert looked_up.json() == pushed.json()

        http.post(served_platform + "/_sandbox/faults", json={"fail_next": 0, "error_rate": 1.0, "kinds": ["timeout"],
                                                             "timeout_seconds": 1.0})
        with pytest.raises(httpx.ReadTimeout):
            call(http, "POST", "/api/v1/numbering", json={"source_system": "s", "source_key": "k2",
                                                          "item_code": SAMPLE_ITEM_CODE}, timeout=0.2)
