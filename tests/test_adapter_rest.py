"""The declared REST adapter against httpx.MockTransport: pagination styles, auth, retries."""
from __future__ import annotations

import httpx
import pytest

from adapters.base import SourceError, TransientSourceError
from adapters.rest import RestAdapter

RECORDS = [{"id": i} for i in range(7)]


def _adapter(handler, **settings):
    base = {"base_url": "http://legacy.test", "path": "/cases", "records_path": "items",
            "retry": {"attempts": 3, "initial_wait": 0.01, "max_wait": 0.05}}
    base.update(settings)
    return RestAdapter("test-system", base, transport=httpx.MockTransport(handler))


def test_page_number_pagination_and_watermark_parameter():
    seen = []

    def handler(request):
        seen.append(dict(request.url.params))
        page, size = int(request.url.params["page"]), int(request.url.params["size"])
        return httpx.Response(200, json={"items": RECORDS[(page - 1) * size: page * size]})

    adapter = _adapter(handler, pagination={"style": "page", "size": 3}, incremental={"param": "since"})
    got = [r.data["id"] for r in adapter.fetch("2024-01-01 00:00:00")]
    assert got == list(range(7))
    assert all(p["since"] == "2024-01-01 00:00:00" for p in seen) and len(seen) == 3


def test_offset_cursor_and_link_pagination():
    def offset(request):
        o, n = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json={"items": RECORDS[o:o + n]})

    def cursor(request):
        start = int(request.url.params.get("cursor", 0))
        nxt = start + 3 if start + 3 < len(RECORDS) else None
        return httpx.Response(200, json={"items": RECORDS[start:start + 3], "next": nxt and str(nxt)})

    def link(request):
        start = int(request.url.params.get("from", 0))
        headers = {"Link": f'<http://legacy.test/cases?from={start + 4}>; rel="next"'} if start + 4 < len(RECORDS) else {}
        return httpx.Response(200, json={"items": RECORDS[start:start + 4]}, headers=headers)

    for handler, pagination in [(offset, {"style": "offset", "size": 3}),
                                (cursor, {"style": "cursor", "cursor_path": "next", "size": 3}),
                                (link, {"style": "link"})]:
        assert [r.data["id"] for r in _adapter(handler, pagination=pagination).fetch(None)] == list(range(7))


def test_auth_comes_from_the_environment(monkeypatch):
    seen = {}

    def handler(request):
        seen.update(request.headers)
        return httpx.Response(200, json={"items": []})

    monkeypatch.setenv("LEGACY_TOKEN", "t0k3n")
    list(_adapter(handler, auth={"type": "bearer", "token_env": "LEGACY_TOKEN"}).fetch(None))
    assert seen["authorization"] == "Bearer t0k3n"
    monkeypatch.setenv("LEGACY_KEY", "k3y")
    list(_adapter(handler, auth={"type": "api_key", "header": "X-Key", "key_env": "LEGACY_KEY"}).fetch(None))
    assert seen["x-key"] == "k3y"
    monkeypatch.delenv("LEGACY_TOKEN")
    with pytest.raises(SourceError, match="LEGACY_TOKEN"):
        _adapter(handler, auth={"type": "bearer", "token_env": "LEGACY_TOKEN"})


def test_transient_failures_are_retried_then_succeed():
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(503)
        if len(calls) == 2:
            return httpx.Response(429, headers={"Retry-After": "0.05"})
        return httpx.Response(200, json={"items": RECORDS[:2]})

    assert len(list(_adapter(handler).fetch(None))) == 2 and len(calls) == 3


def test_persistent_transient_failure_and_timeouts_raise_transient_error():
    def down(request):
        raise httpx.ConnectTimeout("legacy system asleep")

    with pytest.raises(TransientSourceError, match="failed 3 times"):
        list(_adapter(down).fetch(None))


def test_a_4xx_is_permanent_and_not_retried():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(403, text="forbidden")

    with pytest.raises(SourceError, match="HTTP 403") as caught:
        list(_adapter(handler).fetch(None))
    assert not isinstance(caught.value, TransientSourceError) and len(calls) == 1
