"""What the mapping rewrites or refuses is visible in the pipeline: a retired region code translated to its successor
is a note on the ledger's "fetched" event (so `tongban trace` shows it); with `retired: reject`, or for a record nested
too deeply, the record is quarantined with a reason naming the field and the rule."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import ListAdapter
from tongban.audit import ledger
from tongban.bus.local import LocalBus
from tongban.bus.topology import cases_work
from tongban.cli import app
from tongban.pipeline.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.operator.actions import list_quarantine
from tongban.platform.client import PlatformClient
from tongban.settings import load

pytestmark = pytest.mark.timeout(60)
SAMR = Path(__file__).resolve().parents[2] / "mappings" / "cq-samr-rest.yaml"
NOTE = "region: retired region code 500222 rewritten to its successor 500110 (綦江区)"




def _record(key: str, **changes):
    record = {"ywh": key, "sxbm": "SX-0001", "sqrxm": "张三", "zjlx": "SFZ", "zjhm": "11010519491231002X",
              "xzqh": "500222", "sqsj": "2024-03-01 09:30:00", "bjlx": "1", "sbqd": "窗口", "cl": [], "hj": [],
              "gxsj": "2024-03-01 09:30:00"}
    record.update(changes)
    return record


def _mapping(tmp_path: Path, region_spec: str = "{path: xzqh, transform: region}"):
    text = (SAMR.read_text(encoding="utf-8").replace("identity: {resolve: true}", "identity: {resolve: false}")
            .replace("region: {path: xzqh, transform: region}", f"region: {region_spec}"))
    shutil.copytree(SAMR.parent / "tables", tmp_path / "tables", dirs_exist_ok=True)
    path = tmp_path / "cq-samr-rest.yaml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(path)


def _deep(levels: int):
    value: object = "bottom"
    for _ in range(levels):
        value = {"x": [value]}
    return value


def test_a_retired_code_rewrite_is_in_the_ledger_and_the_trace(sqlite_store, sandbox_env, tmp_path, monkeypatch):
    bus, work = LocalBus(sqlite_store), cases_work("notes")
    report = run_ingest(_mapping(tmp_path), store=sqlite_store, bus=bus, platform=PlatformClient(load()),
                        adapter=ListAdapter([_record("RG-1"), _record("RG-2", xzqh="500103"),
                                         _record("RG-3", cl=_deep(40))]), work=work)
    assert report.events_published == 2 and report.quarantined == 1
    fetched = {e["source_key"]: e["detail"] for e in ledger.trace(sqlite_store, "RG-1") + ledger.trace(sqlite_store, "RG-2")
               if e["hop"] == "fetched"}
    assert fetched["RG-1"]["notes"] == [NOTE] and "notes" not in fetched["RG-2"]
    [deep] = list_quarantine(sqlite_store)[0]
    assert deep["source_key"] == "RG-3" and deep["stage"] == "mapping" and deep["field"] == "record"
    assert "nested deeper than 64 levels" in deep["rule"]
    monkeypatch.setenv("TONGBAN_DB_URL", f"sqlite:///{tmp_path}/tongban.db")  # the sqlite_store fixture's database
    for args in (["trace", "RG-1"], ["trace", "RG-1", "--json"]):
        trace = CliRunner().invoke(app, args)
        assert trace.exit_code == 0 and "retired region code 500222 rewritten" in trace.output, trace.output


def test_retired_reject_quarantines_naming_the_field_and_the_code(sqlite_store, sandbox_env, tmp_path):
    bus, work = LocalBus(sqlite_store), cases_work("reject")
    mapping = _mapping(tmp_path, "{path: xzqh, transform: region, retired: reject}")
    report = run_ingest(mapping, store=sqlite_store, bus=bus, platform=PlatformClient(load()),
                        adapter=ListAdapter([_record("RJ-1"), _record("RJ-2", xzqh="500110")]), work=work)
    assert report.events_published == 1 and report.quarantined == 1
    [entry], total = list_quarantine(sqlite_store)
    assert total == 1 and entry["source_key"] == "RJ-1" and entry["field"] == "region"
    assert "500222 is a retired region code" in entry["rule"] and "retired: reject" in entry["rule"]
