"""Hostile legacy REST servers (sandbox/hostile_rest.py) against the REST adapter's bounds (issue 20, items 3–4):
a clear SourceError naming the limit, no traceback-worthy exception, nothing sent to another origin, bounded in
time and memory."""
from __future__ import annotations


import pytest

from adapters.base import SourceError, TransientSourceError
from adapters.rest import RestAdapter
from adapters.rest_auth import CrossOriginRefused
from adapters.rest_pages import PaginationLoop
from sandbox.hostile_rest import DripServer, Recorder, hostile_app
from sandbox.runner import Server
from tests.endurance import wait_until

pytestmark = pytest.mark.timeout(60)

TOKEN = "hostile-test-token"


@pytest.fixture(scope="module")
def servers():
    recorder = Recorder()
    elsewhere = Server(recorder.app, name="elsewhere").start()
    hostile = Server(hostile_app(elsewhere.url), name="hostile").start()
    yield hostile, recorder
    hostile.stop()
    elsewhere.stop()


@pytest.fixture(autouse=True)
def token(monkeypatch):
    monkeypatch.setenv("HOSTILE_TOKEN", TOKEN)


def adapter(url: str, path: str, **over) -> RestAdapter:
    settings = {"adapter": "rest", "base_url": url, "path": path, "records_path": "items",
                "auth": {"type": "bearer", "token_env": "HOSTILE_TOKEN"},
                "retry": {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.02}}
    settings.update(over)
    return RestAdapter("cq-hostile", settings)


def fetch(url, path, **over):
    a = adapter(url, path, **over)
    try:
        return [r.data for r in a.fetch(None)]
    finally:
        a.close()


def test_same_origin_link_pages_and_redirects_are_followed(servers):
    hostile, _ = servers
    assert [r["id"] for r in fetch(hostile.url, "/cases", pagination={"style": "link"})] == list(range(9))
    assert len(fetch(hostile.url, "/redirect-home")) == 3


@pytest.mark.parametrize("path, pagination", [
    ("/link-away", {"style": "link"}),
    ("/next-away", {"style": "link", "next_path": "next"}),
    ("/redirect-away", {"style": "none"}),
])
def test_nothing_is_followed_or_sent_to_another_origin(servers, path, pagination):
    hostile, recorder = servers
    before = len(recorder.requests)
    with pytest.raises(CrossOriginRefused, match="another origin than base_url's: not followed, no credentials sent"):
        fetch(hostile.url, path, pagination=pagination)
    assert len(recorder.requests) == before  # not even a request without the token


def test_auth_refuses_to_sign_a_request_for_another_origin(servers):
    import httpx

    hostile, recorder = servers
    a = adapter(hostile.url, "/cases")
    before = len(recorder.requests)
    with pytest.raises(CrossOriginRefused):
        a.http.client.get(f"http://localhost:{hostile.port + 0}/steal", auth=a.auth)  # another host name
    with pytest.raises(CrossOriginRefused):
        a.http.client.send(httpx.Request("GET", "http://127.0.0.2:9/steal"), auth=a.auth)
    a.close()
    assert len(recorder.requests) == before


def test_an_oversize_body_stops_at_the_cap(servers):
    hostile, _ = servers
    cap = 1024 * 1024
    with pytest.raises(SourceError, match=r"passed the cap of 1048576 bytes \(limits.max_response_bytes\)"):
        fetch(hostile.url, "/oversize?mb=64", limits={"max_response_bytes": cap})
    with pytest.raises(SourceError, match="announces 1000000000000 bytes"):
        fetch(hostile.url, "/announced", limits={"max_response_bytes": cap})


def test_an_endless_chunked_stream_stops_at_the_cap(servers):
    hostile, _ = servers
    with pytest.raises(SourceError, match="limits.max_response_bytes"):
        fetch(hostile.url, "/endless", limits={"max_response_bytes": 2 * 1024 * 1024})


@pytest.mark.parametrize("headers_first", [False, True])
def test_a_drip_of_one_byte_every_8_seconds_fails_at_the_call_deadline(headers_first):
    drip = DripServer(interval=8.0, headers_first=headers_first).start()
    try:
        with pytest.raises(TransientSourceError, match=r"deadline of 1 s \(limits.call_deadline_seconds\)"):
            fetch(drip.url, "/cases", limits={"call_deadline_seconds": 1}, retry={"attempts": 2, "initial_wait": 0.01})
        wait_until(lambda: len(drip.hangups) == 2, 30, "the drip server to see both calls hang up", every=0.05)
    finally:
        drip.stop()
    # Both calls hung up before the drip's first body byte (8 s in): each kept its 1 s deadline, none waited.
    assert drip.connections == 2 and drip.hangups == [0, 0]


def test_the_run_deadline_bounds_every_retry(servers):
    drip = DripServer(interval=8.0).start()
    try:
        with pytest.raises(SourceError, match=r"deadline of 1.5 s \(limits.run_deadline_seconds\)") as caught:
            fetch(drip.url, "/cases", limits={"call_deadline_seconds": 0.5, "run_deadline_seconds": 1.5},
                  retry={"attempts": 50, "initial_wait": 0.05, "max_wait": 0.1})
    finally:
        drip.stop()
    assert not isinstance(caught.value, TransientSourceError) and 2 <= drip.connections < 10


@pytest.mark.parametrize("path, pagination, reason", [
    ("/same-page", {"style": "page", "size": 3}, "holds the same records as page 1"),
    ("/same-cursor", {"style": "cursor", "cursor_path": "next", "size": 3}, "sent 'cursor c-1' a second time"),
    ("/link-loop", {"style": "link"}, "a second time: a pagination loop"),
])
def test_the_same_page_cursor_or_link_twice_is_a_loop(servers, path, pagination, reason):
    hostile, _ = servers
    with pytest.raises(PaginationLoop, match=reason):
        fetch(hostile.url, path, pagination=pagination)


def test_pages_for_ever_stop_at_the_page_cap(servers):
    hostile, _ = servers
    with pytest.raises(SourceError, match=r"more than 5 pages \(limits.max_pages\)"):
        fetch(hostile.url, "/pages-forever", pagination={"style": "page", "size": 3}, limits={"max_pages": 5})


@pytest.mark.parametrize("depth", [100, 200_000])
def test_deeply_nested_json_is_a_clear_error_not_a_recursion_error(servers, depth):
    hostile, _ = servers
    with pytest.raises(SourceError, match=r"nests deeper than 64 levels \(limits.max_json_depth\)"):
        fetch(hostile.url, f"/deep?depth={depth}")
    assert len(fetch(hostile.url, "/deep?depth=10")) == 1  # within the limit: read


def test_a_login_redirected_to_another_origin_sends_the_password_nowhere(servers, monkeypatch):
    hostile, recorder = servers
    monkeypatch.setenv("HOSTILE_PASSWORD", "never-leaves")
    before = len(recorder.requests)
    with pytest.raises(CrossOriginRefused, match="the redirect to"):
        fetch(hostile.url, "/cases", auth={"type": "login", "url": "/login-away", "token_path": "token",
                                           "body": {"username": "u", "password_env": "HOSTILE_PASSWORD"}})
    assert len(recorder.requests) == before


def test_a_body_that_does_not_decode_is_a_clear_error(servers):
    hostile, _ = servers
    with pytest.raises(SourceError, match="DecodingError"):
        fetch(hostile.url, "/bad-gzip")
