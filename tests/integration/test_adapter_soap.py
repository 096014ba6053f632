"""SoapAdapter against the 市人力社保局 sandbox service (real WSDL, real HTTP on 127.0.0.1)."""
from __future__ import annotations

import json
import socket

import pytest
import requests
from zeep.transports import Transport

from adapters.base import SourceError, TransientSourceError
from adapters.soap import SoapAdapter, describe
from sandbox.legacy_soap import DEFAULT_PASSWORD, SYSTEM, HrssSoapService, start_soap_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sandbox():
    service = HrssSoapService(seed=11, password=DEFAULT_PASSWORD)
    url, stop = start_soap_server(service=service)
    yield service, url
    stop()


@pytest.fixture
def service(sandbox, monkeypatch):
    service, _url = sandbox
    service.calls.clear()
    service._faults.clear()
    monkeypatch.setenv("HRSS_USER", "hrss")
    monkeypatch.setenv("HRSS_PASSWORD", DEFAULT_PASSWORD)
    return service


@pytest.fixture
def settings(sandbox):
    _service, url = sandbox
    return {
        "wsdl": url + "?wsdl",
        "operation": "QueryCases",
        "watermark_param": "ModifiedAfter",
        "watermark_field": "ModifyTime",
        "paging": {"page_param": "PageNo", "size_param": "PageSize", "size": 300},
        "records_path": "Records.Record",
        "auth": {"type": "basic", "username_env": "HRSS_USER", "password_env": "HRSS_PASSWORD"},
        "timeout": 5,
        "retry": {"attempts": 3, "initial_wait": 0.01, "max_wait": 0.05},
    }


def fetch_all(settings, watermark=None, **seams):
    adapter = SoapAdapter(SYSTEM, settings, **seams)
    try:
        return list(adapter.fetch(watermark)), adapter
    finally:
        adapter.close()


def test_full_fetch_returns_every_case_as_plain_json_ready_dicts(service, settings):
    records, adapter = fetch_all(settings)
    assert [r.data["CaseId"] for r in records] == [c["CaseId"] for c in service.cases]
    first = records[0]
    assert first.error is None
    assert first.data["ApplyTime"] == service.cases[0]["ApplyTime"].isoformat()  # dates as ISO strings
    json.dumps([r.data for r in records], ensure_ascii=False)  # nothing zeep-specific left in the data
    assert adapter.high_watermark == max(c["ModifyTime"] for c in service.cases).isoformat()
    # the deliberately bad records come through untouched: judging them is the validation layer's job
    bad = {r.data["CaseId"] for r in records} & set(service.bad_records)
    assert bad == set(service.bad_records)


def test_paging_walks_pages_until_a_short_one(service, settings):
    records, _ = fetch_all(settings)
    assert [(c["PageNo"], c["PageSize"]) for c in service.calls] == [("1", "300"), ("2", "300"), ("3", "300"),
                                                                      ("4", "300")]
    assert records[300].position == "QueryCases page 2 record 1"
    assert "ModifiedAfter" not in service.calls[0]  # no watermark on a first full fetch


def test_watermark_is_sent_and_only_newer_cases_come_back(service, settings):
    watermark = service.cases[700]["ModifyTime"].isoformat()
    records, adapter = fetch_all(settings, watermark)
    assert all(call["ModifiedAfter"] == watermark for call in service.calls)
    expected = [c["CaseId"] for c in service.cases if c["ModifyTime"].isoformat() > watermark]
    assert [r.data["CaseId"] for r in records] == expected
    assert all(r.meta["watermark"] > watermark for r in records)


def test_constant_params_and_no_paging(service, settings):
    settings = {**settings, "paging": None, "params": {"PageNo": 2, "PageSize": 50}}
    records, _ = fetch_all(settings)
    assert [r.data["CaseId"] for r in records] == [c["CaseId"] for c in service.cases[50:100]]
    assert records[0].position == "QueryCases record 1"


def test_wrong_password_is_a_clear_permanent_error(service, settings, monkeypatch):
    monkeypatch.setenv("HRSS_PASSWORD", "wrong")
    with pytest.raises(SourceError) as error:
        fetch_all(settings)
    assert not isinstance(error.value, TransientSourceError)
    assert "authentication failed (HTTP 401)" in str(error.value)
    assert str(error.value).startswith(SYSTEM)
    assert len(service.calls) == 0  # rejected at the door, and not retried


def test_missing_credential_variable_is_named(service, settings, monkeypatch):
    monkeypatch.delenv("HRSS_PASSWORD")
    with pytest.raises(SourceError, match="HRSS_PASSWORD"):
        fetch_all(settings)


def test_ws_security_username_token(service, settings, monkeypatch):
    sent: list[bytes] = []
    transport = Transport()
    transport.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.body or b""))
    settings = {**settings, "auth": {"type": "wsse", "username_env": "HRSS_USER", "password_env": "HRSS_PASSWORD"}}
    records, _ = fetch_all(settings, transport=transport)  # the transport seam is used for every call
    assert len(records) == len(service.cases)
    assert any(b"UsernameToken" in body for body in sent)
    monkeypatch.setenv("HRSS_PASSWORD", "wrong")
    with pytest.raises(SourceError, match="authentication failed"):
        fetch_all(settings)


def test_soap_fault_names_system_operation_and_fault_code(service, settings):
    service.fail_next(1, "fault")
    with pytest.raises(SourceError) as error:
        fetch_all(settings)
    message = str(error.value)
    assert not isinstance(error.value, TransientSourceError)
    assert SYSTEM in message and "QueryCases" in message and "soap:Server" in message
    assert "HRSS-DB-503" in message
    assert 'detail {"ErrorCode": "HRSS-DB-503", "Table": "T_SBJ_BJ"}' in message  # the fault's <detail>, as a dict


def test_client_fault_for_bad_parameters_is_permanent(service, settings):
    settings = {**settings, "paging": {**settings["paging"], "size": 5000}}
    with pytest.raises(SourceError, match="soap:Client") as error:
        fetch_all(settings)
    assert not isinstance(error.value, TransientSourceError)


@pytest.mark.parametrize("kind", ["http500", "http503", "http429"])
def test_transient_http_errors_are_retried_then_succeed(service, settings, kind):
    service.fail_next(2, kind)
    records, _ = fetch_all(settings)
    assert len(records) == len(service.cases)
    assert len(service.calls) == 4  # the failed attempts never reached the query


def test_persistent_5xx_gives_up_with_a_transient_error(service, settings):
    service.fail_next(5, "http503")
    with pytest.raises(TransientSourceError, match="HTTP 503.*3 attempts"):
        fetch_all(settings)


def test_a_slow_answer_times_out_and_the_retry_succeeds(service, settings):
    service.fail_next(1, "slow", delay=1.5)
    records, _ = fetch_all({**settings, "timeout": 0.5})
    assert len(records) == len(service.cases)


def test_timeouts_on_every_attempt_become_a_transient_error(service, settings):
    service.fail_next(2, "slow", delay=1.5)
    with pytest.raises(TransientSourceError, match="Timeout"):
        fetch_all({**settings, "timeout": 0.5, "retry": {"attempts": 2, "initial_wait": 0.01}})


def test_unreachable_service_is_transient():
    with socket.socket() as probe:  # a port that was free a moment ago and has nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = {"wsdl": f"http://127.0.0.1:{port}/hrss/CaseService?wsdl", "operation": "QueryCases",
                "retry": {"attempts": 2, "initial_wait": 0.01}}
    with pytest.raises(TransientSourceError, match="ConnectionError"):
        fetch_all(settings)


def test_unknown_operation_and_bad_records_path_are_clear(service, settings):
    with pytest.raises(SourceError, match="no operation 'QueryCase'.*QueryCases"):
        fetch_all({**settings, "operation": "QueryCase"})
    with pytest.raises(SourceError, match="records_path 'Rows.Record'.*available: Total, Records"):
        fetch_all({**settings, "records_path": "Rows.Record"})


def test_describe_lists_operations_and_record_fields(service, settings):
    description = describe(settings)
    port = description["services"]["HrssCaseService"]["HrssCasePort"]
    assert [f["name"] for f in port["operations"]["QueryCases"]["input"]] == ["ModifiedAfter", "PageNo", "PageSize"]
    fields = {f["name"]: f for f in description["record_fields"]}
    assert list(fields)[:3] == ["CaseId", "ItemNo", "ApplicantName"]
    assert fields["ApplyTime"]["type"] == "dateTime"
    assert fields["AcceptTime"]["required"] is False and fields["CertNo"]["required"] is True


def test_sandbox_serves_wsdl_with_its_own_address(sandbox):
    _service, url = sandbox
    wsdl = requests.get(url + "?wsdl", timeout=5).text
    assert f'location="{url}"' in wsdl


def test_wsdl_cache_can_live_in_sqlite_under_tongban_home(service, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path))
    records, _ = fetch_all({**settings, "wsdl_cache": "sqlite"})
    assert len(records) == len(service.cases)
    assert (tmp_path / "zeep-wsdl-cache.db").stat().st_size > 0
