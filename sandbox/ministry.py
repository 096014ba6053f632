"""Mock national ministry system (国家部委) that hands Chongqing's case data back (数据回流, 第十九条).

It produces batches of national-format case records concerning Chongqing — 实施编码, 行政区划 of 6, 9 or 12
digits, retired Chongqing codes, a functional-zone code, municipal-level items, a few records from other
provinces and a few without any region; applicants' ID numbers often carry old Sichuan (5102xx) prefixes, so
a router that looked at them would go wrong — and delivers them two ways:

- files dropped for pickup: `write_batch(incoming_dir, batch)` writes `<batch id>.xml` or `.csv` and
  `<batch id>.manifest.json` (batch id, record count, digest as tongban.flowback.records defines it);
  `write_batch(..., dialect=PINYIN, encoding="gb18030", record_tag="Row")` writes it as a ministry with its own
  field names (pinyin abbreviations), value formats, encoding and XML record element would;
- a SOAP batch service: `MinistrySoapService(batches).app` (ListBatches, FetchBatch paged, AckBatch; WSDL at
  `/ministry/FlowbackService?wsdl`) with HTTP basic auth; serve it with sandbox.runner.Server.

`make_batch(..., duplicate_share=0.01)` repeats some records exactly (the same record twice in one batch).

`MinistryBatch.expected` says, per ROWGUID, where the record must end up ("500101" …, "city") or
"quarantine:<kind>", with the sandbox routing config (mappings/flowback/routing.yaml).
"""
from __future__ import annotations

import base64
import csv
import json
import os
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator
from xml.sax.saxutils import escape

from fastapi import FastAPI, Request, Response
from lxml import etree

from adapters import safexml
from sandbox.legacy_soap import person_name
from tongban.codes import CHONGQING_UNITS, RETIRED_CODES, make_credit_code, make_id_number
from tongban.flowback.records import NATIONAL_FIELDS, Manifest, RecordsDigest, normalise_record

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FB_NS = "urn:sandbox:ministry:flowback:v1"  # the sandbox ministry's service namespace
WSDL_PATH = Path(__file__).with_name("wsdl") / "mps_flowback.wsdl"
USERNAME_ENV = "SANDBOX_MINISTRY_USER"

MINISTRY = "MPS"  # batch ids look like MPS-20240301-0001
USERNAME = "cq-flowback"
PASSWORD_ENV = "SANDBOX_MINISTRY_PASSWORD"
DEFAULT_PASSWORD = "sandbox-ministry-password"

# Sandbox functional zones (mirrors mappings/flowback/routing.yaml): code ministry systems use → target.
SANDBOX_ZONES = {"500192": "500112", "500193": "500106"}
OTHER_PROVINCES = ["110105", "510104", "440106", "610113"]
OLD_SICHUAN_PREFIXES = ["510202", "510203", "510212", "510221"]  # pre-1997 Chongqing ID numbers
ITEMS = {"0100101000": "建设工程规划许可", "0100202000": "道路运输经营许可", "0700303000": "户籍登记",
         "2000404000": "社会保障卡申领", "0100505000": "食品经营许可"}

# (kind, share) of the generated mix; the rest are plain 6-digit current county-level codes.
DEFAULT_MIX = {"town": 0.08, "village": 0.05, "retired": 0.07, "city": 0.04, "municipal": 0.04, "zone": 0.03,
               "other_province": 0.03, "no_region": 0.02, "bad_taskcode": 0.01}


@dataclass
class MinistryBatch:
    batch_id: str
    records: list[dict[str, str]]
    expected: dict[str, str] = field(default_factory=dict)  # ROWGUID → target or "quarantine:<kind>"
    duplicates: int = 0  # exact copies of earlier records in `records`

    @property
    def manifest(self) -> Manifest:
        digest = RecordsDigest()
        for record in self.records:
            digest.add(normalise_record(record))
        return Manifest(self.batch_id, len(self.records), digest.hexdigest())


def _task_code(rng: random.Random, region: str, level: str) -> str:
    body = make_credit_code("1", "1", region, f"{rng.randrange(10**7, 10**8)}")
    return body + level + "50" + rng.choice(list(ITEMS))


def _choose_kind(rng: random.Random, mix: dict[str, float]) -> str:
    roll, acc = rng.random(), 0.0
    for kind, share in mix.items():
        acc += share
        if roll < acc:
            return kind
    return "district"


def make_record(rng: random.Random, index: int, batch_id: str, kind: str) -> tuple[dict[str, str], str]:
    """One national record of the given kind and where it must be routed."""
    units = sorted(CHONGQING_UNITS)
    county = rng.choice(units)
    level, area, expected = "4", county, county
    if kind == "town":
        area = county + f"{rng.randrange(1, 999):03d}"
    elif kind == "village":
        area = county + f"{rng.randrange(1, 999):03d}{rng.randrange(1, 999):03d}"
    elif kind == "retired":
        old = rng.choice(sorted(RETIRED_CODES))
        area, expected = old, RETIRED_CODES[old]
        county = expected
    elif kind == "city":
        area, expected, level = rng.choice(["500000", "500000001"]), "city", "2"
    elif kind == "municipal":
        level, expected = "2", "city"
    elif kind == "zone":
        area = rng.choice(sorted(SANDBOX_ZONES))
        expected = SANDBOX_ZONES[area]
    elif kind == "other_province":
        area, expected = rng.choice(OTHER_PROVINCES), "quarantine:other_province"
    elif kind == "no_region":
        area, expected = "", "quarantine:no_region"
    body_region = county if county in CHONGQING_UNITS else "500000"
    task = _task_code(rng, "500000" if level == "2" else body_region, level)
    if kind == "bad_taskcode":
        task, expected = task[:20], "quarantine:bad_taskcode"
    applied = datetime(2024, 3, 1, 8) + timedelta(minutes=index * 7 % 50000)
    # Old ID numbers carry Sichuan prefixes (5102xx): routing must ignore them.
    id_region = rng.choice(OLD_SICHUAN_PREFIXES + [county if county in CHONGQING_UNITS else "500103"])
    birth = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    row_guid = f"{batch_id}-{index:07d}"
    record = {
        "ROWGUID": row_guid,
        "PROJID": f"{task}{applied:%Y%m%d}{index % 10000:04d}",
        "TASKCODE": task,
        "TASKNAME": ITEMS[task[-10:]] if task[-10:] in ITEMS else "未知事项",
        "AREACODE": area,
        "APPLYERNAME": person_name(rng),
        "APPLYERCARDTYPE": "111",
        "APPLYERCARDCODE": make_id_number(id_region, birth.date(), rng.randrange(0, 500), rng.choice("MF")),
        "APPLYDATE": f"{applied:%Y%m%dT%H%M%S}",
        "PROJSTATUS": rng.choice(["1", "2", "3"]),
        "OPERATETYPE": "I",
        "OPERATEDATE": f"{applied + timedelta(hours=2):%Y%m%dT%H%M%S}",
        "DATASOURCE": MINISTRY,
    }
    return record, expected


def make_batch(batch_id: str, count: int, *, seed: int = 19, mix: dict[str, float] | None = None,
               kinds: Iterable[str] | None = None, duplicate_share: float = 0.0) -> MinistryBatch:
    """A deterministic batch; `kinds` forces the kind of each record instead of the random mix.
    `duplicate_share` of the records are followed, somewhere later, by an exact copy (the batch then holds more
    than `count` records; `duplicates` says how many copies)."""
    rng = random.Random(f"{seed}:{batch_id}")
    mix = DEFAULT_MIX if mix is None else mix
    chosen = list(kinds) if kinds is not None else [_choose_kind(rng, mix) for _ in range(count)]
    batch = MinistryBatch(batch_id, [])
    for index, kind in enumerate(chosen, start=1):
        record, expected = make_record(rng, index, batch_id, kind)
        batch.records.append(record)
        batch.expected[record["ROWGUID"]] = expected
    copies = round(len(batch.records) * duplicate_share)
    for original in rng.sample(range(len(batch.records)), copies):
        at = rng.randrange(original + 1, len(batch.records) + 1)
        batch.records.insert(at, dict(batch.records[original]))
    batch.duplicates = copies
    return batch


# --- a ministry with its own field names ---------------------------------------------------------
# How another ministry writes the same national record: pinyin abbreviations of the Chinese column names, dates
# with dashes, the case status as text. The answer key (`expected`) stays keyed by the row key (LSH = ROWGUID).
PINYIN_NAMES = {"ROWGUID": "LSH", "PROJID": "BJBH", "TASKCODE": "SSBM", "TASKNAME": "SXMC", "AREACODE": "XZQHDM",
                "APPLYERNAME": "SQRXM", "APPLYERCARDTYPE": "SQRZJLX", "APPLYERCARDCODE": "SQRZJHM",
                "APPLYDATE": "SQSJ", "PROJSTATUS": "BJZT", "OPERATETYPE": "CZLX", "OPERATEDATE": "CZSJ",
                "DATASOURCE": "SJLY"}
PINYIN_STATUS = {"1": "受理", "2": "办理中", "3": "办结"}


def _dashed(value: str) -> str:
    return datetime.strptime(value, "%Y%m%dT%H%M%S").strftime("%Y-%m-%d %H:%M:%S") if value else value


def pinyin_record(record: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, value in record.items():
        if name in ("APPLYDATE", "OPERATEDATE"):
            value = _dashed(value)
        elif name == "PROJSTATUS":
            value = PINYIN_STATUS[value]
        out[PINYIN_NAMES[name]] = value
    return out


pinyin_record.names = PINYIN_NAMES  # a dialect: national record → the ministry's own record, and its column names
PINYIN = pinyin_record


# --- files ------------------------------------------------------------------------------------------
def _xml_record(record: dict[str, str], names: list[str], tag: str) -> str:
    cells = "".join(f"<{name}>{escape(record[name])}</{name}>" for name in names if record.get(name))
    return f"<{tag}>{cells}</{tag}>\n"


def write_records(directory: Path, batch_id: str, records: Iterable[dict[str, str]], fmt: str = "xml", *,
                  dialect=None, encoding: str = "utf-8", record_tag: str = "Record",
                  root_tag: str = "FlowbackBatch") -> Manifest:
    """Stream records to `<batch id>.<fmt>` and write its manifest last (a reader picks up complete batches only).
    `dialect` rewrites each national record the way this ministry writes it (e.g. PINYIN); the manifest's digest
    is over the records as written (tongban.flowback.records)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{batch_id}.{fmt}"
    digest = RecordsDigest()
    names = [getattr(dialect, "names", {}).get(n, n) for n in NATIONAL_FIELDS] if dialect else list(NATIONAL_FIELDS)
    with data.open("w", encoding=encoding, newline="") as handle:
        if fmt == "xml":
            handle.write(f'<?xml version="1.0" encoding="{encoding.upper()}"?>\n'
                         f'<{root_tag} BatchId="{escape(batch_id)}">\n')
            for record in records:
                record = dialect(record) if dialect else record
                digest.add(record)
                handle.write(_xml_record(record, names, record_tag))
            handle.write(f"</{root_tag}>\n")
        elif fmt == "csv":
            writer = csv.writer(handle)
            writer.writerow(names)
            for record in records:
                record = dialect(record) if dialect else record
                digest.add(record)
                writer.writerow([record.get(name, "") for name in names])
        else:
            raise ValueError(f"format must be xml or csv, not {fmt!r}")
    manifest = Manifest(batch_id, digest.count, digest.hexdigest(), data.name, fmt)
    temp = directory / f".{batch_id}.manifest.tmp"
    temp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(temp, directory / f"{batch_id}.manifest.json")
    return manifest


def write_batch(directory: Path, batch: MinistryBatch, fmt: str = "xml", **options) -> Manifest:
    """`options`: dialect, encoding, record_tag, root_tag (see write_records)."""
    return write_records(directory, batch.batch_id, batch.records, fmt, **options)


def large_records(batch_id: str, count: int, seed: int = 19, pool_size: int = 2000) -> Iterator[dict[str, str]]:
    """`count` records for benchmarks, fast: a pool of generated records renumbered (ROWGUID, PROJID)."""
    pool = make_batch(batch_id, pool_size, seed=seed).records
    for index in range(1, count + 1):
        record = dict(pool[index % pool_size])
        record["ROWGUID"] = f"{batch_id}-{index:08d}"
        record["PROJID"] = record["PROJID"][:-4] + f"{index % 10000:04d}"
        yield record


# --- SOAP -------------------------------------------------------------------------------------------
def _soap(body: etree._Element) -> bytes:
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "fb": FB_NS})
    etree.SubElement(env, f"{{{SOAP_ENV}}}Body").append(body)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def _fault(text: str, status: int = 500) -> Response:
    fault = etree.Element(f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = "soap:Client" if status < 500 else "soap:Server"
    etree.SubElement(fault, "faultstring").text = text
    return Response(_soap(fault), status_code=status, media_type="text/xml; charset=utf-8")


def _fb(parent: etree._Element, name: str, text: object | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{FB_NS}}}{name}")
    if text is not None:
        child.text = str(text)
    return child


class MinistrySoapService:
    """The ministry's batch service. `ListBatches` lists batches not yet acknowledged; `resend(batch_id)` makes an
    acknowledged batch appear again (the ministry re-sending a batch: the city must recognise it)."""

    def __init__(self, batches: Iterable[MinistryBatch] = (), password: str | None = None):
        self.batches: dict[str, MinistryBatch] = {b.batch_id: b for b in batches}
        self.acked: set[str] = set()
        self.password = password or os.environ.get(PASSWORD_ENV, DEFAULT_PASSWORD)
        self.app = self._make_app()

    def add(self, batch: MinistryBatch) -> None:
        self.batches[batch.batch_id] = batch

    def resend(self, batch_id: str) -> None:
        self.acked.discard(batch_id)

    def _authorised(self, request: Request) -> bool:
        expected = base64.b64encode(f"{USERNAME}:{self.password}".encode()).decode()
        return secrets.compare_digest(request.headers.get("authorization", ""), f"Basic {expected}")

    def _make_app(self) -> FastAPI:
        app = FastAPI(title="sandbox ministry flowback service")
        wsdl_template = WSDL_PATH.read_text(encoding="utf-8")

        @app.get("/ministry/FlowbackService")
        async def wsdl(request: Request) -> Response:
            # The WSDL (…/FlowbackService?wsdl), its address the one this server answers on.
            address = str(request.url.replace(query=""))
            return Response(wsdl_template.replace("SOAP_ADDRESS", address), media_type="text/xml; charset=utf-8")

        @app.post("/ministry/FlowbackService")
        async def service(request: Request) -> Response:
            if not self._authorised(request):
                return _fault("authentication failed", 401)
            try:
                root = safexml.parse_bytes(await request.body(), max_bytes=1024 * 1024, source="SOAP request")
            except safexml.XMLRejected as exc:
                return _fault(str(exc), 400)
            body = root.find(f"{{{SOAP_ENV}}}Body")
            op = body[0] if body is not None and len(body) else None
            if op is None:
                return _fault("empty SOAP body", 400)
            name = etree.QName(op).localname
            arg = lambda n: op.findtext(f"{{{FB_NS}}}{n}")  # noqa: E731
            if name == "ListBatches":
                out = etree.Element(f"{{{FB_NS}}}ListBatchesResponse")
                for batch in self.batches.values():
                    if batch.batch_id not in self.acked:
                        m = batch.manifest
                        item = _fb(out, "Batch")
                        _fb(item, "BatchId", m.batch_id)
                        _fb(item, "RecordCount", m.record_count)
                        _fb(item, "Digest", m.digest)
                return Response(_soap(out), media_type="text/xml; charset=utf-8")
            if name == "FetchBatch":
                batch = self.batches.get(arg("BatchId") or "")
                if batch is None:
                    return _fault(f"unknown batch {arg('BatchId')!r}", 404)
                page, size = int(arg("PageNo") or 1), min(int(arg("PageSize") or 500), 1000)
                out = etree.Element(f"{{{FB_NS}}}FetchBatchResponse")
                m = batch.manifest
                manifest = _fb(out, "Manifest")
                _fb(manifest, "BatchId", m.batch_id)
                _fb(manifest, "RecordCount", m.record_count)
                _fb(manifest, "Digest", m.digest)
                records = _fb(out, "Records")
                for record in batch.records[(page - 1) * size: page * size]:
                    element = _fb(records, "Record")
                    for field_name in NATIONAL_FIELDS:
                        if record.get(field_name):
                            _fb(element, field_name, record[field_name])
                return Response(_soap(out), media_type="text/xml; charset=utf-8")
            if name == "AckBatch":
                self.acked.add(arg("BatchId") or "")
                return Response(_soap(etree.Element(f"{{{FB_NS}}}AckBatchResponse")), media_type="text/xml; charset=utf-8")
            return _fault(f"unknown operation {name}", 400)

        return app


# --- REST -------------------------------------------------------------------------------------------
class MinistryRestService:
    """The same batches through a read-only JSON API (a ministry without SOAP), written in `dialect` (e.g. PINYIN):

        GET /ministry/api/batches                              → {"batches": [{"batch_id", "record_count", "digest"}]}
        GET /ministry/api/records?batch_id=…&page=1&size=500   → {"records": [...]}

    Bearer token from `token` (tests) or SANDBOX_MINISTRY_TOKEN. There is no acknowledgement: the batch stays listed
    and the city recognises it as done."""

    def __init__(self, batches: Iterable[MinistryBatch] = (), *, dialect=None, token: str | None = None):
        self.batches: dict[str, MinistryBatch] = {b.batch_id: b for b in batches}
        self.dialect = dialect
        self.token = token or os.environ.get("SANDBOX_MINISTRY_TOKEN", "sandbox-ministry-token")
        self.app = self._make_app()

    def _records(self, batch: MinistryBatch) -> list[dict[str, str]]:
        return [self.dialect(r) if self.dialect else dict(r) for r in batch.records]

    def manifest(self, batch: MinistryBatch) -> Manifest:
        digest = RecordsDigest()
        for record in self._records(batch):
            digest.add(record)
        return Manifest(batch.batch_id, digest.count, digest.hexdigest())

    def _make_app(self) -> FastAPI:
        app = FastAPI(title="sandbox ministry flowback REST API")

        def authorised(request: Request) -> bool:
            return secrets.compare_digest(request.headers.get("authorization", ""), f"Bearer {self.token}")

        @app.get("/ministry/api/batches")
        async def batches(request: Request) -> Response:
            if not authorised(request):
                return Response(status_code=401)
            listed = [{"batch_id": m.batch_id, "record_count": m.record_count, "digest": m.digest}
                      for m in map(self.manifest, self.batches.values())]
            return Response(json.dumps({"batches": listed}, ensure_ascii=False), media_type="application/json")

        @app.get("/ministry/api/records")
        async def records(request: Request, batch_id: str, page: int = 1, size: int = 500) -> Response:
            if not authorised(request):
                return Response(status_code=401)
            batch = self.batches.get(batch_id)
            if batch is None:
                return Response(status_code=404, content=f"unknown batch {batch_id!r}")
            size = min(size, 1000)
            rows = self._records(batch)[(page - 1) * size: page * size]
            return Response(json.dumps({"records": rows}, ensure_ascii=False), media_type="application/json")

        return app
