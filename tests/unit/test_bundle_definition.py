"""Bundle definitions (一件事一次办): the shipped ones check clean, and each mistake an author makes is one error on
its line, from `tongban bundle check` too."""
from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongban.bundle.definition import Deadline, check_bundle, load_bundles
from tongban.cli import app

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "mappings" / "bundles"
runner = CliRunner()

GOOD = """\
bundle: demo
name: 演示一件事
members:
  first:
    name: 出生医学证明
    item_code: 11500000MB1C0416XA2502024101000
    department: 卫健委
    mapping: departments/cq-wsjkw-birth.yaml
    form: {sqrxm: applicant.name}
    deadline: {working_days: 2}
  second:
    name: 户口登记
    item_code: 11500000MB1D2201952500708201000
    department: 公安
    mapping: departments/cq-gaj-rest.yaml
    after: [first]
    deadline: {hours: 4}
conclude:
  refusal_ends: [first]
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(BUNDLES / "departments", tmp_path / "departments")
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def only_problem(path: Path) -> tuple[int | None, str]:
    defn, problems = check_bundle(path)
    assert defn is None and len(problems) == 1, [str(p) for p in problems]
    return problems[0].line, problems[0].rule


def test_the_shipped_bundles_check_clean_in_dependency_order():
    bundles = load_bundles(BUNDLES)
    assert set(bundles) == {"newborn", "business-start"}
    newborn = bundles["newborn"].order()
    assert newborn.index("birth_certificate") < newborn.index("household")
    assert {m.department for b in bundles.values() for m in b.members.values()} >= {
        "重庆市卫生健康委员会", "重庆市公安局", "重庆市医疗保障局", "重庆市人力资源和社会保障局"}


def test_a_good_definition_written_from_the_docs_loads(folder):
    defn, problems = check_bundle(write(folder, GOOD))
    assert problems == [] and defn.order() == ["first", "second"]
    assert defn.ends_on_refusal("first") and not defn.ends_on_refusal("second")


@pytest.mark.parametrize("old, new, line, words", [
    ("item_code: 11500000MB1C0416XA2502024101000", "item_code: 1150000", 6, "not a valid 实施编码"),
    ("item_code: 11500000MB1C0416XA2502024101000", "item_code: 502024101000", 6, "31-character"),
    ("after: [first]", "after: [third]", 16, "no member 'third'"),
    ("form: {sqrxm: applicant.name}", "form: {sqrxm: 'applicant.[name'}", 9, "form.sqrxm: not a valid JMESPath"),
    ("deadline: {hours: 4}", "deadline: {days: 4}", 17, "deadline.days: unknown setting"),
    ("deadline: {hours: 4}", "deadline: {hours: 4, working_days: 1}", 17, "exactly one"),
    ("refusal_ends: [first]", "refusal_ends: [fist]", 19, "no member 'fist'"),
    ("mapping: departments/cq-gaj-rest.yaml", "mapping: departments/nowhere.yaml", 15, "no mapping file"),
    ("    department: 公安\n", "", 11, "department: missing required setting"),
])
def test_each_mistake_is_named_on_its_line(folder, old, new, line, words):
    assert old in GOOD
    got_line, rule = only_problem(write(folder, GOOD.replace(old, new)))
    assert words in rule and got_line == line, (got_line, rule)


def test_a_dependency_cycle_is_named(folder):
    text = GOOD.replace("    deadline: {working_days: 2}", "    after: [second]\n    deadline: {working_days: 2}")
    _, rule = only_problem(write(folder, text))
    assert "dependency cycle" in rule and "first" in rule and "second" in rule


def test_a_department_without_submit_section_is_refused(folder):
    target = folder / "departments" / "cq-gaj-rest.yaml"
    text = target.read_text(encoding="utf-8")
    start, end = text.index("\nsubmit:"), text.index("\nrecord:")
    target.write_text(text[:start] + text[end:], encoding="utf-8")
    line, rule = only_problem(write(folder, GOOD))
    assert line == 15 and "no `submit:` section" in rule


def test_a_misspelt_submit_setting_is_named_in_the_department_file(folder):
    target = folder / "departments" / "cq-gaj-rest.yaml"
    target.write_text(target.read_text(encoding="utf-8").replace("key_path:", "keypath:"), encoding="utf-8")
    _, rule = only_problem(write(folder, GOOD))
    assert "cq-gaj-rest.yaml" in rule and "submit.keypath: unknown setting" in rule


def test_unknown_top_level_key_and_literal_env_refs_are_refused(folder):
    line, rule = only_problem(write(folder, GOOD + "conclud: {}\n"))
    assert line == 20 and "unknown key 'conclud'" in rule
    line, rule = only_problem(write(folder, GOOD.replace("applicant.name", "'${HOME}'")))
    assert line == 9 and "environment variables expand only" in rule


def test_cli_check_prints_lines_and_json(folder):
    bad = write(folder, GOOD.replace("after: [first]", "after: [third]"))
    result = runner.invoke(app, ["bundle", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:16: members.second.after: no member 'third'" in result.stderr
    result = runner.invoke(app, ["bundle", "check", "--json", *map(str, sorted(BUNDLES.glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and [f["bundle"] for f in data["files"]] == ["business-start", "newborn"]


def test_deadlines_in_working_days_skip_the_weekend():
    friday = datetime(2026, 12, 4, 10, 0)
    assert Deadline(working_days=1).due(friday) == datetime(2026, 12, 7, 10, 0)  # Monday
    assert Deadline(hours=8).due(friday) == datetime(2026, 12, 4, 18, 0)
