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

    with pytest.raises(TransientSourceError, match="failed 3 times: .*ConnectTimeout"):
        list(_adapter(down).fetch(None))


def test_a_4xx_is_permanent_and_not_retried():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(403, text="forbidden")

    with pytest.raises(SourceError, match="HTTP 403") as caught:
        list(_adapter(handler).fetch(None))
    assert not isinstance(caught.value, TransientSourceError) and len(calls) == 1


# --- OAuth2 client credentials, form logins, Airflow Connections --------------------------------------------

def _oauth_server(issued: list, lifetime: int = 60):
    import base64
    from urllib.parse import parse_qs

    def handler(request):
        if request.url.path == "/oauth/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            basic = base64.b64decode(request.headers["authorization"].split()[1]).decode()
            if basic != "client-1:shh" or form != {"grant_type": "client_credentials", "scope": "cases.read"}:
                return httpx.Response(401, json={"error": "invalid_client"})
            issued.append(f"tok-{len(issued)}")
            return httpx.Response(200, json={"access_token": issued[-1], "token_type": "Bearer", "expires_in": lifetime})
        if request.headers.get("authorization") != f"Bearer {issued[-1] if issued else ''}":
            return httpx.Response(401)
        return httpx.Response(200, json={"items": RECORDS[:2]})

    return handler


def test_oauth2_client_credentials_and_a_new_token_before_expiry(monkeypatch):
    monkeypatch.setenv("CQ_X_ID", "client-1")
    monkeypatch.setenv("CQ_X_SECRET", "shh")
    issued: list = []
    now = [0.0]
    adapter = RestAdapter("test-system", {
        "base_url": "http://legacy.test", "path": "/cases", "records_path": "items",
        "auth": {"type": "oauth2", "token_url": "/oauth/token", "client_id_env": "CQ_X_ID",
                 "client_secret_env": "CQ_X_SECRET", "scope": "cases.read", "refresh_before_seconds": 10}},
        transport=httpx.MockTransport(_oauth_server(issued)), clock=lambda: now[0])
    assert len(list(adapter.fetch(None))) == 2 and issued == ["tok-0"]
    now[0] = 45.0  # still valid: no new token
    list(adapter.fetch(None))
    assert issued == ["tok-0"]
    now[0] = 55.0  # within refresh_before_seconds of expiry: a new one first
    list(adapter.fetch(None))
    assert issued == ["tok-0", "tok-1"]
    monkeypatch.setenv("CQ_X_SECRET", "wrong")
    with pytest.raises(SourceError, match=r"refused the client \(HTTP 401\): check CQ_X_ID"):
        RestAdapter("test-system", {"base_url": "http://legacy.test", "auth": {
            "type": "oauth2", "token_url": "/oauth/token", "client_id_env": "CQ_X_ID", "client_secret_env": "CQ_X_SECRET",
            "scope": "cases.read"}}, transport=httpx.MockTransport(_oauth_server([]))).call("/cases", None, "x")


def test_a_form_login_sends_env_values_under_their_own_names(monkeypatch):
    monkeypatch.setenv("CQ_CL_PASSWORD", "pw")
    seen = {}

    def handler(request):
        if request.url.path == "/sso/login":
            seen["type"] = request.headers["content-type"]
            seen["body"] = request.content.decode()
            return httpx.Response(200, json={"data": {"tk": "abc"}})
        seen["token"] = request.headers.get("authorization")
        return httpx.Response(200, json={"items": RECORDS[:1]})

    list(_adapter(handler, auth={"type": "login", "url": "/sso/login", "body_format": "form", "token_path": "data.tk",
                                 "body": {"user": "sync", "pwd_env": "CQ_CL_PASSWORD"}}).fetch(None))
    assert seen["type"] == "application/x-www-form-urlencoded" and seen["body"] == "user=sync&pwd=pw"
    assert seen["token"] == "Bearer abc"  # the Authorization header gets the Bearer prefix by default


def test_credentials_from_an_airflow_connection(monkeypatch):
    pytest.importorskip("airflow.sdk")
    monkeypatch.setenv("AIRFLOW_CONN_CQ_CL", "http://cl_sync:p%40ss@legacy.test")
    seen = {}

    def handler(request):
        if request.url.path == "/auth/login":
            seen["login"] = request.content.decode()
            return httpx.Response(200, json={"result": {"token": "t"}})
        return httpx.Response(200, json={"items": []})

    list(_adapter(handler, auth={"type": "login", "url": "/auth/login", "conn_id": "cq_cl", "token_path": "result.token",
                                 "body": {"username_conn": "login", "password_conn": "password"}}).fetch(None))
    assert seen["login"] == '{"username":"cl_sync","password":"p@ss"}'


def test_an_airflow_connection_without_airflow_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "airflow.sdk", None)  # as if Airflow were not installed
    with pytest.raises(SourceError, match="names an Airflow Connection, but Airflow is not installed"):
        _adapter(lambda r: httpx.Response(200), auth={"type": "bearer", "conn_id": "cq_samr"})


def test_a_retry_after_longer_than_max_wait_is_left_to_the_next_run():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(503, headers={"Retry-After": "3600"})

    with pytest.raises(TransientSourceError, match=r"retry after 3600 s, more than retry.max_wait"):
        list(_adapter(handler).fetch(None))
    assert len(calls) == 1


def test_a_login_answered_with_http_401_names_the_variables_to_check(monkeypatch):
    monkeypatch.setenv("CQ_CL_PASSWORD", "old-password")
    calls = []

    def handler(request):
        calls.append(request.url.path)
        return httpx.Response(401, json={"error": "bad credentials"})

    with pytest.raises(SourceError, match=r"refused the credentials \(HTTP 401\): check CQ_CL_PASSWORD") as caught:
        list(_adapter(handler, auth={"type": "login", "url": "/auth/login", "token_path": "token",
                                     "body": {"username": "u", "password_env": "CQ_CL_PASSWORD"}}).fetch(None))
    assert "old-password" not in str(caught.value) and calls == ["/auth/login"]


def test_without_an_envelope_an_answer_without_the_record_list_is_not_the_end_of_data():
    def handler(request):  # an expired token, answered inside HTTP 200 by a system nobody declared an envelope for
        return httpx.Response(200, json={"code": "4011", "msg": "令牌已过期"})

    with pytest.raises(SourceError, match=r"nothing at records_path 'items'.*4011.*declare an envelope"):
        list(_adapter(handler, pagination={"style": "page", "size": 3}).fetch(None))
