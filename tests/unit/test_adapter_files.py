"""FileDropAdapter against the 市卫生健康委 sandbox exports and hand-made damaged files."""
from __future__ import annotations

import codecs
import json
import os
import time
from pathlib import Path

import pytest

from adapters.base import SourceError
from adapters.files import FileDropAdapter
from sandbox.filedrop import HEADER, SYSTEM, DropManifest, write_csv, write_exports, write_xlsx, write_xml

pytestmark = pytest.mark.timeout(60)


def age(path: Path, seconds: float = 120) -> Path:
    """Make a file look finished (last written `seconds` ago)."""
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def adapter(inbox: Path, **settings) -> FileDropAdapter:
    return FileDropAdapter(SYSTEM, {"directory": str(inbox), "stable_seconds": 30, **settings})


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.exists() else []


# --- formats ---------------------------------------------------------------------------------------------

def test_gbk_csv_damaged_rows_are_quarantined_by_line_and_the_rest_go_on(tmp_path):
    manifest = DropManifest()
    age(write_csv(tmp_path / "cases.csv", seed=3, rows=120, manifest=manifest))
    records = list(adapter(tmp_path, pattern="*.csv", format="csv", encoding="gbk").fetch(None))
    damaged = {r.position: r.error for r in records if r.error}
    assert damaged.keys() == {f"cases.csv line {n}" for n in manifest.csv_damaged_lines}
    assert "expected 11 columns, got 7" in damaged["cases.csv line 7"]
    assert "undecodable bytes for gbk" in damaged["cases.csv line 13"]
    assert "NUL" in damaged["cases.csv line 25"]
    good = [r for r in records if not r.error]
    assert len(good) == 120 - 3
    assert list(good[0].data) == HEADER
    assert good[0].position == "cases.csv line 2"
    assert all(r.data["行政区划"].startswith("500") for r in good)


def test_auto_encoding_reads_gbk_and_utf8_with_bom(tmp_path):
    rows = [["WJ1", "WJ-YZ-001", "张伟", "居民身份证", "500101199001011234", "500101", "", "", "", "", ""]]
    text = ",".join(HEADER) + "\r\n" + "\r\n".join(",".join(r) for r in rows) + "\r\n"
    (tmp_path / "a_gbk.csv").write_bytes(text.encode("gbk"))
    (tmp_path / "b_bom.csv").write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    (tmp_path / "c_utf8.csv").write_bytes(text.encode("utf-8"))
    for name in ("a_gbk.csv", "b_bom.csv", "c_utf8.csv"):
        age(tmp_path / name)
    records = list(adapter(tmp_path, pattern="*.csv", encoding="auto").fetch(None))
    assert [r.data["申请人"] for r in records] == ["张伟", "张伟", "张伟"]
    assert all(list(r.data)[0] == "办件编号" for r in records)  # no BOM glued to the first column name


def test_declared_utf8_with_bom_drops_the_bom(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(codecs.BOM_UTF8 + "办件编号,申请人\r\nWJ1,李娟\r\n".encode("utf-8"))
    age(path)
    [record] = adapter(tmp_path, encoding="utf-8").fetch(None)
    assert record.data == {"办件编号": "WJ1", "申请人": "李娟"}


def test_quoted_multiline_fields_keep_line_numbers_right(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text('办件编号,备注\nWJ1,"第一行\n第二行"\nWJ2,ok\nWJ3,too,many\n', encoding="utf-8")
    age(path)
    records = list(adapter(tmp_path).fetch(None))
    assert [(r.position, r.error is None) for r in records] == [
        ("notes.csv line 2", True), ("notes.csv line 4", True), ("notes.csv line 5", False)]
    assert records[0].data["备注"] == "第一行\n第二行"


def test_oversized_field_spoils_only_its_record(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("办件编号,备注\nWJ1," + "长" * 5000 + "\nWJ2,ok\n", encoding="utf-8")
    age(path)
    records = list(adapter(tmp_path, max_field_bytes=4096).fetch(None))
    assert "field '备注' has 15000 bytes, over max_field_bytes 4096" in records[0].error
    assert records[1].data == {"办件编号": "WJ2", "备注": "ok"} and records[1].error is None


def test_xml_export_streams_every_record(tmp_path):
    age(write_xml(tmp_path / "export.xml", seed=5, rows=700))
    records = list(adapter(tmp_path, pattern="*.xml", xml_record_tag="Case").fetch(None))
    assert len(records) == 700 and not any(r.error for r in records)
    assert records[699].position == "export.xml record 700"
    assert set(records[0].data) == {"BJBH", "SXBM", "SQR", "ZJLX", "ZJHM", "XZQH", "SQSJ", "SLSJ", "BJSJ", "BJJG",
                                    "GXSJ"}


def test_xml_truncated_after_some_records_reports_the_rest_as_damaged(tmp_path):
    path = tmp_path / "cut.xml"
    path.write_bytes(b"<Export><Case><BJBH>1</BJBH></Case><Case><BJBH>2</BJBH></Case><Case><BJ")
    age(path)
    records = list(adapter(tmp_path, xml_record_tag="Case").fetch(None))
    assert [r.data.get("BJBH") for r in records[:2]] == ["1", "2"]
    assert records[2].position == "cut.xml record 3" and "XML broken after record 2" in records[2].error


def test_xlsx_rows_with_real_dates(tmp_path):
    age(write_xlsx(tmp_path / "cases.xlsx", seed=9, rows=50))
    records = list(adapter(tmp_path, pattern="*.xlsx").fetch(None))
    assert len(records) == 50 and records[0].position == "cases.xlsx row 2"
    assert records[0].data["申请时间"].count("T") == 1  # ISO date-time string, not a datetime object
    json.dumps([r.data for r in records], ensure_ascii=False)


def test_jsonl_bad_lines_are_reported(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text('{"办件编号": "WJ1"}\n{broken\n\n[1, 2]\n{"办件编号": "WJ2"}\n', encoding="utf-8")
    age(path)
    records = list(adapter(tmp_path).fetch(None))
    assert [(r.position, bool(r.error)) for r in records] == [
        ("cases.jsonl line 1", False), ("cases.jsonl line 2", True), ("cases.jsonl line 4", True),
        ("cases.jsonl line 5", False)]
    assert "not valid JSON" in records[1].error and "expected a JSON object" in records[2].error


def test_sandbox_drop_reads_end_to_end(tmp_path):
    manifest = write_exports(tmp_path, seed=1, rows=100, xml_rows=300, xlsx_rows=40)
    for path in manifest.files:
        age(path)
    source = adapter(tmp_path, encoding="auto", xml_record_tag="Case")
    records = list(source.fetch(None))
    assert len(records) == 100 + 300 + 40
    assert sum(1 for r in records if r.error) == len(manifest.csv_damaged_lines)
    source.commit()
    assert names(tmp_path / "done") == sorted(p.name for p in manifest.files)


# --- files that cannot be read at all ----------------------------------------------------------------------

@pytest.mark.parametrize("name,content,settings,reason", [
    ("wrong.csv", ",".join(HEADER).encode("gbk") + b"\r\n", {"encoding": "utf-8"}, "not utf-8"),
    ("notxml.xml", b"PK\x03\x04 definitely not xml", {"xml_record_tag": "Case"}, "not well-formed"),
    ("hostile.xml", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    b"<Export><Case><BJBH>&x;</BJBH></Case></Export>", {"xml_record_tag": "Case"}, "DOCTYPE"),
    ("fake.xlsx", b"just text", {}, "not a readable .xlsx"),
])
def test_unreadable_file_goes_to_failed_with_a_reason(tmp_path, name, content, settings, reason):
    age_path = tmp_path / name
    age_path.write_bytes(content)
    age(age_path)
    source = adapter(tmp_path, **settings)
    assert list(source.fetch(None)) == []  # nothing yielded, nothing raised
    assert names(tmp_path / "failed") == [name, name + ".reason.txt"]
    assert reason in (tmp_path / "failed" / f"{name}.reason.txt").read_text(encoding="utf-8")
    assert source.failed_files[0][0] == name and reason in source.failed_files[0][1]
    source.commit()
    assert names(tmp_path / "done") == []


# --- claiming, commit and abort ------------------------------------------------------------------------------

def test_files_still_being_written_are_left_alone(tmp_path):
    fresh = tmp_path / "fresh.csv"
    fresh.write_text("办件编号\nWJ1\n", encoding="utf-8")
    finished = tmp_path / "old.csv"
    finished.write_text("办件编号\nWJ2\n", encoding="utf-8")
    age(finished)
    source = adapter(tmp_path)
    records = list(source.fetch(None))
    assert [r.data["办件编号"] for r in records] == ["WJ2"]
    assert source.waiting_files == ["fresh.csv"]
    assert fresh.exists()  # untouched in the inbox


def test_ready_marker_is_required_when_configured(tmp_path):
    data = tmp_path / "cases.csv"
    data.write_text("办件编号\nWJ1\n", encoding="utf-8")
    age(data)
    source = adapter(tmp_path, ready_marker=".ok", pattern="*.csv")
    assert list(source.fetch(None)) == [] and source.waiting_files == ["cases.csv"]
    (tmp_path / "cases.csv.ok").write_text("", encoding="utf-8")
    assert [r.data["办件编号"] for r in source.fetch(None)] == ["WJ1"]
    source.commit()
    assert names(tmp_path / "done") == ["cases.csv", "cases.csv.ok"]
    assert names(tmp_path) == []


def test_claimed_file_sits_in_processing_then_commit_moves_it_to_done(tmp_path):
    age(write_csv(tmp_path / "cases.csv", seed=1, rows=10))
    source = adapter(tmp_path, encoding="gbk")
    records = list(source.fetch(None))
    assert names(tmp_path) == [] and names(tmp_path / "processing") == ["cases.csv"]
    source.commit()
    assert names(tmp_path / "done") == ["cases.csv"] and names(tmp_path / "processing") == []
    assert len(records) == 10
    assert list(adapter(tmp_path).fetch(None)) == []  # progress is the move: nothing is read twice


def test_abort_puts_files_back_so_the_next_run_sees_the_same_records(tmp_path):
    age(write_csv(tmp_path / "cases.csv", seed=1, rows=10))
    first = adapter(tmp_path, encoding="gbk")
    before = [r.data for r in first.fetch(None)]
    first.abort("broker did not confirm")
    assert names(tmp_path) == ["cases.csv"] and names(tmp_path / "processing") == []
    second = adapter(tmp_path, encoding="gbk")
    assert [r.data for r in second.fetch(None)] == before


def test_a_reused_export_name_does_not_overwrite_yesterdays_file(tmp_path):
    for day in (1, 2):
        path = tmp_path / "cases.csv"
        path.write_text(f"办件编号\nWJ{day}\n", encoding="utf-8")
        age(path)
        source = adapter(tmp_path)
        list(source.fetch(None))
        source.commit()
    assert len(names(tmp_path / "done")) == 2


def test_files_left_in_processing_by_a_crash_are_reclaimed(tmp_path):
    (tmp_path / "processing").mkdir()
    (tmp_path / "processing" / "orphan.csv").write_text("办件编号\nWJ9\n", encoding="utf-8")
    later = time.time() + 7200
    source = FileDropAdapter(SYSTEM, {"directory": str(tmp_path), "stable_seconds": 0, "reclaim_after_seconds": 3600},
                             clock=lambda: later)
    assert [r.data["办件编号"] for r in source.fetch(None)] == ["WJ9"]


def test_missing_inbox_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list(adapter(tmp_path / "nope").fetch(None))


def test_configuration_mistakes_raise_at_once_instead_of_failing_every_file(tmp_path):
    with pytest.raises(SourceError, match="encoding 'big5' is not supported"):
        adapter(tmp_path, encoding="big5")
    with pytest.raises(SourceError, match="format 'dbf' is not supported"):
        adapter(tmp_path, format="dbf")


def test_a_file_that_grows_between_scan_and_claim_is_left_for_the_next_run(tmp_path, monkeypatch):
    path = tmp_path / "growing.csv"
    path.write_text("办件编号\nWJ1\n", encoding="utf-8")
    age(path)
    scan = FileDropAdapter._ready

    def scan_then_exporter_appends(self):
        ready = scan(self)
        with open(path, "a", encoding="utf-8") as out:  # the exporter is still writing
            out.write("WJ2\n")
        return ready

    monkeypatch.setattr(FileDropAdapter, "_ready", scan_then_exporter_appends)
    source = adapter(tmp_path)
    assert list(source.fetch(None)) == []
    assert source.waiting_files == ["growing.csv"] and path.exists()


# --- declared settings (issue 12 contract) -------------------------------------------------------------------

def test_settings_model_declares_every_setting_and_the_shipped_mapping_validates(monkeypatch, tmp_path):
    from adapters.files_settings import FileDropSettings
    from tongban.mapping import load_mapping

    assert FileDropAdapter.settings_model is FileDropSettings
    schema = FileDropSettings.model_json_schema()
    assert schema["additionalProperties"] is False
    assert all(prop.get("description") for prop in schema["properties"].values())
    for limit in ("max_row_bytes", "max_columns", "max_json_depth", "max_xlsx_bytes", "max_xlsx_rows"):
        assert "default" in schema["properties"][limit]
    monkeypatch.setenv("CQ_WSJKW_DROP", str(tmp_path))
    source = dict(load_mapping(Path(__file__).resolve().parents[2] / "mappings" / "cq-wsjkw-files.yaml").source)
    declared = FileDropSettings.model_validate({k: v for k, v in source.items() if k != "adapter"})
    assert declared.tag == "Case" and declared.encoding == "auto"
    FileDropAdapter(SYSTEM, source)  # the `adapter` key itself is not a setting, and is accepted


@pytest.mark.parametrize("settings,message", [
    ({"stable_secs": 5}, "source setting 'stable_secs' is not a setting of the files adapter"),
    ({"stable_seconds": "soon"}, "source setting 'stable_seconds'"),
    ({"csv": {"delimeter": ";"}}, "source setting 'csv.delimeter' is not a setting"),
    ({"max_row_bytes": 0}, "source setting 'max_row_bytes'"),
    ({"record_tag": "Case", "xml_record_tag": "Record"}, "disagree"),
    ({"pattern": "../*.csv"}, "source setting 'pattern': '../\\*.csv' must name files directly in the drop folder"),
    ({"pattern": "**/*.csv"}, "source setting 'pattern'"),
    ({"ready_marker": "../ok"}, "source setting 'ready_marker'"),
])
def test_a_wrong_setting_is_a_source_error_naming_it(tmp_path, settings, message):
    with pytest.raises(SourceError, match=message):
        adapter(tmp_path, **settings)
    with pytest.raises(SourceError, match="source setting 'directory' is required"):
        FileDropAdapter(SYSTEM, {"pattern": "*.csv"})


def test_xml_text_beside_attributes_is_kept_not_dropped(tmp_path):
    path = tmp_path / "cases.xml"
    path.write_text('<Export><Rec no="1"><BJBH>WJ1</BJBH><Fee currency="CNY">12.50</Fee></Rec></Export>',
                    encoding="utf-8")
    age(path)
    [record] = adapter(tmp_path, record_tag="Rec").fetch(None)
    assert record.data == {"no": "1", "BJBH": "WJ1", "Fee": {"currency": "CNY", "#text": "12.50"}}


def test_record_tag_is_the_xml_record_element(tmp_path):
    path = tmp_path / "cases.xml"
    path.write_text("<Export><Rec><BJBH>WJ1</BJBH></Rec><Rec><BJBH>WJ2</BJBH></Rec></Export>", encoding="utf-8")
    age(path)
    assert [r.data["BJBH"] for r in adapter(tmp_path, record_tag="Rec").fetch(None)] == ["WJ1", "WJ2"]
