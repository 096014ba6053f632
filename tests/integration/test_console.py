"""The web console without a browser: users and their hashes, the session cookie, CSRF, log-in redirects,
masking on the pages, what the timeline says of receipts, and the refusal of default secrets in production.
(The browser test, tests/e2e/test_console_browser.py, drives the same pages in Chromium over the real pipeline.)"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TONGBAN = str(Path(sys.executable).with_name("tongban"))
PRODUCTION = {"TONGBAN_ENV": "production", "TONGBAN_PLATFORM_URL": "https://ykb.cq.gov.cn",
              "TONGBAN_PLATFORM_SECRET": "a-real-platform-secret", "TONGBAN_PII_KEY": "a-real-pii-key"}
ID_NUMBER, PHONE = "500101199001011234", "13800138000"


def _env(tmp_path, **overrides):
    """A sandbox operator's environment whose home holds a database at head (as after `tongban sandbox up`)."""
    from tests.schema_at_head import home_at_head

    (tmp_path / "home").mkdir(mode=0o700, exist_ok=True)
    home_at_head(tmp_path / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGBAN_")}
    env.update({"TONGBAN_HOME": str(tmp_path / "home"), **overrides})
    return env


def _tongban(args, env, stdin=""):
    return subprocess.run([TONGBAN, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          input=stdin)


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if not line.startswith("tongban: sandbox mode:")]


@pytest.mark.parametrize("secret", [None, "sandbox-console-secret-not-for-production"])
def test_production_refuses_to_serve_without_a_console_secret_of_its_own(tmp_path, secret):
    env = _env(tmp_path, **PRODUCTION, **({"TONGBAN_CONSOLE_SECRET": secret} if secret else {}))
    result = _tongban(["console", "--port", "0"], env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(_errors(result)) == 1 and "TONGBAN_CONSOLE_SECRET" in result.stderr


def test_user_add_reads_the_password_from_stdin_and_stores_only_a_scrypt_hash(tmp_path):
    env = _env(tmp_path)
    added = _tongban(["console", "user", "add", "ada", "--role", "auditor", "--json"], env, "correct horse 1\n")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"name": "ada", "role": "auditor", "replaced": False}
    database = (tmp_path / "home" / "tongban.db").read_bytes()
    assert b"correct horse 1" not in database and b"scrypt$16384$8$1$" in database
    again = _tongban(["console", "user", "add", "ada", "--role", "operator"], env, "another one 2\n")
    assert again.returncode == 2 and "exists already" in _errors(again)[0]
    bad_role = _tongban(["console", "user", "add", "bob", "--role", "admin"], env, "long enough 3\n")
    assert bad_role.returncode == 2 and "role 'admin'" in _errors(bad_role)[0]
    short = _tongban(["console", "user", "add", "bob", "--role", "operator"], env, "short\n")
    assert short.returncode == 2 and "shorter than 8" in _errors(short)[0]
    listed = _tongban(["console", "user", "list", "--json"], env)
    assert [(u["name"], u["role"]) for u in json.loads(listed.stdout)] == [("ada", "auditor")]
    assert "scrypt" not in listed.stdout


@pytest.fixture
def client(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from tongban.console.app import create_app
    from tongban.console.users import add_user
    from tongban.settings import load
    from tongban.store import Store

    for name in list(os.environ):
        if name.startswith("TONGBAN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    settings = load()
    store = Store(settings.db_url)
    add_user(store, "ada", "auditor", "ada-audits-1")
    add_user(store, "otto", "operator", "otto-replays-1")
    with TestClient(create_app(settings, store), base_url="http://127.0.0.1") as test_client:
        test_client.store = store
        yield test_client
    store.dispose()


def _token(client, path="/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def _log_in(client, name, password, next_path="/search"):
    return client.post("/login", data={"username": name, "password": password, "next": next_path,
                                       "csrf_token": _token(client)}, follow_redirects=False)


def test_the_session_cookie_is_httponly_samesite_strict_and_signed(client):
    response = _log_in(client, "ada", "ada-audits-1")
    assert response.status_code == 303 and response.headers["location"] == "/search"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/search", follow_redirects=False).status_code == 200
    value = client.cookies.get("tongban_console")
    client.cookies.set("tongban_console", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/search", follow_redirects=False).headers["location"].startswith("/login")


def test_log_in_needs_its_csrf_token_and_follows_only_local_paths(client):
    _token(client)
    refused = client.post("/login", data={"username": "ada", "password": "ada-audits-1"}, follow_redirects=False)
    assert refused.status_code == 403
    for hostile in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        assert _log_in(client, "ada", "ada-audits-1", hostile).headers["location"] == "/search"
    assert _log_in(client, "ada", "ada-audits-1", "/parked?status=all").headers["location"] == "/parked?status=all"


def test_repeated_failures_lock_a_name_out_in_the_same_words(client):
    from tongban.console.auth import MAX_FAILURES

    for _ in range(MAX_FAILURES):
        assert "failed=1" in _log_in(client, "ada", "guess").headers["location"]
    assert "failed=1" in _log_in(client, "ada", "ada-audits-1").headers["location"]  # the right password, too late
    assert _log_in(client, "otto", "otto-replays-1").headers["location"] == "/search"  # other names are not held


def test_log_out_ends_the_session(client):
    _log_in(client, "otto", "otto-replays-1")
    token = _token(client, "/search")
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/parked", follow_redirects=False).headers["location"] == "/login?next=/parked"


def test_pages_mask_personal_data_in_rules_and_reasons(client):
    from tongban.operator import quarantine as q

    with client.store.write() as conn:
        q.add(conn, q.QuarantineEntry("cq-samr-rest", "K-1", "mapping", f"applicant_id_number {ID_NUMBER}: check digit",
                                      "application.applicant_id_number", "page 1 #1", {"zjhm": ID_NUMBER}))
        q.park(conn, message_id="m" * 32, idempotency_key="k", system="cq-samr-rest", case_number=None,
               reason=f"platform said: phone {PHONE} unknown", envelope_json="{}")
    _log_in(client, "otto", "otto-replays-1")
    quarantine_page, parked_page = client.get("/quarantine").text, client.get("/parked").text
    assert ID_NUMBER not in quarantine_page and "5001**********1234" in quarantine_page
    assert PHONE not in parked_page and "138****8000" in parked_page
    assert "Replay" in parked_page  # an operator is offered the replay


def test_security_headers_forbid_scripts_and_framing(client):
    headers = client.get("/login").headers
    assert "default-src 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


def test_receipt_status_reads_what_the_event_recorded():
    from tongban.console.timeline import receipt_status, seal_verdict

    assert receipt_status("receipt", {"receipt_signature": "valid", "signature": "x"}) == "receipt_signature: valid"
    assert receipt_status("receipt", {"signature_status": {"status": "bad_signature"}}) == \
        "signature_status: bad_signature"
    assert receipt_status("receipt", {"receipt_check": "valid", "verification": "valid"}) == "receipt_check: valid"
    assert receipt_status("receipt", {"signature": "abc"}).startswith("HMAC-SHA256")
    jws = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln"  # {"alg":"ES256","typ":"JWT"}
    assert receipt_status("receipt", {"signature": "abc", "jws": jws}).startswith("platform-signed receipt (JWS ES256)")
    assert receipt_status("receipt", {}) == "no signature recorded"
    assert receipt_status("delivered", {"signature": "abc"}) == ""
    assert seal_verdict("seal_verified", {"by": "sender", "result": "valid"}) == "sender: valid"
    assert seal_verdict("delivered", {"seal": {"result": "valid"}, "platform_verification": "valid"}) == \
        "sender seal: valid; platform: valid"


def test_sandbox_users_exist_only_in_the_sandbox(tmp_path, monkeypatch):
    from tongban import settings as settings_module
    from tongban.console.users import UserError, authenticate, ensure_sandbox_users
    from tongban.store import Store

    monkeypatch.setattr(settings_module, "_current", settings_module.Settings(env="sandbox", home=tmp_path))
    store = Store(f"sqlite:///{tmp_path}/t.db")
    users = ensure_sandbox_users(store)
    assert authenticate(store, "auditor", users["auditor"][1]).role == "auditor"
    assert authenticate(store, "auditor", users["operator"][1]) is None
    monkeypatch.setattr(settings_module, "_current", settings_module.Settings(
        env="production", home=tmp_path, platform_url="https://ykb.cq.gov.cn", platform_secret="s", pii_key="p"))
    with pytest.raises(UserError, match="only with TONGBAN_ENV=sandbox"):
        ensure_sandbox_users(store)
    store.dispose()


def test_p95_is_the_nearest_rank():
    from tongban.console.indicators import _percentile

    values = [float(v) for v in range(1, 21)]
    assert _percentile(values, 0.95) == 19.0 and _percentile([4.0], 0.95) == 4.0
    assert _percentile(values, 0.5) == 10.0

