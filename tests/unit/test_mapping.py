"""Mapping files: errors name the file's line, the record, the field and the rule; good records map to valid cases."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongban.cases.models import CaseSnapshot
from tongban.cli import app
from tongban.mapping import MappingError, MappingFileError, load_mapping

REPO = Path(__file__).resolve().parents[2]
SAMR = REPO / "mappings" / "cq-samr-rest.yaml"


def _record(**changes):
    record = {
        "ywh": "SB1", "sxbm": "SX-0001", "sqrxm": "张三", "zjlx": "SFZ", "zjhm": "11010519491231002x",
        "lxdh": "13800138000", "xzqh": "500222", "sqsj": "2024-03-01 09:30:00", "bjlx": "2", "sbqd": "网上",
        "cl": [{"clmc": "申请书", "fs": 1}], "slsj": "2024-03-01 10:00:00", "slr": "李四", "cnbjsj": None,
        "hj": [{"hjmc": "审查", "clr": "王五", "yj": "同意", "kssj": "2024-03-02 09:00:00", "jssj": None,
                "zt": "待办", "dz": None}],
        "bjsj": None, "bjjg": None, "bjsm": None, "zzmc": None, "zzbh": None, "yxqq": None, "yxqz": None,
        "pj": None, "gxsj": "2024-03-02 09:00:00"}
    record.update(changes)
    return record


def _copy_mapping(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tables").mkdir()
    shutil.copy(REPO / "mappings" / "tables" / "samr_items.csv", tmp_path / "tables")
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_record_maps_to_a_valid_case_with_national_codes():
    snapshot = load_mapping(SAMR).map_record(_record())
    CaseSnapshot.model_validate(snapshot)
    assert snapshot["region"] == "500110"  # retired 500222 (綦江县) → 綦江区
    assert snapshot["application"]["applicant_id_number"] == "11010519491231002X"
    assert snapshot["application"]["applied_at"] == "20240301T093000"
    assert snapshot["application"]["materials"] == [{"name": "申请书", "count": 1}]
    assert len(snapshot["item_code"]) == 31 and snapshot["local_item_code"] == "SX-0001"
    assert snapshot["steps"][0]["status"] == "1" and snapshot["conclusion"] is None


def test_reversed_satisfaction_scale_is_normalised():
    record = _record(bjsj="2024-03-03 10:00:00", bjjg="准予许可", pj={"myd": "5", "pjsj": "2024-03-04 10:00:00"})
    assert load_mapping(SAMR).map_record(record)["evaluation"]["satisfaction"] == 1  # legacy 5 = 非常满意


@pytest.mark.parametrize("change, field, rule", [
    ({"zjhm": "110105194912310021"}, "application.applicant_id_number", "check digit"),
    ({"sxbm": "SX-9999"}, "item_code", "not in table items"),
    ({"sqsj": "2024-02-30 09:00:00"}, "application.applied_at", "not a valid date-time"),
    ({"xzqh": "510104"}, "region", "outside Chongqing"),
    ({"sqrxm": None}, "application.applicant_name", "required"),
])
def test_bad_records_name_record_field_rule_and_line(change, field, rule):
    with pytest.raises(MappingError) as caught:
        load_mapping(SAMR).map_record(_record(**change))
    error = caught.value
    assert error.record_key == "SB1" and error.field.startswith(field) and rule in error.rule
    line = SAMR.read_text(encoding="utf-8").splitlines()[error.line - 1]
    assert line.strip().startswith(field.split(".")[-1] + ":")  # the line really is that field's


def test_unknown_key_is_reported_with_its_line(tmp_path):
    text = SAMR.read_text(encoding="utf-8").replace("schedule:", "schedulee:")
    with pytest.raises(MappingFileError) as caught:
        load_mapping(_copy_mapping(tmp_path, text))
    assert "unknown key 'schedulee'" in str(caught.value) and caught.value.line == 6


def test_a_literal_secret_is_refused(tmp_path):
    text = SAMR.read_text(encoding="utf-8").replace("token_env: CQ_SAMR_TOKEN", "token: abc123")
    with pytest.raises(MappingFileError, match="literal secret"):
        load_mapping(_copy_mapping(tmp_path, text))


def test_unknown_transform_and_bad_yaml(tmp_path):
    text = SAMR.read_text(encoding="utf-8").replace("transform: region", "transform: regio")
    with pytest.raises(MappingFileError, match="unknown transform 'regio'"):
        load_mapping(_copy_mapping(tmp_path, text))
    broken = tmp_path / "broken.yaml"
    broken.write_text("system: x\nsource: [unclosed\n", encoding="utf-8")
    with pytest.raises(MappingFileError, match="not valid YAML"):
        load_mapping(broken)


def test_mapping_check_cli_reports_every_error_and_exits_1(tmp_path):
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps([_record(), _record(ywh="SB2", sxbm="SX-9999"), _record(ywh="SB3", zjhm="1")]),
                      encoding="utf-8")
    result = CliRunner().invoke(app, ["mapping", "check", str(SAMR), "--sample", str(sample)])
    assert result.exit_code == 1
    assert "record SB2: field item_code" in result.output and "record SB3: field application.applicant_id_number" in result.output
    assert "3 records: 1 mapped, 2 with errors" in result.output
    assert "11010519491231002X" not in result.output  # personal data masked


def test_mapping_check_cli_accepts_a_good_file():
    result = CliRunner().invoke(app, ["mapping", "check", str(SAMR)])
    assert result.exit_code == 0 and "well-formed" in result.output


def test_a_default_is_sent_as_it_is_not_mapped_again():
    snapshot = load_mapping(SAMR).map_record(_record(sbqd=None, bjlx=None))
    assert snapshot["application"]["channel"] == "9" and snapshot["application"]["case_type"] == "9"


def test_ingest_cli_names_a_failing_system_and_goes_on_with_the_others(tmp_path, monkeypatch):
    text = SAMR.read_text(encoding="utf-8").replace("retry: {attempts: 5, initial_wait: 0.5, max_wait: 30}",
                                                    "retry: {attempts: 1}")
    mappings = _copy_mapping(tmp_path, text).parent
    broken = mappings / "zz-broken.yaml"
    broken.write_text("system: zz\nsource: {adapter: rest}\n", encoding="utf-8")
    monkeypatch.setenv("TONGBAN_MAPPINGS", str(mappings))
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    monkeypatch.setenv("CQ_SAMR_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("CQ_SAMR_TOKEN", "t")
    result = CliRunner().invoke(app, ["ingest"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "cq-samr-rest: ingest failed" in output and "the watermark did not move" in output
    assert "zz-broken.yaml" in output and "missing required key 'record'" in output


# ------------------------------------------------------------------- retired region codes (issue 12 item 9)

def test_a_retired_region_code_is_rewritten_and_the_rewrite_is_noted():
    notes: list[str] = []
    snapshot = load_mapping(SAMR).map_record(_record(xzqh="500222"), notes)
    assert snapshot["region"] == "500110"
    assert notes == ["region: retired region code 500222 rewritten to its successor 500110 (綦江区)"]
    notes = []
    load_mapping(SAMR).map_record(_record(xzqh="500103001"), notes)
    assert notes == ["region: 500103001 rolled up to its county 500103 (渝中区)"]
    notes = []
    load_mapping(SAMR).map_record(_record(xzqh="500103"), notes)
    assert notes == []


def test_retired_reject_quarantines_with_the_field_and_the_retired_code(tmp_path):
    path = _copy_mapping(tmp_path, SAMR.read_text(encoding="utf-8").replace(
        "region: {path: xzqh, transform: region}", "region: {path: xzqh, transform: region, retired: reject}"))
    mapping = load_mapping(path)
    with pytest.raises(MappingError) as caught:
        mapping.map_record(_record(xzqh="500222"))
    error = caught.value
    assert error.record_key == "SB1" and error.field == "region (xzqh)"
    assert error.rule == ("transform region: 500222 is a retired region code (its successor is 500110 綦江区) "
                          "and the mapping says retired: reject")
    assert path.read_text(encoding="utf-8").splitlines()[error.line - 1].strip().startswith("region:")
    assert mapping.map_record(_record(xzqh="500110"))["region"] == "500110"


def test_retired_is_checked_when_the_file_is_loaded(tmp_path):
    for n, spec in enumerate(("{path: xzqh, transform: region, retired: rejct}", "{path: xzqh, retired: reject}")):
        (tmp_path / str(n)).mkdir()
        path = _copy_mapping(tmp_path / str(n), SAMR.read_text(encoding="utf-8").replace(
            "region: {path: xzqh, transform: region}", f"region: {spec}"))
        with pytest.raises(MappingFileError) as caught:
            load_mapping(path)
        assert "`retired:` is an option of transform: region" in caught.value.rule and caught.value.line


def test_mapping_check_prints_the_rewrite_note(tmp_path):
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps([_record(xzqh="500222")]), encoding="utf-8")
    result = CliRunner().invoke(app, ["mapping", "check", str(SAMR), "--sample", str(sample), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["notes"] == [{"record": "SB1", "note": "region: retired region code 500222 rewritten to its "
                                                      "successor 500110 (綦江区)"}]
    assert out["records"] == {"total": 1, "mapped": 1, "with_errors": 0} and out["ok"] is True


# ------------------------------------------------------------------- errors name record, field, rule

@pytest.mark.parametrize("change, field, rule", [
    ({"hj": [{"hjmc": "受理", "kssj": "2024-03-02 09:00:00"}, {"hjmc": "审查", "kssj": "yesterday"}]},
     "steps[1].started_at (kssj)", "transform datetime: 'yesterday' is not a valid date-time"),
    ({"hj": [{"hjmc": None, "kssj": "2024-03-02 09:00:00"}]}, "steps[0].name (hjmc)", "required: value is missing"),
    ({"hj": {"hjmc": "not a list"}}, "steps", "each: the path does not give a list (got dict)"),
    ({"sbqd": "传真"}, "application.channel (sbqd)", "map: value '传真' is not in the field's map"),
    ({"sxbm": "SX-9999"}, "item_code (sxbm)", "lookup: 'SX-9999' is not in table items"),
    ({"ywh": {"nested": "key"}}, "record.key", "the record has no value at key path 'ywh'"),
])
def test_every_mapping_error_names_record_field_and_rule(change, field, rule):
    with pytest.raises(MappingError) as caught:
        load_mapping(SAMR).map_record(_record(**change))
    error = caught.value
    assert error.field == field and error.rule.startswith(rule)
    assert error.record_key == (None if field == "record.key" else "SB1")
    assert error.line, "every error points at the mapping file's line of the rule"


def test_a_record_that_is_not_an_object_is_a_mapping_error():
    for record in ([1, 2], "text", None, 5):
        with pytest.raises(MappingError, match="a record is an object of fields"):
            load_mapping(SAMR).map_record(record)


@pytest.mark.parametrize("old, new, expected", [
    ("  watermark: gxsj ", "  watermrk: gxsj ", "record: unknown key 'watermrk' (did you mean 'watermark'?)"),
    ("name: {path: hjmc, required: true}", "name: {path: hjmc, requird: true}",
     "field steps.name: unknown option 'requird' (did you mean 'required'?)"),
    ("    each: hj\n", "    each: hj\n    feilds: {}\n", "case.steps: unknown key 'feilds'"),
    ("schedule:", "schedul:", "unknown key 'schedul' (did you mean 'schedule'?)"),
    ("lookup: {table: items, key: legacy_code, value: implementation_code}",
     "lookup: {table: items, key: legacy_code, valeu: implementation_code}", "lookup needs exactly {table, key, value}"),
    ("description:", "descripton:", "unknown key 'descripton' (did you mean 'description'?)"),
    ("timezone: Asia/Shanghai", "timezone: Asia/Chongqingg", "record.timezone: unknown time zone 'Asia/Chongqingg'"),
    ("region: {path: xzqh, transform: region}", "region: {path: xzqh, transform: [region]}",
     "field region: unknown transform ['region']"),
    ("lookup: {table: items,", "lookup: {table: [items],", "lookup needs exactly {table, key, value} (names)"),
])
def test_unknown_keys_anywhere_in_the_mapping_are_errors_with_lines(tmp_path, old, new, expected):
    text = SAMR.read_text(encoding="utf-8")
    assert old in text
    path = _copy_mapping(tmp_path, text.replace(old, new, 1))
    result = CliRunner().invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1 and expected in result.output, result.output
    original = set(text.splitlines())
    changed = next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line not in original)
    assert f"{path}:{changed}:" in result.output


def test_a_mapped_case_that_fails_validation_points_at_the_rule_that_made_it(tmp_path):
    """A map that yields a value the national format refuses: the error names the mapping line of that field."""
    path = _copy_mapping(tmp_path, SAMR.read_text(encoding="utf-8").replace(
        'case_type: {path: bjlx, map: {"1": "1", "2": "2"}, default: "9"}',
        'case_type: {path: bjlx, map: {"1": "1", "2": "7"}, default: "9"}'))
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps([_record(bjlx="2")]), encoding="utf-8")
    result = CliRunner().invoke(app, ["mapping", "check", str(path), "--sample", str(sample)])
    assert result.exit_code == 1
    line = next(i for i, l in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "case_type:" in l)
    assert f"{path}:{line}: record SB1: application.case_type: Input should be '1', '2' or '9'" in result.output
