"""Declared adapter settings (issue 12 item 1, REST/SOAP/SFTP): the models validate the shipped mappings, refuse
unknown or misspelled keys and wrong types, document every field, and the adapters refuse bad settings at start."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from adapters.base import SourceError, adapter_class
from adapters.rest import RestAdapter
from adapters.rest_settings import RestSettings
from adapters.settings import setting_errors
from adapters.sftp import SftpInbox
from adapters.sftp_settings import SftpSettings
from adapters.soap import SoapAdapter
from adapters.soap_settings import SoapSettings
from tongban.mapping import load_mapping

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def _section(path: Path) -> dict:
    return {k: v for k, v in load_mapping(path).source.items() if k != "adapter"}


@pytest.mark.parametrize("name, kind", [("cq-samr-rest.yaml", "rest"), ("cq-hrss-soap.yaml", "soap")])
def test_the_shipped_mappings_validate_against_their_adapters_model(name, kind):
    model = adapter_class(kind).settings_model
    model.model_validate(_section(MAPPINGS / name))


def test_the_settings_model_is_on_the_adapter_class():
    assert RestAdapter.settings_model is RestSettings and SoapAdapter.settings_model is SoapSettings
    assert SftpInbox.settings_model is SftpSettings


@pytest.mark.parametrize("section, path, words", [
    ({"base_url": "http://x", "pagnation": {"style": "page"}}, "pagnation", "unknown setting"),
    ({"base_url": "http://x", "pagination": {"style": "page", "sise": 3}}, "pagination.sise", "unknown setting"),
    ({"base_url": "http://x", "auth": {"type": "login"}}, "auth.url", "Field required"),
    ({"base_url": "http://x", "auth": {"type": "login", "url": "/l", "token_path": "a..b"}}, "auth.token_path", "JMESPath"),
    ({"base_url": "http://x", "auth": {"type": "magic"}}, "auth", "does not match any of the expected tags"),
    ({"base_url": "http://x", "timeout": "soon"}, "timeout", "valid number"),
    ({"path": "/x"}, "base_url", "Field required"),
    ({"base_url": "http://x", "incremental": {"param": "since", "overlap_seconds": 600}}, "incremental",
     "overlap_seconds needs format"),
    ({"base_url": "http://x", "envelope": {"retry": "code == '9999'"}}, "envelope.success", "Field required"),
])
def test_a_wrong_setting_is_named_by_its_path_in_the_file(section, path, words):
    with pytest.raises(ValidationError) as caught:
        RestSettings.model_validate(section)
    problems = dict(setting_errors(caught.value, section))
    assert path in problems and words in problems[path]


def test_the_adapters_refuse_bad_settings_at_start_naming_the_setting():
    with pytest.raises(SourceError, match=r"source settings: pagination.sise: unknown setting"):
        RestAdapter("s", {"adapter": "rest", "base_url": "http://x", "pagination": {"style": "page", "sise": 3}})
    with pytest.raises(SourceError, match=r"operation: Field required"):
        SoapAdapter("s", {"adapter": "soap", "wsdl": "x.wsdl"})
    with pytest.raises(SourceError, match=r"retry.retries: unknown setting"):
        SftpInbox("s", "sftp://u@127.0.0.1:22/x", {"password_env": "P", "retry": {"retries": 2}, "pattern": "*.csv"})


def _models(model: type[BaseModel]):
    yield model
    for field in model.model_fields.values():
        for arg in getattr(field.annotation, "__args__", ()) or (field.annotation,):
            for inner in getattr(arg, "__args__", ()) or (arg,):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    yield from _models(inner)


@pytest.mark.parametrize("model", [RestSettings, SoapSettings, SftpSettings])
def test_every_setting_is_described_and_every_model_has_an_example(model):
    seen = set()
    for sub in _models(model):
        if sub in seen:
            continue
        seen.add(sub)
        assert sub.model_config.get("extra") == "forbid", sub.__name__
        for name, field in sub.model_fields.items():
            assert field.description, f"{sub.__name__}.{name} has no description"
        for example in (sub.model_config.get("json_schema_extra") or {}).get("examples", []):
            sub.model_validate(example)
    assert len(seen) >= 2 or model is SftpSettings
    schema = model.model_json_schema()
    assert schema["additionalProperties"] is False


def test_the_auth_and_pagination_unions_are_discriminated():
    schema = RestSettings.model_json_schema()
    auth = schema["properties"]["auth"]
    assert auth["discriminator"]["propertyName"] == "type"
    assert set(auth["discriminator"]["mapping"]) == {"none", "bearer", "basic", "api_key", "login", "oauth2"}
    assert set(schema["properties"]["pagination"]["discriminator"]["mapping"]) == {"none", "page", "offset", "cursor", "link", "watermark"}
