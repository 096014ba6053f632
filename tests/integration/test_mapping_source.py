"""`source:` settings are checked against the adapter's declared settings model, through `tongban mapping check`:
a misspelled key (with the closest name), a wrong type and a missing required setting are errors naming the file's line;
a third-party adapter without a model is accepted with a warning; `tongban adapter schema` prints the model;
docs/adapters.md is what the models say.

The REST and files adapters' own models are written by other branches: these tests give the real adapter classes a
small provisional model (monkeypatched class attribute), which is exactly what the checker sees in production.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import pytest

from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from adapters.files import FileDropAdapter
from adapters.rest import RestAdapter
from tongban.cli import app
from tests.support import line_of, mapping_variant

REPO = Path(__file__).resolve().parents[2]
SAMR = REPO / "mappings" / "cq-samr-rest.yaml"
WSJKW = REPO / "mappings" / "cq-wsjkw-files.yaml"
runner = CliRunner()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BearerAuth(_Strict):
    type: Literal["bearer"] = Field(description="a fixed token")
    token_env: str = Field(description="variable holding the token")


class LoginAuth(_Strict):
    type: Literal["login"] = Field(description="log in first, then send the token")
    url: str = Field(description="the login endpoint, relative to base_url")
    body: dict[str, str] = Field(default_factory=dict, description="the login body (…_env values from the environment)")
    token_path: str = Field(description="JMESPath of the token in the answer")
    header: str = Field("Authorization", description="the header that carries the token")


class Pagination(_Strict):
    style: Literal["page", "offset"] = Field("page", description="page numbers or offsets")
    page_param: str = Field("page", description="query parameter of the page number")
    size_param: str = Field("size", description="query parameter of the page size")
    size: int = Field(100, ge=1, description="records per page")


class ProvisionalRestSettings(_Strict):
    base_url: str = Field(description="the legacy system's root URL")
    path: str = Field(description="the records endpoint")
    auth: Optional[Annotated[Union[BearerAuth, LoginAuth], Field(discriminator="type")]] = Field(
        None, description="how to authenticate")
    pagination: Pagination = Field(default_factory=Pagination, description="how pages are asked for")
    incremental: Optional[dict[str, str]] = Field(None, description="the watermark parameter")
    records_path: str = Field(description="JMESPath of the record list in a page")
    timeout: float = Field(10, description="seconds per request")
    retry: Optional[dict[str, float]] = Field(None, description="attempts and waits")


class ProvisionalFilesSettings(_Strict):
    directory: str = Field(description="the drop folder")
    pattern: str = Field("*", description="file name pattern")
    encoding: str = Field("auto", description="CSV encoding")
    xml_record_tag: Optional[str] = Field(None, description="the XML record element")
    stable_seconds: float = Field(0, ge=0, description="leave files younger than this alone")


@pytest.fixture
def models(monkeypatch):
    monkeypatch.setattr(RestAdapter, "settings_model", ProvisionalRestSettings)
    monkeypatch.setattr(FileDropAdapter, "settings_model", ProvisionalFilesSettings)


def test_the_sandbox_mappings_pass_the_provisional_models(models):
    for path in (SAMR, WSJKW):
        result = runner.invoke(app, ["mapping", "check", str(path)])
        assert result.exit_code == 0, result.output
        assert "settings checked against its model" in result.output


def test_a_misspelled_source_key_is_reported_with_its_line_and_the_closest_name(models, tmp_path):
    path = mapping_variant(tmp_path, SAMR, "records_path: data.items", "record_path: data.items")
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    line = line_of(path, "record_path:")
    assert f"{path}:{line}: source.record_path: unknown setting; did you mean 'records_path'?" in result.output
    # the then-missing records_path is reported too, on the line of `source:`
    assert f"{path}:{line_of(path, 'source:')}: source.records_path: missing required setting" in result.output


def test_a_misspelled_nested_key_names_the_nested_setting(models, tmp_path):
    path = mapping_variant(tmp_path, SAMR, "page_param: page", "page_parm: page")
    result = runner.invoke(app, ["mapping", "check", "--json", str(path)])
    assert result.exit_code == 1
    out = json.loads(result.output)
    [error] = out["errors"]
    assert error["line"] == line_of(path, "page_parm")
    assert "source.pagination.page_parm: unknown setting; did you mean 'page_param'?" in error["message"]


def test_a_login_without_its_url_is_flagged_before_ingest(models, tmp_path):
    path = mapping_variant(tmp_path, SAMR, "auth: {type: bearer, token_env: CQ_SAMR_TOKEN}",
                    "auth: {type: login, token_path: result.token}")
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    assert (f"{path}:{line_of(path, 'type: login')}: source.auth.url: missing required setting "
            f"(the login endpoint, relative to base_url)") in result.output
    assert "Traceback" not in result.output


def test_a_wrong_type_and_a_wrongmapping_variant(models, tmp_path):
    path = mapping_variant(tmp_path, SAMR, "timeout: 10", "timeout: ten seconds")
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line_of(path, 'timeout:')}: source.timeout: Input should be a valid number" in result.output
    path = mapping_variant(tmp_path / "b", SAMR, "type: bearer", "type: bearr")
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line_of(path, 'type: bearr')}: source.auth:" in result.output and "'login'" in result.output


def test_a_value_from_the_environment_is_never_quoted_in_an_error(models, tmp_path, monkeypatch):
    monkeypatch.setenv("CQ_SAMR_TIMEOUT_SECRET", "hunter2-not-a-number")
    path = mapping_variant(tmp_path, SAMR, "timeout: 10", "timeout: ${CQ_SAMR_TIMEOUT_SECRET}")
    result = runner.invoke(app, ["mapping", "check", "--json", str(path)])
    assert result.exit_code == 1 and "source.timeout" in result.output
    assert "hunter2" not in result.output


def test_an_unknown_adapter_is_named_with_the_registered_ones(tmp_path):
    path = mapping_variant(tmp_path, SAMR, "adapter: rest", "adapter: rset")
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line_of(path, 'adapter: rset')}: source.adapter: no adapter registered as 'rset'" in result.output
    assert "rest" in result.output.split("known:")[1]


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """An adapter registered the way a third party does: a distribution with a `tongban.adapters` entry point."""
    site = tmp_path / "site"
    (site / "acme_adapters-1.0.dist-info").mkdir(parents=True)
    (site / "acme_adapters-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-adapters\n"
                                                                  "Version: 1.0\n", encoding="utf-8")
    (site / "acme_adapters-1.0.dist-info" / "entry_points.txt").write_text(
        "[tongban.adapters]\nacme = acme_adapters:AcmeAdapter\nacme_checked = acme_adapters:AcmeChecked\n",
        encoding="utf-8")
    (site / "acme_adapters.py").write_text(textwrap.dedent('''
        """A third party's adapters."""
        from pydantic import BaseModel, ConfigDict, Field
        from adapters.base import Adapter

        class AcmeAdapter(Adapter):
            """Reads the ACME case store (declares no settings model)."""
            kind = "acme"

        class AcmeSettings(BaseModel):
            model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"host": "acme.local", "port": 9}]})
            host: str = Field(description="the ACME server")
            port: int = Field(7001, ge=1, le=65535, description="its port")

        class AcmeChecked(Adapter):
            """Reads the ACME case store, with declared settings."""
            kind = "acme_checked"
            settings_model = AcmeSettings
        '''), encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("acme_adapters", None)


def test_a_third_party_adapter_without_a_model_is_accepted_with_a_warning(third_party, tmp_path):
    path = mapping_variant(tmp_path, SAMR, "adapter: rest", "adapter: acme")
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: adapter 'acme' (acme_adapters.AcmeAdapter) declares no settings model" in result.output


def test_a_third_party_model_is_checked_like_a_built_in_one(third_party, tmp_path):
    path = tmp_path / "acme.yaml"
    path.write_text(textwrap.dedent("""\
        system: acme-1
        source:
          adapter: acme_checked
          hots: acme.local
          port: 70000
        record: {key: id}
        case:
          item_code: {path: code}
          region: {path: region}
          application: {applicant_name: {path: name}}
        """), encoding="utf-8")
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:4: source.hots: unknown setting; did you mean 'host'?" in result.output
    assert f"{path}:5: source.port: Input should be less than or equal to 65535" in result.output
    assert f"{path}:2: source.host: missing required setting (the ACME server)" in result.output


def test_adapter_schema_prints_the_settings_and_the_json_schema(models, third_party):
    text = runner.invoke(app, ["adapter", "schema", "rest"])
    assert text.exit_code == 0, text.output
    assert "auth.url [type: login]: string; required — the login endpoint, relative to base_url" in text.output
    assert "pagination.size: integer; default 100 — records per page" in text.output
    as_json = runner.invoke(app, ["adapter", "schema", "rest", "--json"])
    schema = json.loads(as_json.output)
    assert schema["additionalProperties"] is False and "base_url" in schema["required"]
    assert runner.invoke(app, ["adapter", "schema", "acme_checked", "--json"]).exit_code == 0
    missing = runner.invoke(app, ["adapter", "schema", "acme"])
    assert missing.exit_code == 1 and "declares no settings model" in missing.output
    unknown = runner.invoke(app, ["adapter", "schema", "nosuch"])
    assert unknown.exit_code == 1 and "no adapter registered as 'nosuch'" in unknown.output


def test_the_adapter_reference_documents_every_model_with_an_example(models, third_party):
    from tongban.mapping.adapter_docs import render

    text = render()
    assert "| `auth.url` (type: login) | string | required | the login endpoint, relative to base_url |" in text
    assert "Example (from `mappings/cq-samr-rest.yaml`):" in text and "token_env: CQ_SAMR_TOKEN" in text
    assert "## acme_checked" in text and "port: 9" in text  # the model's own example
    assert "## acme\n" in text and "declares no settings model yet" in text


def test_docs_adapters_md_is_up_to_date():
    """docs/adapters.md is generated from the registered adapters' models: regenerate it with scripts/gen-adapter-docs."""
    from tongban.mapping.adapter_docs import DOC, render

    assert DOC.read_text(encoding="utf-8") == render(), "docs/adapters.md is out of date: run scripts/gen-adapter-docs"
