"""A ministry format nobody wrote a source file for, onboarded from docs/flowback.md alone: nested XML records
(<Item id="…"> with <Service><Code>, <Applicant><DocNo> …) in UTF-8, and GBK CSV with Chinese column names; slash
dates without seconds; the status as letters. The source files below were written from the documentation; the
routing must match the answer key exactly and the report must balance."""
from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

from sandbox.district_sinks import DistrictSinkWorld
from sandbox.ministry import make_batch
from tongban.bus.local import LocalBus
from tongban.flowback import reconcile, run_flowback_source
from tongban.flowback.records import RecordsDigest
from tongban.store import open_store

REPO = Path(__file__).resolve().parents[2]
STATE = {"1": "A", "2": "B", "3": "C"}
COLUMNS = ["流水号", "办件编号", "实施编码", "事项名称", "行政区划", "申请人", "证件类型", "证件号码", "申请时间", "状态",
           "操作类型", "操作时间", "来源"]


def slash(value: str) -> str:
    return datetime.strptime(value, "%Y%m%dT%H%M%S").strftime("%Y/%m/%d %H:%M")


def nested(r: dict) -> dict:
    """The ministry's record as a nested object (what its XML says, and what its own digest tool hashes)."""
    return {"id": r["ROWGUID"], "CaseNo": r.get("PROJID"), "Service": {"Code": r.get("TASKCODE"), "Title": r.get("TASKNAME")},
            "Division": r.get("AREACODE"), "Applicant": {"FullName": r.get("APPLYERNAME"), "DocType": r.get("APPLYERCARDTYPE"),
                                                         "DocNo": r.get("APPLYERCARDCODE")},
            "Submitted": slash(r["APPLYDATE"]), "State": STATE[r["PROJSTATUS"]], "Action": r["OPERATETYPE"],
            "ActionAt": slash(r["OPERATEDATE"]), "Sender": r["DATASOURCE"]}


def to_xml(value: dict) -> str:
    return "".join(f"<{k}>{to_xml(v) if isinstance(v, dict) else escape(v)}</{k}>" for k, v in value.items() if v)


def write_xml(drop: Path, batch_id: str, records: list[dict]) -> None:
    digest = RecordsDigest()
    with open(drop / f"{batch_id}.xml", "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<DataPackage>\n')
        for r in records:
            item = nested(r)
            out.write(f"<Item id={quoteattr(item.pop('id'))}>{to_xml(item)}</Item>\n")
            digest.add(nested(r))
        out.write("</DataPackage>\n")
    (drop / f"{batch_id}.manifest.json").write_text(json.dumps(
        {"batch_id": batch_id, "record_count": digest.count, "digest": digest.hexdigest()}), encoding="utf-8")


def write_csv(drop: Path, batch_id: str, records: list[dict]) -> None:
    digest = RecordsDigest()
    with open(drop / f"{batch_id}.csv", "w", encoding="gbk", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for r in records:
            row = [r["ROWGUID"], r.get("PROJID", ""), r.get("TASKCODE", ""), r.get("TASKNAME", ""), r.get("AREACODE", ""),
                   r.get("APPLYERNAME", ""), r.get("APPLYERCARDTYPE", ""), r.get("APPLYERCARDCODE", ""), slash(r["APPLYDATE"]),
                   STATE[r["PROJSTATUS"]], r["OPERATETYPE"], slash(r["OPERATEDATE"]), r["DATASOURCE"]]
            writer.writerow(row)
            digest.add(dict(zip(COLUMNS, row)))
    (drop / f"{batch_id}.manifest.json").write_text(json.dumps(
        {"batch_id": batch_id, "record_count": digest.count, "digest": digest.hexdigest()}), encoding="utf-8")


XML_SOURCE = """\
system: mca-xml
description: 民政部办件数据回流 (XML)
source:
  adapter: files
  directory: {drop}
  encoding: utf-8
  xml_record_tag: Item
record:
  key: id
flowback:
  routing: {routing}
  sinks: {sinks}
  fields:
    ROWGUID: {{path: id, required: true}}
    PROJID: {{path: CaseNo}}
    TASKCODE: {{path: Service.Code}}
    TASKNAME: {{path: Service.Title}}
    AREACODE: {{path: Division}}
    APPLYERNAME: {{path: Applicant.FullName}}
    APPLYERCARDTYPE: {{path: Applicant.DocType}}
    APPLYERCARDCODE: {{path: Applicant.DocNo, transform: identity}}
    APPLYDATE: {{path: Submitted, transform: datetime, format: "%Y/%m/%d %H:%M"}}
    PROJSTATUS: {{path: State, map: {{A: "1", B: "2", C: "3"}}}}
    OPERATETYPE: {{path: Action}}
    OPERATEDATE: {{path: ActionAt, transform: datetime, format: "%Y/%m/%d %H:%M"}}
    DATASOURCE: {{path: Sender}}
"""
CSV_SOURCE = """\
system: mca-csv
description: 民政部办件数据回流 (CSV, GBK)
source:
  adapter: files
  directory: {drop}
  encoding: gbk
record:
  key: '"流水号"'
flowback:
  routing: {routing}
  sinks: {sinks}
  fields:
    ROWGUID: {{path: '"流水号"', required: true}}
    PROJID: {{path: '"办件编号"'}}
    TASKCODE: {{path: '"实施编码"'}}
    TASKNAME: {{path: '"事项名称"'}}
    AREACODE: {{path: '"行政区划"'}}
    APPLYERNAME: {{path: '"申请人"'}}
    APPLYERCARDTYPE: {{path: '"证件类型"'}}
    APPLYERCARDCODE: {{path: '"证件号码"', transform: identity}}
    APPLYDATE: {{path: '"申请时间"', transform: datetime, format: "%Y/%m/%d %H:%M"}}
    PROJSTATUS: {{path: '"状态"', map: {{A: "1", B: "2", C: "3"}}}}
    OPERATETYPE: {{path: '"操作类型"'}}
    OPERATEDATE: {{path: '"操作时间"', transform: datetime, format: "%Y/%m/%d %H:%M"}}
    DATASOURCE: {{path: '"来源"'}}
"""


@pytest.mark.parametrize("fmt", ["xml", "csv"])
def test_a_format_onboarded_from_the_docs_routes_exactly_as_the_answer_key(tmp_path, monkeypatch, fmt):
    home = tmp_path / "home"
    monkeypatch.setenv("TONGBAN_HOME", str(home))
    sinks = DistrictSinkWorld(home / "flowback-drop").start()  # mappings/flowback/district-sinks.yaml's layout
    monkeypatch.setenv("TONGBAN_DISTRICT_GATEWAY", sinks.server.url)
    try:
        drop = tmp_path / "drop"
        drop.mkdir()
        batch = make_batch(f"MCA-2026-{fmt.upper()}", 800, seed=41, duplicate_share=0.01)
        (write_xml if fmt == "xml" else write_csv)(drop, batch.batch_id, batch.records)
        source = tmp_path / f"mca-{fmt}.yaml"
        source.write_text((XML_SOURCE if fmt == "xml" else CSV_SOURCE).format(
            drop=drop, routing=REPO / "mappings" / "flowback" / "routing.yaml",
            sinks=REPO / "mappings" / "flowback" / "district-sinks.yaml"), encoding="utf-8")
        store = open_store(f"sqlite:///{tmp_path}/t.db")

        report = run_flowback_source(source, store=store, bus=LocalBus(store), prefix="t.flowback")

        assert report.balanced, [r.gaps for r in report.reconciliations]
        received = sinks.received_by_rowguid()
        wanted = {g: e for g, e in batch.expected.items() if not e.startswith("quarantine:")}
        assert received == wanted  # every record where the answer key says, nothing else, nothing twice
        (r,) = reconcile(store, batch.batch_id)
        assert (r.received, r.duplicates, r.routed, r.delivered) == (
            len(batch.records), batch.duplicates, len(wanted), len(wanted))
        assert r.quarantined == len(batch.expected) - len(wanted)
    finally:
        sinks.stop()
