"""The REST adapter against a messy legacy server on 127.0.0.1 (sandbox/messy_rest.py), one quirk per test:
every record accounted for after one run, or a failed run naming the reason."""
from __future__ import annotations

import pytest

from adapters.base import SourceError, TransientSourceError
from adapters.rest import RestAdapter
from adapters.rest_pages import TotalMismatch
from sandbox.legacy_world import LegacyWorld
from sandbox.messy_rest import MessyServer, Quirks, create_app
from sandbox.runner import Server

pytestmark = pytest.mark.timeout(60)

PASSWORD = "s3cret-login"


def settings(url: str, **over) -> dict:
    base = {
        "adapter": "rest", "base_url": url, "path": "/api/cases", "records_path": "result.list",
        "auth": {"type": "login", "url": "/auth/login", "body": {"username": "cl_sync", "password_env": "CQ_CL_PASSWORD"},
                 "token_path": "result.token", "header": "X-Auth-Token", "expires_in_path": "result.expiresIn"},
        "pagination": {"style": "page", "page_param": "pageNo", "size_param": "pageSize", "size": 20,
                       "total_path": "result.totalCount"},
        "envelope": {"success": "code == '0000'", "retry": "code == '9999'", "reauth": "code == '4011'", "message": "msg"},
        "incremental": {"param": "gxsjStart", "format": "%Y%m%d%H%M%S", "overlap_seconds": 600},
        "retry": {"attempts": 8, "initial_wait": 0.01, "max_wait": 0.05},
    }
    base.update(over)
    return base


@pytest.fixture
def messy(monkeypatch):
    """Start a messy server with the given quirks; stopped after the test."""
    monkeypatch.setenv("CQ_CL_PASSWORD", PASSWORD)
    started = []

    def start(quirks: Quirks | None = None, cases: int = 90, **kw) -> MessyServer:
        world = LegacyWorld(seed=5, cases=cases, bad_share=0.0)
        world.advance(10)  # every case has appeared
        server = MessyServer(world, quirks=quirks or Quirks(), password=PASSWORD, **kw)
        http = Server(create_app(server), name="messy").start()
        started.append(http)
        server.url = http.url
        return server

    yield start
    for http in started:
        http.stop()


def fetch_all(server: MessyServer, watermark: str | None = None, **over) -> tuple[list, RestAdapter]:
    adapter = RestAdapter("cq-messy-rest", settings(server.url, **over))
    try:
        return list(adapter.fetch(watermark)), adapter
    finally:
        adapter.close()


def keys(records) -> list[str]:
    return [r.data["ywh"] for r in records]


def test_errors_inside_http_200_at_random_are_retried_and_nothing_is_missed(messy):
    server = messy(Quirks(busy_share=0.3, seed=3))
    records, _ = fetch_all(server)
    assert server.stats.busy > 0
    assert sorted(keys(records)) == sorted(r["ywh"] for r in server.visible()) and len(records) == server.total()


def test_a_token_expiring_mid_run_is_renewed_once_per_expiry(messy):
    server = messy(Quirks(token_calls=2))
    records, adapter = fetch_all(server)
    assert len(records) == server.total() == 90
    assert server.stats.reauth >= 2 and server.stats.logins == server.stats.reauth + 1 == adapter.logins


def test_the_token_is_refreshed_before_it_expires(messy):
    now = [1000.0]
    server = messy(Quirks(token_seconds=10), clock=lambda: now[0])
    served = server.cases

    def slow_cases(token, query):  # every page takes the legacy system 3 s
        now[0] += 3
        return served(token, query)

    server.cases = slow_cases
    adapter = RestAdapter("cq-messy-rest", settings(server.url, auth={**settings("")["auth"], "refresh_before_seconds": 4}),
                          clock=lambda: now[0])
    records = list(adapter.fetch(None))
    adapter.close()
    assert len(records) == 90
    assert server.stats.expired_by_time == 0 and server.stats.reauth == 0 and server.stats.logins >= 2


def test_a_401_that_revokes_every_token_means_one_new_login(messy):
    server = messy(Quirks(revoke_every=2))
    records, adapter = fetch_all(server)
    assert len(records) == server.total() and server.stats.revoked >= 2
    assert adapter.logins == server.stats.logins >= 3


def test_a_refused_login_names_the_variable_and_quotes_the_legacy_message(messy, monkeypatch):
    server = messy()
    monkeypatch.setenv("CQ_CL_PASSWORD", "wrong")
    with pytest.raises(SourceError) as caught:
        fetch_all(server)
    message = str(caught.value)
    assert "CQ_CL_PASSWORD" in message and "用户名或密码错误" in message and "wrong" not in message
    assert server.stats.data_calls == 0


def test_a_missing_password_variable_fails_before_any_request(messy, monkeypatch):
    server = messy()
    monkeypatch.delenv("CQ_CL_PASSWORD")
    with pytest.raises(SourceError, match="CQ_CL_PASSWORD"):
        RestAdapter("cq-messy-rest", settings(server.url))
    assert server.stats.logins == server.stats.bad_logins == 0


def test_a_capped_page_size_is_detected_and_the_walk_goes_on_at_the_servers_size(messy):
    server = messy(Quirks(page_cap=7))
    records, adapter = fetch_all(server)
    assert sorted(keys(records)) == sorted(r["ywh"] for r in server.visible())
    assert adapter.last_walk.effective_size == 7


def test_a_capped_page_size_without_a_total_ends_where_the_server_says(messy):
    # Without total_path, the server's short page is its own declaration of the end: documented, not guessed.
    server = messy(Quirks(page_cap=7))
    pagination = {**settings("")["pagination"]}
    del pagination["total_path"]
    records, _ = fetch_all(server, pagination=pagination)
    assert len(records) == 7


def test_fewer_records_than_the_total_fails_the_run(messy):
    server = messy(Quirks(total_extra=3))
    with pytest.raises(TotalMismatch, match=r"fetched 90 records but the server's result.totalCount says 93"):
        fetch_all(server)


def test_a_fatal_answer_inside_200_fails_naming_the_system_and_quoting_the_message(messy):
    server = messy(Quirks(fatal_on_call=3))
    with pytest.raises(SourceError) as caught:
        fetch_all(server)
    assert not isinstance(caught.value, TransientSourceError)
    assert "cq-messy-rest" in str(caught.value) and "数据库连接失败" in str(caught.value)
    assert "not the end of data" in str(caught.value) and server.stats.data_calls == 3


def test_a_system_busy_for_ever_fails_as_transient_after_the_policys_attempts(messy):
    server = messy(Quirks(busy_every=1))
    with pytest.raises(TransientSourceError, match="failed 3 times.*系统繁忙"):
        fetch_all(server, retry={"attempts": 3, "initial_wait": 0.01, "max_wait": 0.02})


def test_incremental_asks_from_the_watermark_minus_the_overlap(messy):
    server = messy()
    seen = []
    served = server.cases
    server.cases = lambda token, query: (seen.append(query.get("gxsjStart")), served(token, query))[1]
    newest = server.visible()[-1]["gxsj"]
    records, _ = fetch_all(server, newest)
    assert seen and set(seen) == {_minus(newest, 600)}
    assert records and all(r.data["gxsj"] > _minus(newest, 600) for r in records)


def _minus(stamp: str, seconds: int) -> str:
    from datetime import datetime, timedelta

    return (datetime.strptime(stamp, "%Y%m%d%H%M%S") - timedelta(seconds=seconds)).strftime("%Y%m%d%H%M%S")


def test_a_token_refused_right_after_a_fresh_login_fails_instead_of_looping(messy):
    server = messy(Quirks(token_calls=0))  # every token is refused at once
    with pytest.raises(SourceError, match="asks to log in again even after a fresh login: '令牌已过期'"):
        fetch_all(server)
    assert server.stats.logins == 2 and server.stats.data_calls == 2


KEYSET = {"style": "watermark", "size_param": "pageSize", "size": 10, "field": "gxsj"}


def _tie_across_boundaries(server: MessyServer, size: int) -> list[str]:
    """Every page boundary falls between two records sharing one 更新时间 (the second copies the first's)."""
    shown = [r["ywh"] for r in server.visible()]
    server.quirks.same_time_as = {shown[i + 1]: shown[i] for i in range(size - 1, len(shown) - 1, size - 1)}
    return [r["ywh"] for r in server.visible()]


def test_keyset_pages_lose_no_record_that_shares_its_second_across_a_page_boundary(messy):
    server = messy()
    expected = _tie_across_boundaries(server, 10)
    records, _ = fetch_all(server, pagination=KEYSET)
    assert keys(records) == expected  # each once, in order, none lost at a boundary
    # The same walk without stepping back (for a server that compares inclusively) loses one per boundary here.
    records, _ = fetch_all(server, pagination={**KEYSET, "step_back_seconds": 0})
    assert len(records) < len(expected)


def test_more_ties_than_a_keyset_page_holds_fail_clearly(messy):
    server = messy()
    shown = [r["ywh"] for r in server.visible()]
    server.quirks.same_time_as = {key: shown[0] for key in shown[1:12]}  # 12 records in one second
    with pytest.raises(SourceError, match="a whole page of 10 records shares one gxsj window: raise pagination.size"):
        fetch_all(server, pagination=KEYSET)
    records, _ = fetch_all(server, pagination={**KEYSET, "size": 20})
    assert sorted(keys(records)) == sorted(shown)


def test_keyset_pages_need_incremental_with_a_format():
    with pytest.raises(SourceError, match="pagination style watermark needs incremental with param and format"):
        RestAdapter("s", {"base_url": "http://x", "pagination": KEYSET})
