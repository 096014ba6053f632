"""Mock department systems of the bundled services (一件事一次办): they take applications in and report cases out.

One server hosts every department under its own path prefix (`/gaj`, `/wsjkw` …). A department takes applications
the way its mapping's `submit:` says — REST POST, REST PUT under tongban's reference, or a file dropped into its
inbox folder (JSON or GB18030 XML) — and reports its cases by REST like every sandbox system:

    POST /{p}/api/applications            (Idempotency-Key, Bearer)  → {"code": 0, "data": {"ywh": "…"}}
    PUT  /{p}/api/applications/{ref}      (Bearer)                   → the same
    GET  /{p}/api/cases?updated_since=…&page=&size=                  → {"code": 0, "data": {"items": [...]}}

A resubmission (same Idempotency-Key or 外部编号 `wbbh`) opens no second case and answers the first one's key.
Each department's clock moves in ticks (`POST /_sandbox/advance?ticks=1`): a case submitted at tick t is accepted
(受理) at t+1 and concluded (办结) at t+2 — `slow_ticks` later for a slow department. Every change gets its own
strictly increasing 更新时间 (`gxsj`), so an incremental fetch never misses one.

Sandbox controls (unsigned), per department:
- `POST /_sandbox/{p}/faults` `{"fail_next": k, "status": 503}` fails the next k submissions (before anything is
  stored); `{"hostile_next": "huge" | "deep" | "html" | "nokey" | "object_key"}` makes the next answer hostile;
- `POST /_sandbox/{p}/behaviour` `{"refuse_if": {"field": "value"}, "slow_ticks": n}`: cases whose submitted field
  has that value are refused (不予) when concluded; a slow department concludes n ticks later;
- `GET /_sandbox/{p}/submissions` how many times each reference was submitted and whether it opened a case.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_TOKEN = "sandbox-bundle-token"


@dataclass
class Department:
    prefix: str
    name: str
    drop: Path | None = None  # file-drop departments: the folder holding inbox/ and done/
    refuse_if: dict[str, str] = field(default_factory=dict)
    slow_ticks: int = 0
    fail_next: int = 0
    fail_status: int = 503
    hostile_next: str | None = None
    cases: dict[str, dict] = field(default_factory=dict)  # ywh → {"record", "tick", "fields"}
    by_reference: dict[str, str] = field(default_factory=dict)
    submissions: dict[str, int] = field(default_factory=dict)


# prefix → department name, and which take file drops (the others take REST)
DEPARTMENTS = {"wsjkw": ("重庆市卫生健康委员会", True), "gaj": ("重庆市公安局", False),
               "ybj": ("重庆市医疗保障局", True), "rsj": ("重庆市人力资源和社会保障局", False),
               "samr": ("重庆市市场监督管理局", False), "swj": ("国家税务总局重庆市税务局", False)}
INTAKE_NS = "http://bundle.cq.gov.cn/intake/v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
INTAKE_WSDL = Path(__file__).with_name("wsdl") / "cq_bundle_submit.wsdl"


class BundleWorld:
    def __init__(self, drop_root: Path | None = None, start: datetime | None = None):
        self.lock = threading.Lock()
        self.tick = 0
        self.start = (start or datetime.now()).replace(microsecond=0)
        self.stamp = 0  # seconds added to every change: strictly increasing 更新时间
        self.departments = {
            p: Department(p, name, (Path(drop_root) / p) if (files and drop_root) else None)
            for p, (name, files) in DEPARTMENTS.items()}

    def _moment(self) -> str:
        self.stamp += 1
        return (self.start + timedelta(days=self.tick, seconds=self.stamp)).strftime(TIME_FORMAT)

    # --- taking applications in ---------------------------------------------------------------------------
    def submit(self, dept: Department, reference: str, fields: dict[str, Any]) -> str:
        dept.submissions[reference] = dept.submissions.get(reference, 0) + 1
        if reference in dept.by_reference:
            return dept.by_reference[reference]
        # A REST department numbers its cases itself (and answers the number); a file drop has no answer, so the
        # department keys the case by the file's 外部编号.
        key = reference if dept.drop is not None else f"{dept.prefix.upper()}{len(dept.cases) + 1:06d}"
        dept.by_reference[reference] = key
        applied = self._moment()
        record = {"ywh": key, "wbbh": reference, "sxbm": fields.get("sxbm"), "sqrxm": fields.get("sqrxm"),
                  "zjlx": fields.get("zjlx"), "zjhm": fields.get("zjhm"), "xzqh": fields.get("xzqh"),
                  "bjlx": "2", "sbqd": "网上", "sqsj": applied, "slsj": None, "slr": None, "cnbjsj": None,
                  "bjsj": None, "bjjg": None, "bjsm": None, "zzmc": None, "zzbh": None, "gxsj": applied}
        dept.cases[key] = {"record": record, "tick": self.tick, "fields": dict(fields)}
        return key

    def read_drops(self, dept: Department) -> None:
        """A file-drop department reads its inbox: each file one application, keyed by its 外部编号."""
        if dept.drop is None:
            return
        inbox, done = dept.drop / "inbox", dept.drop / "done"
        done.mkdir(parents=True, exist_ok=True)
        for path in sorted(inbox.glob("*")) if inbox.is_dir() else []:
            if path.name.startswith(".") or path.suffix not in (".json", ".xml"):
                continue
            fields = _read_drop(path)
            if fields.get("wbbh"):
                self.submit(dept, str(fields["wbbh"]), fields)
            path.replace(done / path.name)

    # --- the clock ----------------------------------------------------------------------------------------
    def advance(self, ticks: int = 1) -> int:
        with self.lock:
            for _ in range(ticks):
                self.tick += 1
                for dept in self.departments.values():
                    self.read_drops(dept)
                    for case in dept.cases.values():
                        self._progress(dept, case)
            return self.tick

    def _progress(self, dept: Department, case: dict) -> None:
        record, age = case["record"], self.tick - case["tick"]
        if age >= 1 and record["slsj"] is None:
            record.update(slsj=self._moment(), slr="窗口受理", cnbjsj=None)
            record["gxsj"] = record["slsj"]
        if age >= 2 + dept.slow_ticks and record["bjsj"] is None and record["slsj"] is not None:
            refused = any(str(case["fields"].get(k)) == str(v) for k, v in dept.refuse_if.items())
            record.update(bjsj=self._moment(), bjjg="不予" if refused else "准予",
                          bjsm="材料不符合要求" if refused else "办结",
                          zzmc=None if refused else "办结通知书", zzbh=None if refused else f"ZZ{record['ywh']}")
            record["gxsj"] = record["bjsj"]

    def records(self, dept: Department, since: str | None) -> list[dict]:
        with self.lock:
            self.read_drops(dept)
            rows = [dict(c["record"]) for c in dept.cases.values()]
        return sorted((r for r in rows if since is None or r["gxsj"] > since), key=lambda r: r["gxsj"])


def _read_drop(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    from adapters import safexml

    root = safexml.parse_bytes(path.read_bytes(), source=str(path))
    return {child.tag: (child.text or None) for child in root}


def _hostile(kind: str):
    if kind == "huge":
        return PlainTextResponse('{"code": 0, "data": {"ywh": "' + "A" * 2_000_000 + '"}}', media_type="application/json")
    if kind == "deep":
        return PlainTextResponse("[" * 5000 + "]" * 5000, media_type="application/json")
    if kind == "html":
        return PlainTextResponse("<html><body>维护中</body></html>", media_type="text/html")
    if kind == "object_key":
        return JSONResponse({"code": 0, "data": {"ywh": {"$ne": None}}})
    return JSONResponse({"code": 0, "data": {}})  # nokey


def _soap_reply(code: str, message: str, key: str | None, key_xml: str | None = None) -> PlainTextResponse:
    from xml.sax.saxutils import escape

    key_part = key_xml if key_xml is not None else (f"<i:CaseKey>{escape(key)}</i:CaseKey>" if key else "")
    body = (f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP_ENV}" xmlns:i="{INTAKE_NS}"><s:Body>'
            f"<i:SubmitApplicationResponse><i:Code>{code}</i:Code><i:Message>{escape(message)}</i:Message>{key_part}"
            "</i:SubmitApplicationResponse></s:Body></s:Envelope>")
    return PlainTextResponse(body, media_type="text/xml; charset=utf-8")


def _soap_hostile(kind: str) -> PlainTextResponse:
    if kind == "huge":
        return _soap_reply("0", "ok", "A" * 2_000_000)
    if kind == "deep":
        return _soap_reply("0", "ok", None, "<i:CaseKey>" + "<x>" * 5000 + "</x>" * 5000 + "</i:CaseKey>")
    if kind == "html":
        return PlainTextResponse("<html><body>维护中</body></html>", media_type="text/html")
    if kind == "object_key":
        return PlainTextResponse('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>', media_type="text/xml")
    return _soap_reply("0", "ok", None)  # nokey


def create_app(world: BundleWorld, token: str = DEFAULT_TOKEN) -> FastAPI:
    app = FastAPI(title="bundle departments (sandbox)", docs_url=None, redoc_url=None)
    app.state.world = world

    def dept_of(prefix: str) -> Department | None:
        return world.departments.get(prefix)

    async def take(prefix: str, reference: str | None, request: Request, authorization: str | None):
        dept = dept_of(prefix)
        if dept is None:
            return JSONResponse({"code": 404, "message": f"no department {prefix}"}, 404)
        if authorization != f"Bearer {token}":
            return JSONResponse({"code": 401, "message": "unauthorized"}, 401)
        if dept.fail_next > 0:
            dept.fail_next -= 1
            return JSONResponse({"code": dept.fail_status, "message": "injected fault"}, dept.fail_status)
        if dept.hostile_next:
            kind, dept.hostile_next = dept.hostile_next, None
            return _hostile(kind)
        try:
            fields = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"code": 400, "message": "body is not JSON"}, 400)
        reference = reference or request.headers.get("Idempotency-Key") or fields.get("wbbh")
        if not reference or not fields.get("sxbm"):
            return JSONResponse({"code": 422, "message": "外部编号 and 事项编码 are required"}, 200)
        with world.lock:
            key = world.submit(dept, str(reference), fields)
        return {"code": 0, "message": "受理登记成功", "data": {"ywh": key}}

    @app.post("/{prefix}/api/applications")
    async def post_application(prefix: str, request: Request, authorization: str | None = Header(None)):
        return await take(prefix, None, request, authorization)

    @app.put("/{prefix}/api/applications/{reference}")
    async def put_application(prefix: str, reference: str, request: Request,
                              authorization: str | None = Header(None)):
        return await take(prefix, reference, request, authorization)

    @app.get("/{prefix}/soap")
    async def wsdl(prefix: str, request: Request):
        text = INTAKE_WSDL.read_text(encoding="utf-8").replace("SOAP_ADDRESS", str(request.url.remove_query_params("wsdl")))
        return PlainTextResponse(text, media_type="text/xml")

    @app.post("/{prefix}/soap")
    async def soap(prefix: str, request: Request, authorization: str | None = Header(None)):
        """SubmitApplication over SOAP 1.1 (sandbox/wsdl/cq_bundle_submit.wsdl); HTTP basic or the bearer token."""
        dept = dept_of(prefix)
        if dept is None:
            return JSONResponse({"code": 404, "message": f"no department {prefix}"}, 404)
        import base64

        basic = "Basic " + base64.b64encode(f"intake:{token}".encode()).decode()
        if authorization not in (basic, f"Bearer {token}"):
            return PlainTextResponse("unauthorized", 401)
        if dept.fail_next > 0:
            dept.fail_next -= 1
            if dept.fail_status == 422:
                return _soap_reply("4220", "材料不全，不予受理", None)
            return PlainTextResponse("injected fault", dept.fail_status)
        if dept.hostile_next:
            kind, dept.hostile_next = dept.hostile_next, None
            return _soap_hostile(kind)
        from adapters import safexml

        root = safexml.parse_bytes(await request.body(), source="SubmitApplication")
        call = root.find(f".//{{{INTAKE_NS}}}SubmitApplication")
        reference = call.findtext(f"{{{INTAKE_NS}}}Reference")
        fields = {f.findtext(f"{{{INTAKE_NS}}}Name"): f.findtext(f"{{{INTAKE_NS}}}Value")
                  for f in call.iter(f"{{{INTAKE_NS}}}Field")}
        fields["sxbm"] = call.findtext(f"{{{INTAKE_NS}}}ItemCode")
        with world.lock:
            key = world.submit(dept, str(reference), fields)
        return _soap_reply("0", "受理登记成功", key)

    @app.get("/{prefix}/api/cases")
    async def cases(prefix: str, updated_since: str | None = Query(None), page: int = Query(1, ge=1),
                    size: int = Query(200, ge=1, le=1000), authorization: str | None = Header(None)):
        dept = dept_of(prefix)
        if dept is None:
            return JSONResponse({"code": 404, "message": f"no department {prefix}"}, 404)
        if authorization != f"Bearer {token}":
            return JSONResponse({"code": 401, "message": "unauthorized"}, 401)
        rows = world.records(dept, updated_since)
        return {"code": 0, "data": {"items": rows[(page - 1) * size: page * size], "total": len(rows)}}

    @app.post("/_sandbox/advance")
    async def advance(ticks: int = Query(1, ge=0)):
        return {"code": 0, "data": {"tick": world.advance(ticks)}}

    @app.post("/_sandbox/{prefix}/faults")
    async def faults(prefix: str, plan: dict):
        dept = world.departments[prefix]
        dept.fail_next = int(plan.get("fail_next", dept.fail_next))
        dept.fail_status = int(plan.get("status", dept.fail_status))
        dept.hostile_next = plan.get("hostile_next", dept.hostile_next)
        return {"code": 0}

    @app.post("/_sandbox/{prefix}/behaviour")
    async def behaviour(prefix: str, plan: dict):
        dept = world.departments[prefix]
        dept.refuse_if = dict(plan.get("refuse_if", dept.refuse_if))
        dept.slow_ticks = int(plan.get("slow_ticks", dept.slow_ticks))
        return {"code": 0}

    @app.get("/_sandbox/{prefix}/submissions")
    async def submissions(prefix: str):
        dept = world.departments[prefix]
        with world.lock:
            world.read_drops(dept)
            return {"code": 0, "data": {"submissions": dict(dept.submissions), "cases": len(dept.cases)}}

    return app
