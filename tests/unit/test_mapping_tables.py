"""Lookup tables declare their encoding and stay beside their mapping file: everything through `tongban mapping check`,
every refusal one line naming the mapping file, its line and the table (never a traceback)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongban.cli import app
from tongban.mapping import MappingFileError, load_mapping
from tongban.mapping import tables as tables_module

REPO = Path(__file__).resolve().parents[2]
SAMR = REPO / "mappings" / "cq-samr-rest.yaml"
TABLE_DECL = "items: tables/samr_items.csv"
runner = CliRunner()


def _mapping(folder: Path, table_decl: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.yaml"
    path.write_text(SAMR.read_text(encoding="utf-8").replace(TABLE_DECL, table_decl), encoding="utf-8")
    return path


def _decl_line(path: Path) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip().startswith("items:"))


def _check(path: Path, *more: str):
    result = runner.invoke(app, ["mapping", "check", str(path), *more])
    assert "Traceback" not in result.output
    return result


ROWS = "legacy_code,implementation_code,name,item_type\nSX-0001,11500000MB1B75012N2500129001000,食品经营许可,01\n"


def _sample(tmp_path: Path) -> Path:
    record = {"ywh": "SB1", "sxbm": "SX-0001", "sqrxm": "张三", "zjlx": "SFZ", "zjhm": "11010519491231002X",
              "xzqh": "500103", "sqsj": "2024-03-01 09:30:00", "bjlx": "1", "gxsj": "2024-03-01 09:30:00"}
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps([record], ensure_ascii=False), encoding="utf-8")
    return sample


def test_a_gb18030_table_declared_as_such_maps(tmp_path):
    (tmp_path / "m" / "tables").mkdir(parents=True)
    (tmp_path / "m" / "tables" / "items.csv").write_bytes(ROWS.encode("gb18030"))
    path = _mapping(tmp_path / "m", "items: {path: tables/items.csv, encoding: gb18030}")
    assert load_mapping(path).tables["items"][0]["name"] == "食品经营许可"
    result = _check(path, "--sample", str(_sample(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "1 records: 1 mapped, 0 with errors" in result.output


def test_a_gb18030_table_read_as_utf8_names_the_table_line_and_says_how_to_declare_it(tmp_path):
    (tmp_path / "m" / "tables").mkdir(parents=True)
    (tmp_path / "m" / "tables" / "items.csv").write_bytes(ROWS.encode("gb18030"))
    path = _mapping(tmp_path / "m", "items: tables/items.csv")
    result = _check(path)
    assert result.exit_code == 1
    assert (f"{path}:{_decl_line(path)}: table items: tables/items.csv line 2 is not utf-8" in result.output
            and "encoding: gb18030" in result.output)


def test_a_utf8_table_with_a_bom_and_an_unknown_encoding(tmp_path):
    (tmp_path / "m" / "tables").mkdir(parents=True)
    (tmp_path / "m" / "tables" / "items.csv").write_bytes(b"\xef\xbb\xbf" + ROWS.encode("utf-8"))
    path = _mapping(tmp_path / "m", "items: tables/items.csv")
    assert load_mapping(path).table_columns["items"][0] == "legacy_code"  # the BOM is not part of the header
    path = _mapping(tmp_path / "m", "items: {path: tables/items.csv, encoding: gb-18030x}")
    result = _check(path)
    assert result.exit_code == 1 and "table items: unknown encoding 'gb-18030x'" in result.output
    path = _mapping(tmp_path / "m", "items: {path: tables/items.csv, encodng: gbk}")
    result = _check(path)
    assert result.exit_code == 1 and "table items: unknown key 'encodng'" in result.output


def test_a_lookup_column_the_table_lacks_is_named(tmp_path):
    (tmp_path / "m" / "tables").mkdir(parents=True)
    (tmp_path / "m" / "tables" / "items.csv").write_text("code,implementation_code\n", encoding="utf-8")
    path = _mapping(tmp_path / "m", "items: tables/items.csv")
    result = _check(path)
    assert result.exit_code == 1
    assert "lookup: table items has no column 'legacy_code' (columns: code, implementation_code)" in result.output


@pytest.mark.parametrize("decl, expected", [
    pytest.param("items: ../../../../../../etc/passwd", "leads outside the mapping file's folder", id="climbs-out"),
    pytest.param("items: /etc/passwd", "is an absolute path", id="absolute"),
    pytest.param("items: {path: /dev/zero}", "is an absolute path", id="absolute-in-long-form"),
    pytest.param("items: tables/missing.csv", "no such file", id="missing"),
])
def test_table_paths_stay_under_the_mapping_folder(tmp_path, decl, expected):
    path = _mapping(tmp_path / "a" / "b", decl)
    result = _check(path)
    assert result.exit_code == 1
    assert f"{path}:{_decl_line(path)}: table items:" in result.output and expected in result.output
    assert "root:" not in result.output  # nothing of /etc/passwd is read, let alone printed


def test_a_symlink_out_of_the_folder_is_refused_and_one_inside_is_followed(tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(ROWS, encoding="utf-8")
    (tmp_path / "m" / "tables").mkdir(parents=True)
    os.symlink(outside, tmp_path / "m" / "tables" / "items.csv")
    path = _mapping(tmp_path / "m", "items: tables/items.csv")
    result = _check(path)
    assert result.exit_code == 1 and "leads outside the mapping file's folder" in result.output
    (tmp_path / "m" / "tables" / "items.csv").unlink()
    shutil.copy(outside, tmp_path / "m" / "real.csv")
    os.symlink(tmp_path / "m" / "real.csv", tmp_path / "m" / "tables" / "items.csv")
    assert _check(path).exit_code == 0


def test_a_fifo_a_folder_and_an_oversized_table_are_refused(tmp_path, monkeypatch):
    (tmp_path / "m" / "tables").mkdir(parents=True)
    os.mkfifo(tmp_path / "m" / "tables" / "fifo.csv")  # opening it blocking would hang: it must not be waited on
    path = _mapping(tmp_path / "m", "items: tables/fifo.csv")
    result = _check(path)
    assert result.exit_code == 1 and "is not a regular file" in result.output
    path = _mapping(tmp_path / "m", "items: tables")
    assert "is not a regular file" in _check(path).output
    (tmp_path / "m" / "tables" / "big.csv").write_text(ROWS * 50, encoding="utf-8")
    monkeypatch.setattr(tables_module, "MAX_TABLE_BYTES", 1000)
    path = _mapping(tmp_path / "m", "items: tables/big.csv")
    result = _check(path)
    assert result.exit_code == 1 and "is larger than 1000 bytes" in result.output


def test_a_damaged_csv_table_names_its_line(tmp_path):
    (tmp_path / "m" / "tables").mkdir(parents=True)
    (tmp_path / "m" / "tables" / "items.csv").write_bytes(ROWS.encode() + b"SX-2," + b"x" * 200_000 + b"\n")
    path = _mapping(tmp_path / "m", "items: tables/items.csv")
    with pytest.raises(MappingFileError) as caught:
        load_mapping(path)
    assert "line 3: not readable CSV (field larger than field limit" in caught.value.rule
    assert caught.value.line == _decl_line(path)


def test_another_record_kind_reuses_the_loader_tables_and_field_rules(tmp_path):
    """The same language for a ministry batch (issue 13): its own sections, a GB18030 table, the field rules."""
    from types import SimpleNamespace

    from tongban.mapping import MappingError, read_mapping_document
    from tongban.mapping.engine import FieldRule
    from tongban.mapping.tables import load_tables

    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "towns.csv").write_bytes("code,county\n500222001,500110\n".encode("gb18030"))
    path = tmp_path / "batch.yaml"
    path.write_text("source: {adapter: files, directory: '${BATCH_DIR:-drops}'}\n"
                    "tables: {towns: {path: tables/towns.csv, encoding: gb18030}}\n"
                    "fields:\n"
                    "  ROWGUID: {path: WYBS, required: true}\n"
                    "  AREACODE: {path: XZQH, transform: region}\n", encoding="utf-8")
    doc, _refs = read_mapping_document(path, top_keys={"source", "tables", "fields"}, required=("source", "fields"))
    tables, columns, _specs = load_tables(doc, path)
    owner = SimpleNamespace(path_text=str(path), tables=tables, table_columns=columns)
    rules = [FieldRule(name, spec, doc["fields"].key_lines[name], owner) for name, spec in doc["fields"].items()]
    ctx: dict = {}
    assert {r.name: r.value({"WYBS": "g-1", "XZQH": "500222"}, ctx) for r in rules} == {"ROWGUID": "g-1",
                                                                                       "AREACODE": "500110"}
    assert ctx["notes"] == ["region: retired region code 500222 rewritten to its successor 500110 (綦江区)"]
    assert doc["source"]["directory"] == "drops" and tables["towns"][0]["county"] == "500110"
    try:
        rules[0].value({}, {})
    except ValueError as exc:
        error = rules[0].error("row 7", "ROWGUID", exc)
    assert isinstance(error, MappingError) and str(error) == "record row 7: field ROWGUID (WYBS): required: value is " \
                                                            "missing (mapping line 4)"
