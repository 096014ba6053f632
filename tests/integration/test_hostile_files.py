"""Hostile file drops (issue 20): links out of the drop folder, zip bombs, endless rows, poison file names.

Each probe is bounded in time and size and runs on 127.0.0.1 (the mock platform numbers the cases). The promise:
a clear reason in failed/ and in quarantine, nothing read from outside the drop folder, nothing unbounded kept,
no traceback, the other files go on, and the ledger stays intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.base import SourceError
from adapters.files import FileDropAdapter
from sandbox.filedrop import HEADER, SYSTEM
from tongban.audit import ledger
from tongban.operator import quarantine as q
from tongban.bus.local import LocalBus
from tongban.bus.topology import cases_work
from tongban.pipeline.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.platform.client import PlatformClient
from tongban.settings import load
from tongban.store import open_store
from tongban.store.at_rest import reveal
from tongban.store.tables import quarantine as quarantine_table

pytestmark = pytest.mark.timeout(60)

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "cq-wsjkw-files.yaml"
SECRET_LINE = "WJ-OUTSIDE-0001,this line lives outside the drop folder"


def age(*paths: Path) -> None:
    past = time.time() - 600
    for path in paths:
        os.utime(path, (past, past), follow_symlinks=False)


def adapter(inbox: Path, **settings) -> FileDropAdapter:
    return FileDropAdapter(SYSTEM, {"directory": str(inbox), "stable_seconds": 30, **settings})


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def good_csv(path: Path, key: str) -> Path:
    row = [key, "WJ-YZ-001", "张伟", "居民身份证", "11010519491231002X", "500101", "2024/03/05 14:22", "", "", "", ""]
    path.write_bytes((",".join(HEADER) + "\r\n" + ",".join(row) + "\r\n").encode("utf-8"))
    age(path)
    return path


@pytest.fixture
def drop(tmp_path, sandbox_env, monkeypatch):
    folder = tmp_path / "drop"
    folder.mkdir()
    monkeypatch.setenv("CQ_WSJKW_DROP", str(folder))
    return folder


def ingest(store):
    return run_ingest(load_mapping(MAPPING), store=store, bus=LocalBus(store), platform=PlatformClient(load()),
                      work=cases_work("hostile"))


def stored_quarantine(store) -> list[dict]:
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(quarantine_table.select()).mappings()]
    for row in rows:
        row["record"] = reveal(row["record"])
    return rows


# --- confinement -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["outside", "/etc/passwd"])
def test_a_symlink_out_of_the_drop_folder_is_never_read(drop, tmp_path, target):
    store = open_store(load().db_url)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(",".join(HEADER) + "\n" + SECRET_LINE + "\n", encoding="utf-8")
    link = drop / "wsjkw_cases_link.csv"
    link.symlink_to(outside if target == "outside" else target)
    age(link)
    good_csv(drop / "wsjkw_cases_good.csv", "WJ-GOOD-1")
    report = ingest(store)
    assert report.fetched == 1 and report.events_published > 0  # the real export went on
    assert names(drop / "failed") == ["wsjkw_cases_link.csv", "wsjkw_cases_link.csv.reason.txt"]
    assert (drop / "failed" / "wsjkw_cases_link.csv").is_symlink()  # the link itself was moved, not its target
    assert "symbolic link" in (drop / "failed" / "wsjkw_cases_link.csv.reason.txt").read_text(encoding="utf-8")
    rows = stored_quarantine(store)
    assert [r["stage"] for r in rows] == ["file"] and "symbolic link" in rows[0]["rule"]
    everything = json.dumps(rows, ensure_ascii=False) + json.dumps(ledger.iter_events(store), ensure_ascii=False)
    assert "WJ-OUTSIDE-0001" not in everything and "root:" not in everything
    assert ledger.verify(store).ok


def test_a_link_swapped_in_after_the_claim_is_not_read(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("办件编号\n" + SECRET_LINE + "\n", encoding="utf-8")
    inbox = tmp_path / "drop"
    inbox.mkdir()
    good = inbox / "cases.csv"
    good.write_text("办件编号\nWJ1\n", encoding="utf-8")
    age(good)
    source = adapter(inbox)
    claim = FileDropAdapter._claim

    def claim_then_swap(self, entry):
        claimed = claim(self, entry)
        (inbox / "processing" / claimed).unlink()
        (inbox / "processing" / claimed).symlink_to(outside)  # the department's side races us
        return claimed

    monkeypatch.setattr(FileDropAdapter, "_claim", claim_then_swap)
    assert list(source.fetch(None)) == []
    assert source.failed_files == [("cases.csv", "a symbolic link, not a regular file: not read")]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "cases.csv")
    source = adapter(tmp_path, stable_seconds=0)
    assert list(source.fetch(None)) == []
    assert "not a regular file" in source.failed_files[0][1]


def test_done_folder_that_is_a_link_elsewhere_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    inbox = tmp_path / "drop"
    inbox.mkdir()
    (inbox / "done").symlink_to(elsewhere)
    with pytest.raises(SourceError, match="never leaves the drop folder"):
        list(adapter(inbox).fetch(None))


# --- bounds --------------------------------------------------------------------------------------------------

def test_an_xlsx_zip_bomb_is_refused_from_its_zip_directory(tmp_path, monkeypatch):
    bomb = tmp_path / "cases.xlsx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            chunk = b"0" * (1 << 20)
            for _ in range(300):  # 300 MiB that compress to about 300 KB
                sheet.write(chunk)
    assert bomb.stat().st_size < 1024 * 1024
    age(bomb)
    opened = []  # the members anything opened to inflate
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: (
        opened.append(getattr(name, "filename", name)), real_open(self, name, *a, **k))[1])
    source = adapter(tmp_path)
    assert list(source.fetch(None)) == []
    assert "xl/worksheets/sheet1.xml" not in opened  # refused from the directory, never inflated
    [(name, reason)] = source.failed_files
    assert name == "cases.xlsx" and "over max_xlsx_bytes 268435456" in reason and "zip bomb" in reason


def test_xlsx_rows_beyond_the_limit_are_reported_not_read(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["办件编号"])
    for n in range(30):
        sheet.append([f"WJ{n}"])
    book.save(tmp_path / "cases.xlsx")
    age(tmp_path / "cases.xlsx")
    records = list(adapter(tmp_path, max_xlsx_rows=10).fetch(None))
    assert len([r for r in records if not r.error]) == 10
    assert "more than max_xlsx_rows 10" in records[-1].error


def test_a_csv_line_of_a_huge_field_count_is_capped(drop):
    store = open_store(load().db_url)
    path = drop / "wsjkw_cases_wide.csv"
    row = ["WJ-GOOD-2", "WJ-YZ-001", "张伟", "居民身份证", "11010519491231002X", "500101", "2024/03/05 14:22",
           "", "", "", ""]
    with open(path, "wb") as out:
        out.write((",".join(HEADER) + "\r\n").encode("utf-8"))
        out.write(b"," * 300_000 + b"\r\n")            # 300,001 fields: under max_row_bytes, over max_columns
        out.write(b"x," * 2_000_000 + b"\r\n")          # 4 MB: over max_row_bytes, skipped unread
        out.write((",".join(row) + "\r\n").encode("utf-8"))
    age(path)
    report = ingest(store)
    assert report.fetched == 3 and report.quarantined == 2 and report.events_published > 0
    reasons = sorted(r["rule"] for r in stored_quarantine(store))
    assert "300001 fields, over max_columns 1000" in reasons[0]
    assert "longer than max_row_bytes 1048576" in reasons[1]
    assert all(len(r["record"] or "") < 10_000 for r in stored_quarantine(store))  # excerpts, not the rows


def test_deep_jsonl_nesting_is_a_damaged_record_not_a_recursion_error(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n" + '{"办件编号": "WJ1"}\n', encoding="utf-8")
    age(path)
    records = list(adapter(tmp_path).fetch(None))
    assert "nested more than max_json_depth 64" in records[0].error
    assert records[1].data == {"办件编号": "WJ1"}


def test_deep_xml_is_refused_with_a_clear_reason(tmp_path):
    path = tmp_path / "cases.xml"
    path.write_text("<Export><Case>" + "<a>" * 5000 + "</a>" * 5000 + "</Case></Export>", encoding="utf-8")
    age(path)
    source = adapter(tmp_path, record_tag="Case")
    assert list(source.fetch(None)) == []
    assert "not well-formed XML" in source.failed_files[0][1]


def test_quarantine_stores_a_truncated_record_with_its_digest(sqlite_store, monkeypatch):
    monkeypatch.setenv("TONGBAN_QUARANTINE_MAX_RECORD_BYTES", "4096")
    record = {"_row": ["字" * 50_000]}
    whole = json.dumps(record, ensure_ascii=False).encode("utf-8")
    with sqlite_store.write() as conn:
        q.add(conn, q.QuarantineEntry(SYSTEM, None, "read", "too long", None, "x.csv line 2", record))
    [row] = stored_quarantine(sqlite_store)
    assert len(row["record"].encode("utf-8")) <= 4096
    kept = json.loads(row["record"])
    assert kept["truncated"] is True and kept["original_bytes"] == len(whole)
    assert kept["sha256"] == hashlib.sha256(whole).hexdigest() and whole.decode("utf-8").startswith(kept["head"])


# --- poison names --------------------------------------------------------------------------------------------

def test_a_file_name_that_is_not_utf8_goes_to_failed_and_the_others_go_on(drop):
    store = open_store(load().db_url)
    poison = os.path.join(os.fsencode(drop), b"wsjkw_cases_\xff\xfe.csv")
    with open(poison, "wb") as out:
        out.write(",".join(HEADER).encode("utf-8") + b"\r\n")
    os.utime(poison, (time.time() - 600,) * 2)
    good_csv(drop / "wsjkw_cases_good.csv", "WJ-GOOD-3")
    report = ingest(store)
    assert report.fetched == 1 and report.events_published > 0
    assert report.failed_files == ["wsjkw_cases_\\xff\\xfe.csv: the file name is not valid UTF-8 (the exporter's "
                                   "encoding?); rename the file and drop it again"]
    failed = os.listdir(os.fsencode(drop / "failed"))
    assert b"wsjkw_cases_\xff\xfe.csv" in failed and b"wsjkw_cases_\\xff\\xfe.csv.reason.txt" in failed
    [row] = stored_quarantine(store)
    assert row["stage"] == "file" and row["position"] == "wsjkw_cases_\\xff\\xfe.csv"
    assert ledger.count_by_hop(store)["quarantined"] == 1
    result = CliRunner().invoke(_app(), ["audit", "verify"])
    assert result.exit_code == 0 and "ledger intact" in result.output
    # The next run is not stalled by it: the poison file does not come back.
    assert ingest(store).fetched == 0


def test_a_newline_or_ansi_escape_in_a_file_name_cannot_fake_trace_lines(drop):
    store = open_store(load().db_url)
    evil = "wsjkw_cases_x\n  #1 2024-01-01 00:00:00.000  delivered  FAKE\x1b[31m.csv"
    good_csv(drop / evil, "WJ-EVIL-1")
    report = ingest(store)
    assert report.events_published > 0
    result = CliRunner().invoke(_app(), ["trace", "WJ-EVIL-1"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "wsjkw_cases_x\\n  #1 2024-01-01" in result.output and "FAKE\\x1b[31m.csv" in result.output
    assert not any(line.lstrip().startswith("#1 2024-01-01") for line in result.output.splitlines())


def _app():
    from tongban.cli import app

    return app


# --- fuzz: the record readers ------------------------------------------------------------------------------------

_PIECES = [b",", b'"', b"\n", b"\r\n", b"\r", b"{", b"}", b"[", b"]", b":", b'"a"', b'"\\udcff"', b"<Case>",
           b"</Case>", b"<Export>", b"</Export>", b"<a x='1'>", b"</a>", b"<!DOCTYPE x>", b"<!ENTITY e 'x'>", b"&e;",
           b"\xff", b"\xfe\x00", b"\x00", "办件编号".encode(), "张伟".encode("gbk"), b"\xef\xbb\xbf", b"\\", b"1",
           b"null", b" ", b"\t", b"x" * 300]


def _fuzz_bytes():
    from hypothesis import strategies as st

    return st.one_of(st.binary(max_size=3000), st.lists(st.sampled_from(_PIECES), max_size=300).map(b"".join))


def test_readers_yield_records_or_reasons_and_never_crash():
    """CSV, JSONL and XML bytes of any shape give records, per-record reasons, or FileUnreadable — nothing else;
    and whatever they give can be stored in quarantine."""
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from adapters.formats import FileUnreadable, ReadOptions, reader_for

    @given(data=_fuzz_bytes(), fmt=st.sampled_from(["csv", "jsonl", "xml"]),
           encoding=st.sampled_from(["utf-8", "auto", "gb18030"]))
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def check(data, fmt, encoding):
        options = ReadOptions(encoding=encoding, xml_record_tag="Case", max_row_bytes=600, max_columns=40,
                              max_json_depth=6, max_field_bytes=256)
        with tempfile.TemporaryFile() as stream:
            stream.write(data)
            stream.seek(0)
            try:
                rows = list(reader_for(fmt)(stream, options))
            except FileUnreadable as exc:
                assert str(exc)
                return
        for location, record, error in rows:
            assert isinstance(location, str) and isinstance(record, dict)
            assert error is None or (isinstance(error, str) and error)
            stored = q.stored_record(record, max_bytes=1024)
            stored.encode("utf-8")  # storable whatever the input held
            assert len(stored.encode("utf-8")) <= 1024 or len(stored) * 4 <= 1024

    check()


def test_markup_in_a_file_name_cannot_break_quarantine_list(drop):
    store = open_store(load().db_url)
    evil = drop / "wsjkw_cases_[bold red]x\x1b[2J.csv"
    evil.symlink_to("/etc/passwd")
    age(evil)
    ingest(store)
    result = CliRunner().invoke(_app(), ["quarantine", "list"])
    assert result.exit_code == 0, result.output
    assert "[bold red]x\\x1b[2J.csv" in result.output and "\x1b" not in result.output


def test_quarantined_records_are_written_as_they_arrive(drop):
    from adapters.base import Adapter, RawRecord

    store = open_store(load().db_url)
    seen_in_store: list[int] = []

    class Damaged(Adapter):
        kind = "damaged"

        def fetch(self, watermark):
            for n in range(1, 351):
                if n % 100 == 1 and n > 1:
                    with store.read() as conn:
                        seen_in_store.append(len(conn.execute(quarantine_table.select()).all()))
                yield RawRecord(data={"办件编号": f"WJ{n}"}, position=f"x.csv line {n}", error="damaged row")

    report = run_ingest(load_mapping(MAPPING), store=store, bus=LocalBus(store), platform=PlatformClient(load()),
                        adapter=Damaged(SYSTEM, {}), work=cases_work("hostile"))
    assert report.quarantined == 350
    # In the store while the run goes on, not held until its end: the ingest reads a window ahead of what it has
    # handled (tongban.pipeline.lookahead), so the count trails the adapter by a window, never by the whole run.
    assert seen_in_store == sorted(seen_in_store) and seen_in_store[-1] >= 200


def test_an_unreadable_file_is_failed_and_the_run_goes_on(tmp_path, monkeypatch):
    import adapters.files as files_module

    locked = tmp_path / "a_locked.csv"
    locked.write_text("办件编号\nWJ1\n", encoding="utf-8")
    good = tmp_path / "b_good.csv"
    good.write_text("办件编号\nWJ2\n", encoding="utf-8")
    age(locked, good)
    real_open = files_module.open_file

    def open_file(path):  # what a file with mode 000 gives a non-root account
        if path.name == "a_locked.csv":
            raise PermissionError(13, "Permission denied")
        return real_open(path)

    monkeypatch.setattr(files_module, "open_file", open_file)
    source = adapter(tmp_path)
    assert [r.data["办件编号"] for r in source.fetch(None)] == ["WJ2"]
    assert source.failed_files == [("a_locked.csv", "cannot be opened: Permission denied")]


def test_an_endless_xml_record_is_cut_at_its_bound(tmp_path):
    path = tmp_path / "cases.xml"
    with open(path, "w", encoding="utf-8") as out:
        out.write("<Export><Case><BJBH>WJ1</BJBH></Case><Case><BJBH>WJ2</BJBH></Case><Case>")
        for n in range(40_000):  # one record of about 1 MB of small elements, never closed in time
            out.write(f"<x>{n}</x>")
        out.write("</Case><Case><BJBH>WJ4</BJBH></Case></Export>")
    age(path)
    records = list(adapter(tmp_path, record_tag="Case", max_xml_record_bytes=200_000).fetch(None))
    assert [r.data.get("BJBH") for r in records[:2]] == ["WJ1", "WJ2"]
    assert records[2].error and "one record is larger than 200000 bytes" in records[2].error
    assert len(records) == 3  # the rest was not read, and says so
