"""`tongban adapter describe FILE` against the real mapping files and the SOAP sandbox."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.legacy_soap import DEFAULT_PASSWORD, HrssSoapService, start_soap_server
from tongban.cli import app

pytestmark = pytest.mark.timeout(60)
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
runner = CliRunner()


@pytest.fixture(scope="module")
def soap_url():
    url, stop = start_soap_server(service=HrssSoapService(seed=2, cases_count=5, password=DEFAULT_PASSWORD))
    yield url
    stop()


def test_soap_describe_lists_the_operation_and_the_record_fields(soap_url, monkeypatch):
    monkeypatch.setenv("CQ_HRSS_WSDL", soap_url + "?wsdl")
    monkeypatch.setenv("CQ_HRSS_USER", "hrss")
    monkeypatch.setenv("CQ_HRSS_PASSWORD", DEFAULT_PASSWORD)
    result = runner.invoke(app, ["adapter", "describe", str(MAPPINGS / "cq-hrss-soap.yaml")])
    assert result.exit_code == 0, result.output
    assert "operation QueryCases(ModifiedAfter?, PageNo, PageSize)" in result.output
    assert "CaseId" in result.output and "EvaluateTime" in result.output
    assert DEFAULT_PASSWORD not in result.output

    as_json = runner.invoke(app, ["adapter", "describe", "--json", str(MAPPINGS / "cq-hrss-soap.yaml")])
    described = json.loads(as_json.output)
    fields = {f["name"]: f for f in described["record_fields"]}
    assert fields["CaseId"]["required"] and not fields["AcceptTime"]["required"]


def test_soap_describe_of_an_unreachable_service_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("CQ_HRSS_WSDL", "http://127.0.0.1:9/hrss/CaseService?wsdl")  # discard port: nothing answers
    monkeypatch.setenv("CQ_HRSS_USER", "hrss")
    monkeypatch.setenv("CQ_HRSS_PASSWORD", "x")
    # the same mapping with quick retries (tables stay beside the mapping file: copied along)
    text = (MAPPINGS / "cq-hrss-soap.yaml").read_text(encoding="utf-8")
    shutil.copytree(MAPPINGS / "tables", tmp_path / "tables")
    quick = tmp_path / "cq-hrss-soap.yaml"
    quick.write_text(text.replace("retry: {attempts: 5, initial_wait: 0.5, max_wait: 30}",
                                  "retry: {attempts: 2, initial_wait: 0.01, max_wait: 0.02}"), encoding="utf-8")
    assert runner.invoke(app, ["mapping", "check", str(quick)]).exit_code == 0  # the file itself is fine
    result = runner.invoke(app, ["adapter", "describe", str(quick)])
    assert result.exit_code == 1
    assert "cq-hrss-soap" in result.output and "Traceback" not in result.output


def test_rest_describe_prints_settings_and_names_secrets_without_values(monkeypatch):
    monkeypatch.setenv("CQ_SAMR_TOKEN", "very-secret-token-value")
    result = runner.invoke(app, ["adapter", "describe", "--json", str(MAPPINGS / "cq-samr-rest.yaml")])
    assert result.exit_code == 0, result.output
    assert "very-secret-token-value" not in result.output
    described = json.loads(result.output)
    assert described["adapter"] == "rest"
    assert described["settings"]["auth"]["token_env"] == "CQ_SAMR_TOKEN (set)"
    assert described["settings"]["path"] == "/api/cases"


def test_files_describe_prints_the_drop_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("CQ_WSJKW_DROP", str(tmp_path))
    result = runner.invoke(app, ["adapter", "describe", str(MAPPINGS / "cq-wsjkw-files.yaml")])
    assert result.exit_code == 0, result.output
    assert "cq-wsjkw-files" in result.output and str(tmp_path) in result.output


def test_a_broken_mapping_file_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("system: x\nsource: {adapter: rest, token: literal}\n", encoding="utf-8")
    result = runner.invoke(app, ["adapter", "describe", str(bad)])
    assert result.exit_code == 1
    assert "bad.yaml" in result.output
