"""Platform request signing (TB-HMAC-SHA256-2): what a captured request can no longer do, and the one signing path.

An attacker who captured one signed request off the wire tries to send it again with another body, with another
Idempotency-Key, as it is, or later; the mock platform refuses each and stores nothing. Every platform call
tongban makes (numbering, case push, sealed documents, identity, catalogue, reconciliation) is checked by the
platform's own verifier through httpx.MockTransport.
"""
from __future__ import annotations

import copy
import hashlib
import json
import threading
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select

from sandbox.platform import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, create_app
from sandbox.runner import Server
from tongban.bus.local import LocalBus
from tongban.bus.topology import cases_work
from tongban.cases.changes import events_between
from tongban.cases.samples import SAMPLE_ITEM_CODE, sample_event, sample_snapshot
from tongban.delivery.worker import DeliveryWorker
from tongban.bus.envelope import Envelope, canonical_json, content_digest
from tongban.platform.auth import (
    MAX_CLOCK_SKEW_SECONDS, NonceMemory, PlatformAuth, RequestVerifier, http_date, sign_receipt, signed_headers,
)
from tongban.platform.client import PlatformClient, ReceiptInvalid
from tongban.settings import Settings
from tongban.store.tables import parked


@pytest.fixture
def platform_server():
    server = Server(create_app(None), name="platform").start()
    yield server
    server.stop()


class Recording(httpx.HTTPTransport):
    """A wiretap: keeps every request as it went out, signed."""

    def __init__(self):
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request):
        self.sent.append(request)
        return super().handle_request(request)


@pytest.fixture
def tapped(tmp_path, platform_server):
    tap = Recording()
    client = PlatformClient(Settings(home=tmp_path, platform_url=platform_server.url), transport=tap)
    yield client, tap, platform_server
    client.close()


def _events(case_number):
    snapshot = sample_snapshot("evaluated")
    return [sample_event(case_number, kind, number, data, at, snapshot)
            for number, (kind, data, at) in enumerate(events_between(None, snapshot), start=1)]


def replay(captured: httpx.Request, *, body: bytes | None = None, headers: dict | None = None) -> httpx.Response:
    """Send a captured request again, optionally with another body or some headers changed."""
    new_headers = httpx.Headers(captured.headers)
    new_headers.pop("Content-Length", None)
    for name, value in (headers or {}).items():
        new_headers[name] = value  # case-insensitive: replaces the captured header
    with httpx.Client() as http:
        return http.request(captured.method, captured.url, headers=new_headers,
                            content=captured.content if body is None else body)


def _stored_events(server, number):
    auth = PlatformAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET)
    return httpx.get(f"{server.url}/api/v1/cases/{number}", auth=auth).json()["events"]


# ------------------------------------------------------------------------------------------ captured requests


def test_a_captured_case_push_cannot_carry_a_forged_conclusion(tapped):
    client, tap, server = tapped
    number = client.case_number("cq-samr-rest", "SB2024000123", SAMPLE_ITEM_CODE)
    events = _events(number)
    client.push_event(events[0], "key-1")
    captured = tap.sent[-1]

    forged = copy.deepcopy(events[1])  # the attacker's own 准予许可 under the genuine headers
    forged_body = canonical_json(forged)
    refused = replay(captured, body=forged_body)
    assert refused.status_code == 401 and "body does not match" in refused.json()["reason"]
    # Recomputing the digest header does not help: the digest is signed.
    refused = replay(captured, body=forged_body, headers={"X-Content-SHA256": hashlib.sha256(forged_body).hexdigest()})
    assert (refused.status_code, refused.json()["reason"]) == (401, "signature does not match")

    assert [e["sequence"] for e in _stored_events(server, number)] == [1]  # nothing forged was stored
    receipt = client.push_event(events[1], "key-2")  # and the genuine next event still goes through
    assert receipt["sequence"] == 2 and not receipt["duplicate"]


def test_a_captured_request_cannot_be_sent_under_another_idempotency_key(tapped):
    client, tap, _ = tapped
    number = client.case_number("cq-samr-rest", "SB2024000123", SAMPLE_ITEM_CODE)
    client.push_event(_events(number)[0], "key-1")
    refused = replay(tap.sent[-1], headers={"Idempotency-Key": "attacker-key"})
    assert (refused.status_code, refused.json()["reason"]) == (401, "signature does not match")


def test_a_captured_request_replayed_as_it_is_is_refused_by_its_nonce(tapped):
    client, tap, server = tapped
    client.case_number("cq-samr-rest", "SB3", SAMPLE_ITEM_CODE)
    captured = tap.sent[-1]
    again = replay(captured)
    assert again.status_code == 401 and "nonce already used" in again.json()["reason"]
    # A GET (the reconciliation statistics) is refused the same way.
    client.get("/api/v1/stats")
    assert "nonce already used" in replay(tap.sent[-1]).json()["reason"]
    # Each attempt of the client itself gets a fresh nonce: two identical calls both succeed.
    assert client.case_number("cq-samr-rest", "SB3", SAMPLE_ITEM_CODE) == \
        client.case_number("cq-samr-rest", "SB3", SAMPLE_ITEM_CODE)
    nonces = [r.headers["X-Nonce"] for r in tap.sent]
    assert len(set(nonces)) == len(nonces)


@pytest.mark.parametrize("minutes, accepted", [(-6, False), (6, False), (-4, True), (4, True)])
def test_the_date_must_be_within_five_minutes_of_the_platform_clock(platform_server, minutes, accepted):
    url = f"{platform_server.url}/api/v1/stats"
    date = http_date(datetime.now(timezone.utc) + timedelta(minutes=minutes))
    response = httpx.get(url, headers=signed_headers("GET", url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET, date=date))
    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 401 and "away from the platform clock" in response.json()["reason"]
        assert f"at most {MAX_CLOCK_SKEW_SECONDS} s" in response.json()["reason"]


def test_unsigned_and_half_signed_requests_name_the_missing_header(platform_server):
    url = f"{platform_server.url}/api/v1/stats"
    headers = signed_headers("GET", url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET)
    del headers["X-Nonce"]
    response = httpx.get(url, headers=headers)
    assert response.status_code == 401 and response.json()["reason"] == "missing header X-Nonce"


def test_a_nonce_is_spent_across_every_route_of_the_platform(tmp_path):
    """The sealed-document routes share the platform's verifier: a nonce used on one is spent on all."""
    verifier = RequestVerifier("ak", "s")
    body = b"{}"
    headers = signed_headers("POST", "/api/v1/numbering", "ak", "s", body=body, nonce="n" * 20)
    assert verifier.check("POST", "/api/v1/numbering", "", headers, body) is None
    assert "nonce already used" in verifier.check("POST", "/api/v1/numbering", "", headers, body)


def test_the_nonce_memory_is_bounded_and_never_forgets_silently():
    memory = NonceMemory(window_seconds=300, capacity=3)
    now = 1_000_000.0
    for index, sent in enumerate([now - 30, now - 20, now - 10]):
        assert memory.check_and_remember(f"nonce-{index}", sent, now) is None
    assert memory.check_and_remember("nonce-0", now - 30, now).startswith("nonce already used")
    assert memory.check_and_remember("nonce-3", now - 5, now) is None  # full: the oldest is forgotten …
    assert len(memory) == 3
    # … and a request as old as the forgotten one can no longer be checked, so it is refused, not let through.
    assert "too old to check" in memory.check_and_remember("nonce-0", now - 30, now)
    assert "too old to check" in memory.check_and_remember("fresh-but-old", now - 31, now)
    # Expired entries leave on their own.
    assert memory.check_and_remember("later", now + 400, now + 400) is None
    assert len(memory) == 1


# ------------------------------------------------------------------------------------------ receipts


def _fake_platform(receipt_for):
    """A platform impostor on httpx.MockTransport answering every case push with `receipt_for(event, key)`."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/case-events":
            return httpx.Response(200, json=receipt_for(json.loads(request.content),
                                                        request.headers["Idempotency-Key"]))
        return httpx.Response(404, json={"error": "not here"})

    return httpx.MockTransport(handle)


def _receipt(event, key, secret):
    return sign_receipt({"receipt_id": "R1", "case_number": event["case_number"], "event": event["event"],
                         "sequence": event["sequence"], "idempotency_key": key, "digest": content_digest(event),
                         "received_at": "2026-01-01T00:00:00Z", "duplicate": False}, secret)


def test_a_receipt_forged_without_the_platform_secret_is_refused_and_the_event_parked(tmp_path, sqlite_store):
    settings = Settings(home=tmp_path, platform_url="http://platform.invalid")
    client = PlatformClient(settings, transport=_fake_platform(lambda e, k: _receipt(e, k, "attacker-secret")))
    event = _events("11500000MB0000000X4000000000000020260101000001")[0]
    with pytest.raises(ReceiptInvalid, match="signature does not verify"):
        client.push_event(event, "key-1")

    bus, work = LocalBus(sqlite_store), cases_work("forged")
    bus.publish(work, [Envelope(kind="case_event", source="cq-samr-rest", region=None, idempotency_key="key-1",
                                correlation=event["case_number"], payload=event)])
    stats = DeliveryWorker(store=sqlite_store, bus=bus, platform=client, work=work).run(
        stop=threading.Event(), idle_exit=0.3)
    assert (stats.delivered, stats.parked) == (0, 1)
    with sqlite_store.read() as conn:
        reasons = [r.reason for r in conn.execute(select(parked.c.reason))]
    assert reasons == ["receipt not accepted: the platform's receipt signature does not verify"]


def test_a_genuine_receipt_for_another_event_is_refused(tmp_path):
    settings = Settings(home=tmp_path, platform_url="http://platform.invalid")
    events = _events("11500000MB0000000X4000000000000020260101000001")
    # Properly signed, but for the first event: the digest binds what the platform acknowledged.
    client = PlatformClient(settings, transport=_fake_platform(
        lambda e, k: _receipt(events[0], k, settings.platform_secret)))
    with pytest.raises(ReceiptInvalid, match="digest does not match"):
        client.push_event(events[1], "key-2")


# ------------------------------------------------------------------------------------------ one signing path


class VerifyingPlatform:
    """httpx.MockTransport that checks each request with the mock platform's verifier, then answers enough
    for every caller to succeed."""

    def __init__(self, settings):
        self.verifier = RequestVerifier(settings.platform_access_key, settings.platform_secret)
        self.secret = settings.platform_secret
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        reason = self.verifier.check(request.method, request.url.path, request.url.query.decode(), request.headers,
                                     request.content)
        if reason:
            return httpx.Response(401, json={"error": "unauthorized", "reason": reason})
        self.paths.append(f"{request.method} {request.url.path}")
        path = request.url.path
        if path == "/api/v1/numbering":
            return httpx.Response(200, json={"case_number": "N1"})
        if path == "/api/v1/case-events":
            event = json.loads(request.content)
            return httpx.Response(200, json=_receipt(event, request.headers["Idempotency-Key"], self.secret))
        if path == "/api/v1/users/resolve":
            return httpx.Response(200, json={"user_id": "U1"})
        if path == "/api/v1/catalog":
            return httpx.Response(200, json={"version": 1, "published_at": "2026-01-01T00:00:00Z", "items": []})
        if path == "/api/v1/stats":
            return httpx.Response(200, json={"by_item": {}})
        if path == "/api/v1/sealed-documents":
            return httpx.Response(422, json={"error": "seal", "reason": "digest_mismatch", "message": "changed"})
        return httpx.Response(404, json={"error": "unknown"})


def test_every_platform_call_goes_through_the_one_signing_path(tmp_path, sqlite_store):
    from tongban.catalog.sync import sync
    from tongban.identity.resolver import IdentityResolver
    from tongban.identity.users import LegacyUser
    from tongban.audit.reconcile import reconcile
    from tongban.platform import SealRejected
    from tongban.codes import make_id_number

    settings = Settings(home=tmp_path, platform_url="https://platform.invalid", pii_key="k")
    fake = VerifyingPlatform(settings)
    client = PlatformClient(settings, transport=httpx.MockTransport(fake))
    event = _events("N1")[0]

    assert client.case_number("s", "k", SAMPLE_ITEM_CODE) == "N1"
    assert client.push_event(event, "key-1")["sequence"] == 1
    resolver = IdentityResolver(store=sqlite_store, platform=client, settings=settings)
    person = LegacyUser(system="s", id_type="111", id_number=make_id_number("500103", date(1990, 1, 1), 12, "M"))
    assert resolver.resolve_user(person) == "U1"
    assert sync(sqlite_store, client).catalogue.version == 1
    assert reconcile(sqlite_store, client).ok
    with pytest.raises(SealRejected) as refused:
        client.push_sealed(b"<doc/>", "key-s")
    assert refused.value.code == "digest_mismatch"  # it got past the signature check: a seal refusal, not a 401

    assert fake.paths == ["POST /api/v1/numbering", "POST /api/v1/case-events", "POST /api/v1/users/resolve",
                          "GET /api/v1/catalog", "GET /api/v1/stats", "POST /api/v1/sealed-documents"]


def test_the_client_never_follows_a_redirect_with_its_signature(tmp_path):
    seen = []

    def handle(request):
        seen.append(str(request.url))
        return httpx.Response(307, headers={"Location": "https://elsewhere.invalid/api/v1/stats"})

    client = PlatformClient(Settings(home=tmp_path, platform_url="https://platform.invalid"),
                            transport=httpx.MockTransport(handle))
    from tongban.platform.client import PlatformRejected

    with pytest.raises(PlatformRejected, match="redirects are not followed"):
        client.get("/api/v1/stats")
    assert seen == ["https://platform.invalid/api/v1/stats"]
