"""National data flowback (数据回流): routing rules, source files in the mapping language, ministry batches with
their own field names (GB18030 CSV, XML with another record tag) through the files adapter and the local bus to
the sandbox district sinks, exact duplicates, a batch read wrongly at first and recovered, and the report."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sandbox.ministry import PINYIN, make_batch, write_batch
from tongban.cli import app as tongban_app
from tongban.flowback import load_flowback_mapping
from tongban.flowback.config import RoutingConfig
from tongban.flowback.routing import Reject, Route, Router
from tongban.mapping import MappingFileError

REPO = Path(__file__).resolve().parents[2]
ROUTING = REPO / "mappings" / "flowback" / "routing.yaml"
TASK = "11500103MB1234567X" + "4" + "500100101000"   # a district body's 实施编码 (checksum not needed here)
MUNICIPAL_TASK = "11500000MB1234567X" + "2" + "500100101000"

# The national field names read as they are (ROWGUID required): the `fields:` lines of a national batch.
NATIONAL_FIELDS = "    ROWGUID: {path: ROWGUID, required: true}\n" + "".join(
    f"    {name}: {{path: {name}}}\n" for name in (
        "PROJID", "TASKCODE", "TASKNAME", "AREACODE", "APPLYERNAME", "APPLYERCARDTYPE", "APPLYERCARDCODE", "APPLYDATE",
        "PROJSTATUS", "OPERATETYPE", "OPERATEDATE", "DATASOURCE"))
# The pinyin ministry (sandbox.ministry.PINYIN): its own column names, dashed dates, the status as text.
PINYIN_FIELDS = """\
    ROWGUID: {path: LSH, required: true}
    PROJID: {path: BJBH}
    TASKCODE: {path: SSBM}
    TASKNAME: {path: SXMC}
    AREACODE: {path: XZQHDM}
    APPLYERNAME: {path: SQRXM}
    APPLYERCARDTYPE: {path: SQRZJLX}
    APPLYERCARDCODE: {path: SQRZJHM, transform: identity}
    APPLYDATE: {path: SQSJ, transform: datetime, format: "%Y-%m-%d %H:%M:%S"}
    PROJSTATUS: {path: BJZT, map: {受理: "1", 办理中: "2", 办结: "3"}}
    OPERATETYPE: {path: CZLX}
    OPERATEDATE: {path: CZSJ, transform: datetime, format: "%Y-%m-%d %H:%M:%S"}
    DATASOURCE: {path: SJLY}
"""


def source_file(tmp_path: Path, name: str, sinks_path: Path | str, *, fields: str = NATIONAL_FIELDS,
                settings: str = "", key: str = "ROWGUID", source: str = "", flowback: str = "") -> Path:
    """The flowback source file `name`.yaml in tmp_path. Its `source:` lines are `source`, by default a files adapter
    on tmp_path/drop/`name` (made here), then `settings`; `flowback` adds lines to its `flowback:` before the
    routing (how a REST ministry lists its batches)."""
    if not source:
        source = f"  adapter: files\n  directory: {tmp_path / 'drop' / name}\n"
        (tmp_path / "drop" / name).mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""\
system: {name}
description: test ministry
schedule: "@hourly"
source:
{source}{settings}record:
  key: {key}
flowback:
{flowback}  routing: {ROUTING}
  sinks: {sinks_path}
  fields:
{fields}""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(RoutingConfig.model_validate(yaml.safe_load(ROUTING.read_text(encoding="utf-8"))))


def rec(area: str | None, task: str = TASK, **extra) -> dict:
    record = {"ROWGUID": "g1", "TASKCODE": task, "APPLYERCARDCODE": "510202198001010011", **extra}
    if area is not None:
        record["AREACODE"] = area
    return record


# --- routing rules -----------------------------------------------------------------------------------
def test_current_code_routes_to_its_district_never_by_the_applicants_id(router):
    assert router.route(rec("500103")) == Route("500103", "500103")


def test_retired_code_is_translated_to_its_successor(router):
    route = router.route(rec("500222"))  # 綦江县 → 綦江区
    assert isinstance(route, Route) and route.target == "500110" and route.translated_from == "500222"


@pytest.mark.parametrize("area", ["500106003", "500106003201", "５００１０６００３"])
def test_town_and_village_codes_roll_up_to_their_county(router, area):
    route = router.route(rec(area))
    assert isinstance(route, Route) and route.target == "500106" and route.rolled_up


def test_city_code_and_municipal_items_go_to_the_city_queue(router):
    assert router.route(rec("500000")).target == "city"
    municipal = router.route(rec("500105", task=MUNICIPAL_TASK))
    assert municipal.target == "city" and "municipal" in municipal.why


def test_functional_zone_routes_where_the_configuration_says(router):
    route = router.route(rec("500192"))
    assert route.target == "500112" and route.zone == "两江新区"


@pytest.mark.parametrize("area,words", [("110105", "other province"), ("500199", "unknown region code"),
                                        ("5001", "6, 9 or 12 digits")])
def test_other_provinces_and_unknown_codes_are_rejected_with_the_rule(router, area, words):
    result = router.route(rec(area))
    assert isinstance(result, Reject) and result.field == "AREACODE" and words in result.rule


def test_record_without_region_is_rejected_even_when_the_id_number_looks_chongqing(router):
    result = router.route(rec(None, APPLYERCARDCODE="500103198001010011"))
    assert isinstance(result, Reject) and "no region" in result.rule


# --- the source file ---------------------------------------------------------------------------------
@pytest.mark.parametrize("broken,line,words", [
    ("  fields:\n    ROWGUID: {path: LSH, required: true}\n    AREACOD: {path: X}\n", 16, "'AREACOD' is not a national"),
    ("  fields:\n    ROWGUID: {path: LSH, requird: true}\n", 15, "unknown option 'requird'"),
    ("  fieldz: {}\n", 14, "flowback: unknown key 'fieldz'"),
])
def test_a_source_file_mistake_is_an_error_naming_its_line(tmp_path, broken, line, words):
    path = tmp_path / "broken.yaml"
    path.write_text(f"""\
system: broken
description: x
schedule: "@hourly"
source:
  adapter: files
  directory: {tmp_path}
record:
  key: LSH
flowback:
  routing: {ROUTING}
  sinks:
    default: {{kind: file, directory: {tmp_path}}}
  # the mistake follows
{broken}""", encoding="utf-8")
    with pytest.raises(MappingFileError) as err:
        load_flowback_mapping(path)
    assert err.value.line == line and words in str(err.value)


def test_a_misspelt_key_in_the_sinks_or_routing_section_is_an_error_not_ignored(tmp_path):
    path = tmp_path / "sinks-typo.yaml"
    path.write_text(f"""\
system: typo
source: {{adapter: files, directory: {tmp_path}}}
record: {{key: ROWGUID}}
flowback:
  routing: {ROUTING}
  sinks:
    defualt: {{kind: file, directory: {tmp_path}}}
  fields:
    ROWGUID: {{path: ROWGUID}}
    TASKCODE: {{path: TASKCODE}}
    AREACODE: {{path: AREACODE}}
""", encoding="utf-8")
    with pytest.raises(MappingFileError) as err:
        load_flowback_mapping(path)
    assert err.value.line == 6 and "flowback.sinks: defualt: Extra inputs are not permitted" in str(err.value)


def test_mapping_check_reads_a_gb18030_csv_sample_as_the_source_does(tmp_path, sinks_file):
    batch = make_batch("MPS-CHECK-0001", 30, seed=2)
    write_batch(tmp_path / "sample", batch, "csv", dialect=PINYIN, encoding="gb18030")
    sample = tmp_path / "sample" / "MPS-CHECK-0001.csv"
    good = source_file(tmp_path, "pinyin", sinks_file, fields=PINYIN_FIELDS, settings="  encoding: gb18030\n", key="LSH")
    runner = CliRunner()

    ok = runner.invoke(tongban_app, ["mapping", "check", str(good), "--sample", str(sample)])
    assert ok.exit_code == 0, ok.output
    rejected = sum(e.startswith("quarantine:") for e in batch.expected.values())
    assert f"30 records: {30 - rejected} mapped and routed, {rejected} quarantined by routing, 0 with errors" in ok.output

    wrong = source_file(tmp_path, "pinyin-wrong", sinks_file, key="LSH", settings="  encoding: gb18030\n",
                        fields=PINYIN_FIELDS.replace('format: "%Y-%m-%d %H:%M:%S"}\n    PROJSTATUS',
                                                     'format: "%Y%m%d"}\n    PROJSTATUS'))
    bad = runner.invoke(tongban_app, ["mapping", "check", str(wrong), "--sample", str(sample)])
    assert bad.exit_code == 1
    assert f"{wrong}:22: record MPS-CHECK-0001-0000001: field APPLYDATE (SQSJ):" in bad.output, bad.output[:600]


# --- batches end to end ------------------------------------------------------------------------------
