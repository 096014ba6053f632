"""Mock file exports of 市卫生健康委 (system `cq-wsjkw-files`), the way such departments drop them.

`write_exports(directory, seed)` writes one day's drop:

- `wsjkw_cases_<date>.csv`  — GBK, Chinese header row, dates like `2024/03/05 14:22`, plus a few damaged rows
  (too few columns, undecodable bytes, a NUL byte) that the adapter must quarantine by line number;
- `wsjkw_cases_<date>.xml`  — a larger UTF-8 XML export with pinyin-abbreviated elements (BJBH = 办件编号 …);
- `wsjkw_cases_<date>.xlsx` — the same columns in a workbook with real date cells.

Validation-level faults (a 证件号码 with a wrong check digit, an item code missing from the code table) are
in all three, listed in the returned `DropManifest` so tests can expect them.

`write_large_csv` / `write_large_xml` write 100k–1M-row files quickly (a pool of rows, renumbered) for benchmarks.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

from sandbox.legacy_soap import CHONGQING_REGIONS, company_code, company_name, person_id, person_name, spoil_check_char

SYSTEM = "cq-wsjkw-files"
HEADER = ["办件编号", "事项编码", "申请人", "证件类型", "证件号码", "行政区划", "申请时间", "受理时间", "办结时间",
          "办结结果", "更新时间"]
# Element names of the XML export: pinyin initials of the Chinese headers, as such exports usually have.
XML_FIELDS = ["BJBH", "SXBM", "SQR", "ZJLX", "ZJHM", "XZQH", "SQSJ", "SLSJ", "BJSJ", "BJJG", "GXSJ"]
ITEMS = {
    "WJ-YZ-001": "医师执业注册",
    "WJ-YZ-002": "护士执业注册",
    "WJ-YL-010": "医疗机构执业登记",
    "WJ-GW-021": "公共场所卫生许可",
    "WJ-FY-033": "母婴保健技术服务执业许可",
}
UNKNOWN_ITEM = "WJ-XX-999"
CERT_PERSON = "居民身份证"
CERT_COMPANY = "统一社会信用代码"
RESULTS = ["准予许可", "准予许可", "准予许可", "不予许可", "撤回"]


@dataclass
class DropManifest:
    files: list[Path] = field(default_factory=list)
    csv_damaged_lines: dict[int, str] = field(default_factory=dict)  # line number → what is wrong
    bad_records: dict[str, str] = field(default_factory=dict)        # 办件编号 → validation fault (quarantined)
    # 办件编号 → a registered credit code failing its checksum: flagged in the ledger but kept (standards.md)
    flagged_records: dict[str, str] = field(default_factory=dict)


def _time(value: datetime | None) -> str:
    return value.strftime("%Y/%m/%d %H:%M") if value else ""


START = datetime(2024, 3, 1, 8, 0)


def wsjkw_rows(seed: int, count: int, bad: dict[str, str] | None = None, *, series: str = "",
               as_of: datetime | None = None, changed_after: datetime | None = None,
               flagged: dict[str, str] | None = None) -> Iterator[list[str]]:
    """Deterministic rows in HEADER order; validation faults are noted in `bad`.

    `series` goes into every 办件编号 (`WJ<series><date><n>`) so that exports generated from different seeds
    never reuse a case number. `as_of` exports the system as it was at that moment (cases keyed in later are
    absent, later acceptance/conclusion blank, 更新时间 the last visible change); `changed_after` keeps only
    the rows whose 更新时间 is later — a day's incremental export. Both default to everything, final state.
    """
    rng = random.Random(seed)
    flagged = {} if flagged is None else flagged
    clock = START
    items = sorted(ITEMS)
    for i in range(count):
        # Every random draw happens for every row, so a filtered export shows the same cases as a full one.
        clock += timedelta(minutes=rng.randrange(1, 60))
        region = rng.choice(CHONGQING_REGIONS)
        company = rng.random() < 0.3
        case_no = f"WJ{series}{clock:%Y%m%d}{i:06d}"
        cert_no = company_code(rng, region) if company else person_id(rng, region)
        item = rng.choice(items)
        applied = clock - timedelta(hours=rng.randrange(1, 48))
        accepted = applied + timedelta(minutes=rng.randrange(10, 300)) if rng.random() > 0.1 else None
        finished = accepted + timedelta(hours=rng.randrange(2, 240)) if accepted and rng.random() > 0.4 else None
        fault = None
        if i % 101 == 17:
            cert_no = spoil_check_char(cert_no)
            fault = "证件号码 check digit"
        elif i % 113 == 29:
            item = UNKNOWN_ITEM
            fault = "unknown 事项编码"
        name = company_name(rng) if company else person_name(rng)
        result = rng.choice(RESULTS) if finished else ""
        if as_of is not None:
            if clock > as_of:
                continue
            if finished and finished > as_of:
                finished, result = None, ""
            if accepted and accepted > as_of:
                accepted = None
        updated = max(filter(None, (clock, accepted, finished)))
        if changed_after is not None and updated <= changed_after:
            continue
        if fault and bad is not None:
            if company and fault.startswith("证件号码"):
                flagged[case_no] = "统一社会信用代码 checksum fails (flagged, kept)"
            else:
                bad[case_no] = fault
        yield [case_no, item, name, CERT_COMPANY if company else CERT_PERSON, cert_no, region, _time(applied),
               _time(accepted), _time(finished), result, _time(updated)]


def _csv_line(values: list[str]) -> str:
    return ",".join(f'"{v}"' if ("," in v or '"' in v) else v for v in values) + "\r\n"


def write_csv(path: Path, seed: int, rows: int, manifest: DropManifest | None = None, **view) -> Path:
    """GBK CSV with CRLF lines, Chinese header, and damaged rows at fixed places (noted in the manifest).
    `view`: series / as_of / changed_after, as for wsjkw_rows."""
    manifest = manifest or DropManifest()
    with open(path, "wb") as out:
        out.write(_csv_line(HEADER).encode("gbk"))
        line = 1
        for index, row in enumerate(wsjkw_rows(seed, rows, manifest.bad_records, flagged=manifest.flagged_records, **view)):
            line += 1
            data = _csv_line(row).encode("gbk")
            if index in (5, 11, 23):
                # a damaged row's case cannot be read: it is not a validation fault of that case
                manifest.bad_records.pop(row[0], None)
                manifest.flagged_records.pop(row[0], None)
            if index == 5:
                data = _csv_line(row[:7]).encode("gbk")
                manifest.csv_damaged_lines[line] = "too few columns"
            elif index == 11:
                data = data.replace(b",", b",\xff\xfe", 1)  # a byte pair GBK cannot decode
                manifest.csv_damaged_lines[line] = "undecodable bytes"
            elif index == 23:
                data = data.replace(b",", b",\x00", 1)
                manifest.csv_damaged_lines[line] = "NUL byte"
            out.write(data)
    return path


def _xml_record(values: list[str]) -> str:
    from xml.sax.saxutils import escape

    return "<Case>" + "".join(f"<{n}>{escape(v)}</{n}>" for n, v in zip(XML_FIELDS, values)) + "</Case>\n"


def write_xml(path: Path, seed: int, rows: int, manifest: DropManifest | None = None, **view) -> Path:
    manifest = manifest or DropManifest()
    with open(path, "w", encoding="utf-8") as out:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<Export system="{SYSTEM}" count="{rows}">\n<Cases>\n')
        for row in wsjkw_rows(seed, rows, manifest.bad_records, flagged=manifest.flagged_records, **view):
            out.write(_xml_record(row))
        out.write("</Cases>\n</Export>\n")
    return path


def write_xlsx(path: Path, seed: int, rows: int, manifest: DropManifest | None = None, **view) -> Path:
    from openpyxl import Workbook

    manifest = manifest or DropManifest()
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("办件")
    sheet.append(HEADER)
    for row in wsjkw_rows(seed, rows, manifest.bad_records, flagged=manifest.flagged_records, **view):
        # Excel exports carry real date cells, not text.
        sheet.append([datetime.strptime(v, "%Y/%m/%d %H:%M") if i in (6, 7, 8, 10) and v else (v or None)
                      for i, v in enumerate(row)])
    workbook.save(path)
    return path


def write_exports(directory: str | Path, seed: int, *, rows: int = 300, xml_rows: int = 2000,
                  xlsx_rows: int = 200, day: str = "20240401", as_of: datetime | None = None,
                  changed_after: datetime | None = None) -> DropManifest:
    """One day's drop of the three exports into `directory`; returns what was written and what is wrong in it.

    The three files hold different cases (series C, X and S in the 办件编号). With `as_of` / `changed_after`
    (see wsjkw_rows) successive drops show the same cases progressing: the sandbox writes one per day.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = DropManifest()
    view = {"as_of": as_of, "changed_after": changed_after}
    manifest.files.append(write_csv(directory / f"wsjkw_cases_{day}.csv", seed, rows, manifest, series="C", **view))
    manifest.files.append(write_xml(directory / f"wsjkw_cases_{day}.xml", seed + 1, xml_rows, manifest, series="X",
                                    **view))
    manifest.files.append(write_xlsx(directory / f"wsjkw_cases_{day}.xlsx", seed + 2, xlsx_rows, manifest, series="S",
                                     **view))
    return manifest


# --- large files for benchmarks ---------------------------------------------------------------------------
def _pool(seed: int, size: int = 2000) -> list[list[str]]:
    return list(wsjkw_rows(seed, size))


def _renumbered(seed: int, rows: int) -> Iterator[list[str]]:
    pool = _pool(seed)
    for i in range(rows):
        row = list(pool[i % len(pool)])
        row[0] = f"WJ{i:012d}"
        yield row


def write_large_csv(path: str | Path, rows: int, seed: int = 1) -> Path:
    """A GBK CSV of `rows` data rows (no damaged rows) written in constant memory."""
    path = Path(path)
    with open(path, "w", encoding="gbk", newline="") as out:
        out.write(_csv_line(HEADER))
        out.writelines(_csv_line(row) for row in _renumbered(seed, rows))
    return path


def write_large_xml(path: str | Path, rows: int, seed: int = 1) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as out:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<Export system="{SYSTEM}">\n<Cases>\n')
        out.writelines(_xml_record(row) for row in _renumbered(seed, rows))
        out.write("</Cases>\n</Export>\n")
    return path
