"""Hostile mapping files, samples and records (issue 20, mapping side): the environment never reaches a case field,
no command prints a secret, nesting is bounded everywhere (a clear error, never RecursionError), and the engine,
fed random records, either maps them or names the record, the field and the rule."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from tongban.cases.models import CaseSnapshot
from tongban.cli import app
from tongban.mapping import MappingError, MappingFileError, load_mapping
from tongban.mapping.engine import MAX_RECORD_DEPTH
from tests.support import line_of, mapping_variant

REPO = Path(__file__).resolve().parents[2]
SAMR = REPO / "mappings" / "cq-samr-rest.yaml"
WSJKW = REPO / "mappings" / "cq-wsjkw-files.yaml"
SECRET = "s3cr3t-value-that-must-not-travel"
runner = CliRunner()


def _variant(tmp_path: Path, old: str, new: str, source: Path = SAMR) -> Path:
    return mapping_variant(tmp_path, source, old, new)


@pytest.mark.parametrize("old, new", [
    ("licence_number: {path: zzbh}", "licence_number: ${CQ_SECRET}"),                              # a constant
    ("licence_number: {path: zzbh}", "licence_number: {path: zzbh, default: '${CQ_SECRET}'}"),     # a default
    ("accepting_unit: 重庆市市场监督管理局", "accepting_unit: '局 ${CQ_SECRET:-x}'"),                # with a default
    ("map: {待办: \"1\", 已办: \"2\"}", "map: {待办: \"${CQ_SECRET}\", 已办: \"2\"}"),              # a map value
    ("items: tables/samr_items.csv", "items: ${CQ_SECRET}/samr_items.csv"),                        # a table path
    ("key: ywh ", "key: ${CQ_SECRET} "),                                                            # the record key
])
def test_an_env_reference_outside_source_is_an_error_and_never_expanded(tmp_path, monkeypatch, old, new):
    monkeypatch.setenv("CQ_SECRET", SECRET)
    path = _variant(tmp_path, old, new)
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line_of(path, '${CQ_SECRET')}:" in result.output
    assert "environment variables expand only inside `source:`" in result.output
    assert SECRET not in result.output


def test_env_references_in_source_still_expand(tmp_path, monkeypatch):
    monkeypatch.setenv("CQ_SAMR_URL", "http://127.0.0.1:1234")
    assert load_mapping(SAMR).source["base_url"] == "http://127.0.0.1:1234"
    monkeypatch.delenv("CQ_SAMR_URL")
    path = _variant(tmp_path, "${CQ_SAMR_URL:-http://127.0.0.1:8701}", "${CQ_SAMR_URL}")
    with pytest.raises(MappingFileError) as caught:
        load_mapping(path)
    assert caught.value.line == line_of(path, "base_url:") and "CQ_SAMR_URL is not set" in caught.value.rule


def samr_record(**changes):
    record = {"ywh": "SB1", "sxbm": "SX-0001", "sqrxm": "张三", "zjlx": "SFZ", "zjhm": "11010519491231002X",
              "xzqh": "500103", "sqsj": "2024-03-01 09:30:00", "bjlx": "1", "gxsj": "2024-03-01 09:30:00"}
    record.update(changes)
    return record


def test_a_record_holding_an_env_reference_is_mapped_literally(monkeypatch):
    """Records are data, never expanded: `${…}` text in a legacy field travels as it is."""
    monkeypatch.setenv("CQ_SECRET", SECRET)
    snapshot = load_mapping(SAMR).map_record(samr_record(bjsj="2024-03-05 10:00:00", bjjg="准予许可",
                                                         zzbh="${CQ_SECRET}", slsj="2024-03-02 10:00:00", slr="李四"))
    assert snapshot["conclusion"]["licence_number"] == "${CQ_SECRET}"
    assert SECRET not in json.dumps(snapshot, ensure_ascii=False)


def test_adapter_describe_masks_every_credential(tmp_path, monkeypatch):
    monkeypatch.setenv("CQ_APP_SECRET", "app-secret-123")
    monkeypatch.setenv("CQ_PW", "pw-456")
    monkeypatch.setenv("CQ_HOST", "127.0.0.1")
    path = _variant(tmp_path, "auth: {type: bearer, token_env: CQ_SAMR_TOKEN}",
                    "auth: {type: login, url: /auth/login, body: {username: cl_sync, password_env: CQ_PW},\n"
                    "         token_path: result.token, header: X-Auth-Token}\n"
                    "  query: {appid: '${CQ_APP_SECRET}', host: '${CQ_HOST}'}")
    for args in (["adapter", "describe", str(path)], ["adapter", "describe", "--json", str(path)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "app-secret-123" not in result.output and "pw-456" not in result.output
        assert "cl_sync" not in result.output  # login body values are masked, whatever their key
    described = json.loads(runner.invoke(app, ["adapter", "describe", "--json", str(path)]).output)["settings"]
    assert described["query"] == {"appid": "***", "host": "127.0.0.1"}
    assert described["auth"]["body"] == {"username": "***", "password_env": "CQ_PW (set)"}
    assert described["auth"]["url"] == "/auth/login" and described["auth"]["header"] == "X-Auth-Token"


# ----------------------------------------------------------------------------------------------- nesting


def test_deeply_nested_yaml_in_a_mapping_file_is_refused_by_its_depth_not_by_a_crash(tmp_path):
    for name, body in (("flow.yaml", "system: x\ncase: " + "[" * 50_000 + "]" * 50_000 + "\n"),
                       ("block.yaml", "system: x\ncase:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)))):
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        result = runner.invoke(app, ["mapping", "check", str(path)])
        assert result.exit_code == 1, result.output
        assert "nested deeper than 32 levels" in result.output and "RecursionError" not in result.output
        assert f"{path}:" in result.output


@pytest.mark.parametrize("name, body", [
    ("deep.json", "[" + "{\"a\": [" * 30_000 + "]}" * 30_000 + "]"),
    ("deep2.json", "[" + "[" * 150 + "]" * 150 + "]"),
    ("deep.jsonl", '{"ywh": "SB1"}\n' + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("deep.yaml", "- " + "[" * 5000 + "]" * 5000 + "\n"),
])
def test_deeply_nested_samples_are_refused(tmp_path, name, body):
    sample = tmp_path / name
    sample.write_text(body, encoding="utf-8")
    result = runner.invoke(app, ["mapping", "check", str(SAMR), "--sample", str(sample)])
    assert result.exit_code == 1, result.output
    assert "cannot read sample" in result.output and "nested deeper than 100 levels" in result.output
    assert "Traceback" not in result.output


def _deep(levels: int):
    value: object = "bottom"
    for _ in range(levels):
        value = {"x": [value]}
    return value


@pytest.mark.parametrize("levels", [MAX_RECORD_DEPTH, 5_000])
def test_a_deeply_nested_record_is_a_mapping_error_naming_the_record(levels):
    with pytest.raises(MappingError) as caught:
        load_mapping(SAMR).map_record(samr_record(hj=_deep(levels)))
    assert caught.value.record_key == "SB1" and caught.value.field == "record"
    assert f"nested deeper than {MAX_RECORD_DEPTH} levels" in caught.value.rule


def test_a_deep_sample_record_is_reported_not_crashed(tmp_path):
    sample = tmp_path / "records.json"
    sample.write_text(json.dumps([samr_record(), samr_record(ywh="SB2", cl=_deep(40))]), encoding="utf-8")
    result = runner.invoke(app, ["mapping", "check", str(SAMR), "--sample", str(sample)])
    assert result.exit_code == 1
    assert "record SB2: field record: nested deeper than 64 levels" in result.output
    assert "2 records: 1 mapped, 1 with errors" in result.output


# ----------------------------------------------------------------------------------------------- fuzz

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
                     st.sampled_from(["", " ", "SX-0001", "500222", "500103001", "5001", "2024-03-01 09:30:00",
                                      "2024/03/05 14:22", "SFZ", "TYSHXYDM", "11010519491231002X", "待办", "准予许可",
                                      "居民身份证", "5", "0", "${CQ_SECRET}", "\x00", "\u202e"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                       max_leaves=12)
_SAMR_KEYS = ["ywh", "sxbm", "sqrxm", "zjlx", "zjhm", "lxdh", "xzqh", "sqsj", "bjlx", "sbqd", "cl", "slsj", "slr",
              "cnbjsj", "hj", "bjsj", "bjjg", "bjsm", "zzmc", "zzbh", "yxqq", "yxqz", "pj", "gxsj"]
_WSJKW_KEYS = ["办件编号", "BJBH", "事项编码", "SXBM", "行政区划", "XZQH", "申请人", "SQR", "证件类型", "ZJLX", "证件号码",
               "ZJHM", "申请时间", "SQSJ"]
_MAPPINGS = {"samr": load_mapping(SAMR), "wsjkw": None}


def _records(keys):
    base = st.fixed_dictionaries({}, optional={key: _values for key in keys})
    plausible = st.builds(lambda changes: {**samr_record(), **changes},
                          st.dictionaries(st.sampled_from(keys), _values, max_size=4))
    return st.one_of(base, plausible, _values)


def _assert_maps_or_names_the_problem(mapping, record):
    try:
        snapshot = mapping.map_record(record, [])
    except MappingError as exc:
        assert exc.field and exc.rule  # which field, which rule
        assert str(exc).startswith(f"record {exc.record_key or '?'}: field {exc.field}: ")
        return
    # a mapped snapshot goes on to validation: it passes or fails there with pydantic's error, nothing else
    assert snapshot["source_key"]
    json.dumps(snapshot, ensure_ascii=False, default=str)
    try:
        CaseSnapshot.model_validate(snapshot)
    except ValidationError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=_records(_SAMR_KEYS))
def test_fuzz_the_engine_on_the_rest_mapping(record):
    _assert_maps_or_names_the_problem(_MAPPINGS["samr"], record)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=_records(_WSJKW_KEYS))
def test_fuzz_the_engine_on_the_files_mapping(record):
    if _MAPPINGS["wsjkw"] is None:
        _MAPPINGS["wsjkw"] = load_mapping(WSJKW)
    _assert_maps_or_names_the_problem(_MAPPINGS["wsjkw"], record)


_SAMR_LINES = SAMR.read_text(encoding="utf-8").splitlines()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(drop=st.sets(st.integers(0, len(_SAMR_LINES) - 1), max_size=4),
       replace=st.dictionaries(st.integers(0, len(_SAMR_LINES) - 1),
                               st.sampled_from(["  x: 1", "case: 5", "  region: [1, 2]", "tables: {items: 5}",
                                                "  lookup: {table: items}", "record: {key: {a: 1}}", "- 1", "{",
                                                "  when: {a: b}", "  path: '[['", "1: 2", "source: []", "  ? [a]: b",
                                                "tables: {items: {path: tables/samr_items.csv, encoding: 5}}"]),
                               max_size=2))
def test_fuzz_the_loader_a_damaged_mapping_file_is_a_mapping_file_error(tmp_path_factory, drop, replace):
    """Lines of a real mapping file deleted or replaced: the loader answers with the file and the rule, or loads it."""
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(SAMR.parent / "tables", folder / "tables")
    lines = [replace.get(i, line) for i, line in enumerate(_SAMR_LINES) if i not in drop]
    path = folder / "m.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        load_mapping(path)
    except MappingFileError as exc:
        assert str(exc).startswith(str(path)) and exc.rule


def test_mapping_check_json_reports_a_broken_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("system: x\nsource: {adapter: rest}\nrecord: {key: id}\ncase: {region: {path: r}}\n", encoding="utf-8")
    result = runner.invoke(app, ["mapping", "check", "--json", str(path)])
    assert result.exit_code == 1
    out = json.loads(result.output)
    assert out["ok"] is False and out["errors"][0]["line"] == 4 and "application" in out["errors"][0]["message"]


def test_an_env_setting_must_name_a_variable_and_its_value_is_never_quoted(tmp_path):
    path = _variant(tmp_path, "token_env: CQ_SAMR_TOKEN", "token_env: 'eyJhbGciOi.pasted-token'")
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line_of(path, 'token_env')}: 'token_env' must name an environment variable" in result.output
    assert "pasted-token" not in result.output
