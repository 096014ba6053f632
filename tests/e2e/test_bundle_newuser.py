"""A bundle the sandbox does not ship, written from docs/bundles.md alone, checks clean and runs in the sandbox
(`tongban bundle try`): its licence first, then the hygiene permit, the bundle concluded granted."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from tongban.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_the_docs_bundle_runs_in_the_sandbox(tmp_path):
    docs = (REPO / "docs" / "bundles.md").read_text(encoding="utf-8")
    definition = re.search(r"```yaml\n(bundle: restaurant-open.*?)```", docs, re.S).group(1)
    folder = tmp_path / "mappings" / "bundles"
    shutil.copytree(REPO / "mappings" / "bundles" / "departments", folder / "departments")
    path = folder / "restaurant-open.yaml"
    path.write_text(definition, encoding="utf-8")
    form = tmp_path / "form.json"
    form.write_text(json.dumps({"company": {"name": "重庆渝味餐饮有限公司", "credit_code": "91500103MA00001X3M",
                                            "region": "500103"}}, ensure_ascii=False), encoding="utf-8")
    env = {"TONGBAN_HOME": str(tmp_path / "home"), "TONGBAN_BUS": "inprocess", "TONGBAN_DB_URL": ""}
    runner = CliRunner()
    checked = runner.invoke(app, ["bundle", "check", str(path)], env=env)
    assert checked.exit_code == 0, checked.output
    result = runner.invoke(app, ["bundle", "try", str(path), "--form", str(form), "--json"], env=env)
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["state"] == "concluded" and view["result"] == "granted"
    members = {m["member"]: m for m in view["members"]}
    assert members["licence"]["concluded_at"] <= members["hygiene"]["submitted_at"]
    assert all(m["case_number"] for m in members.values())
