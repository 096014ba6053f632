"""Mock legacy SOAP service of 市人力社保局 (system `cq-hrss-soap`).

A department's own field names and code lists, served the way such systems are: a document/literal SOAP 1.1
endpoint (WSDL in sandbox/wsdl/cq_hrss.wsdl), HTTP basic auth (or a WS-Security UsernameToken), one paged
query operation:

    QueryCases(ModifiedAfter?, PageNo, PageSize) -> QueryCasesResponse(Total, Records/Record*)

No SOAP framework: a small WSGI app parses the envelope with adapters.safexml and renders the reply with lxml,
served by a threading WSGI server in a background thread.

Data is synthetic and deterministic by seed: ~1000 cases with valid 身份证/统一社会信用代码 check digits,
Chongqing region codes, and a few deliberately bad records (`service.bad_records`) for the validation layer
to catch (wrong 身份证 check digit, item number missing from the code table); a credit code failing its checksum
is flagged and kept, not bad (`service.flagged_records`).

With `clock=` set the service shows the system as it was at that moment (cases keyed in later are absent,
later stages missing) and `advance(days)` moves it on, so successive polls see lifecycles progress.

    service = HrssSoapService(seed=7)
    url, stop = start_soap_server(service=service)      # WSDL at url + "?wsdl"
    service.fail_next(2, "http500")                      # fault injection for retry tests
"""
from __future__ import annotations

import base64
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from lxml import etree

from adapters import safexml

try:  # the shared code validators own the check-digit rules; the sandbox only builds valid numbers with them
    from tongban.codes import make_credit_code, make_id_number
except ImportError:  # pragma: no cover - tongban.codes may not re-export yet
    from tongban.codes.credit_code import make_credit_code
    from tongban.codes.id_number import make_id_number

SYSTEM = "cq-hrss-soap"
NS = "http://hrss.cq.gov.cn/legacy/case/v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSDL_PATH = Path(__file__).with_name("wsdl") / "cq_hrss.wsdl"
SERVICE_PATH = "/hrss/CaseService"
USERNAME = "hrss"
PASSWORD_ENV = "SANDBOX_HRSS_PASSWORD"
DEFAULT_PASSWORD = "sandbox-hrss-password"
MAX_PAGE_SIZE = 500

# Legacy item numbers of the department; the mapping's code table translates them to 实施编码.
ITEMS = {
    "HRSS-0101": "失业保险金申领",
    "HRSS-0102": "就业创业证申领",
    "HRSS-0201": "社会保障卡申领",
    "HRSS-0305": "职业技能等级认定",
    "HRSS-0410": "基本养老保险关系转移接续",
    "HRSS-0512": "劳务派遣经营许可",
}
UNKNOWN_ITEM = "HRSS-9999"  # deliberately absent from any code table

# GB/T 2260 county-level codes of Chongqing (reference/standards.md, 2024 list).
CHONGQING_REGIONS = [
    *(f"5001{n:02d}" for n in range(1, 21)),
    *(f"5001{n}" for n in range(51, 57)),
    "500229", "500230", "500231", "500233", "500235", "500236", "500237", "500238",
    "500240", "500241", "500242", "500243",
]

CERT_ID_CARD = "01"      # 身份证
CERT_CREDIT_CODE = "02"  # 统一社会信用代码
FINISH_DONE = "0"        # 办结
FINISH_RETURNED = "1"    # 退回

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文斌鹏宇浩然欣怡子涵梓轩雨彤"
_COMPANY_WORDS = ["山城", "渝信", "嘉陵", "长江", "巴渝", "两江", "朝天门", "缙云", "南山", "金佛山"]
_COMPANY_KINDS = ["科技有限公司", "人力资源服务有限公司", "劳务有限公司", "建筑工程有限公司", "商贸有限责任公司"]
_ACCEPTORS = ["陈晓", "刘洋", "张敏", "王磊", "李娟", "周杰"]


def person_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


def company_name(rng: random.Random) -> str:
    return "重庆" + rng.choice(_COMPANY_WORDS) + rng.choice(_COMPANY_KINDS)


def person_id(rng: random.Random, region: str) -> str:
    birth = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    return make_id_number(region, birth.date(), rng.randrange(0, 500), rng.choice("MF"))


def company_code(rng: random.Random, region: str) -> str:
    return make_credit_code("9", "1", region, f"{rng.randrange(10**7, 10**8)}")


def spoil_check_char(code: str) -> str:
    """Replace the last (check) character with a different one: a typo the validators must catch."""
    last = code[-1]
    return code[:-1] + ("1" if last != "1" else "2")


def generate_cases(seed: int, count: int = 1000, flagged: dict[str, str] | None = None
                   ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Deterministic synthetic cases, oldest ModifyTime first; returns (cases, {CaseId: what is wrong}).
    Cases that are not wrong but get flagged (a credit code failing its checksum) are noted in `flagged`."""
    rng = random.Random(seed)
    cases: list[dict[str, Any]] = []
    bad: dict[str, str] = {}
    flagged = {} if flagged is None else flagged
    clock = datetime(2024, 3, 1, 8, 30, 0)
    items = sorted(ITEMS)
    for i in range(count):
        clock += timedelta(minutes=rng.randrange(1, 90), seconds=rng.randrange(60))
        region = rng.choice(CHONGQING_REGIONS)
        company = rng.random() < 0.2
        case = {
            "CaseId": f"HRSS{clock:%Y%m%d}{i:05d}",
            "ItemNo": rng.choice(items),
            "ApplicantName": company_name(rng) if company else person_name(rng),
            "CertType": CERT_CREDIT_CODE if company else CERT_ID_CARD,
            "CertNo": company_code(rng, region) if company else person_id(rng, region),
            "AreaCode": region,
            "ApplyTime": clock - timedelta(hours=rng.randrange(1, 72)),
        }
        stage = rng.random()
        if stage > 0.15:
            case["AcceptTime"] = case["ApplyTime"] + timedelta(minutes=rng.randrange(5, 600))
            case["Acceptor"] = rng.choice(_ACCEPTORS)
        if stage > 0.45:
            case["FinishTime"] = case["AcceptTime"] + timedelta(hours=rng.randrange(1, 200))
            case["FinishResult"] = FINISH_RETURNED if rng.random() < 0.08 else FINISH_DONE
            if rng.random() < 0.6:
                # 好差评 on the national scale (1 非常满意), given some hours after the conclusion.
                case["Satisfaction"] = rng.choices([1, 2, 3, 4, 5], weights=[60, 25, 8, 4, 3])[0]
                case["EvaluateTime"] = case["FinishTime"] + timedelta(hours=rng.randrange(1, 72))
        case["_Entered"] = clock  # when the record was keyed in; not served (the as-of view needs it)
        case["ModifyTime"] = _modify_time(case)
        if i % 97 == 13 and company:
            # A registered credit code failing its checksum is flagged and kept (standards.md), not quarantined.
            case["CertNo"] = spoil_check_char(case["CertNo"])
            flagged[case["CaseId"]] = "CertNo credit-code checksum (flagged, kept)"
        elif i % 97 == 13:
            case["CertNo"] = spoil_check_char(case["CertNo"])
            bad[case["CaseId"]] = "CertNo check digit"
        elif i % 89 == 7:
            case["ItemNo"] = UNKNOWN_ITEM
            bad[case["CaseId"]] = "unknown ItemNo"
        cases.append(case)
    cases.sort(key=lambda c: (c["ModifyTime"], c["CaseId"]))
    return cases, bad


def _modify_time(case: dict[str, Any]) -> datetime:
    return max(case[name] for name in ("_Entered", "AcceptTime", "FinishTime", "EvaluateTime") if name in case)


# Each stage of a case: its time field and the fields that appear with it.
_STAGES = (("AcceptTime", ("Acceptor",)), ("FinishTime", ("FinishResult",)), ("EvaluateTime", ("Satisfaction",)))


def case_as_of(case: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The case as the legacy system showed it at `now` (None before it was keyed in): later stages are not
    there yet, and ModifyTime is the time of the last visible change — so polls see lifecycles progress."""
    if case["_Entered"] > now:
        return None
    view = dict(case)
    for time_field, companions in _STAGES:
        if time_field in view and view[time_field] > now:
            for name in (time_field, *companions):
                view.pop(name, None)
    view["ModifyTime"] = _modify_time(view)
    return view


def _xml_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is not None:  # the legacy system stores Beijing time without a zone
        value = value.astimezone(timezone(timedelta(hours=8))).replace(tzinfo=None)
    return value


class SoapFault(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class HrssSoapService:
    """The WSGI application and its data; tests drive fault injection and read `calls` through it."""

    seed: int = 20240601
    cases_count: int = 1000
    username: str = USERNAME
    password: str = field(default_factory=lambda: os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD)
    # None: serve every case in its final state. A datetime: serve the system as it was at that moment
    # (cases not yet keyed in are absent, later stages missing); `advance()` moves it on.
    clock: datetime | None = None

    def __post_init__(self) -> None:
        self.flagged_records: dict[str, str] = {}
        self.cases, self.bad_records = generate_cases(self.seed, self.cases_count, self.flagged_records)
        self.calls: list[dict[str, Any]] = []  # QueryCases parameters as received, for tests
        self._faults: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._wsdl_template = WSDL_PATH.read_text(encoding="utf-8")

    # --- the clock -------------------------------------------------------------------------------
    @property
    def first_entry(self) -> datetime:
        return min(case["_Entered"] for case in self.cases)

    def advance(self, days: float = 1) -> datetime | None:
        """Move the legacy clock on (a service without a clock already shows everything)."""
        if self.clock is not None:
            with self._lock:
                self.clock += timedelta(days=days)
        return self.clock

    def visible_cases(self) -> list[dict[str, Any]]:
        """What QueryCases serves now, oldest ModifyTime first."""
        if self.clock is None:
            return self.cases
        now = self.clock
        views = [view for case in self.cases if (view := case_as_of(case, now)) is not None]
        views.sort(key=lambda c: (c["ModifyTime"], c["CaseId"]))
        return views

    # --- fault injection -------------------------------------------------------------------------
    def fail_next(self, count: int, kind: str = "http500", delay: float = 0.0) -> None:
        """Make the next `count` SOAP calls fail: `http500`, `http503`, `http429` (plain HTTP errors),
        `fault` (a SOAP Server fault), `slow` (answer after `delay` seconds, for timeout tests) or `hostile`
        (a 200 reply whose XML carries a DOCTYPE with an entity bomb and an external entity: must be refused)."""
        if kind not in ("http500", "http503", "http429", "fault", "slow", "hostile"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._faults.extend([(kind, delay)] * count)

    def _next_fault(self) -> tuple[str, float] | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    # --- WSGI ------------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        if environ.get("PATH_INFO") != SERVICE_PATH:
            return _respond(start_response, "404 Not Found", b"not found", "text/plain")
        if method == "GET" and environ.get("QUERY_STRING", "").lower() == "wsdl":
            # WSDLs of such systems are commonly readable without credentials; the calls are not.
            host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
            wsdl = self._wsdl_template.replace("SOAP_ADDRESS", f"http://{host}{SERVICE_PATH}")
            return _respond(start_response, "200 OK", wsdl.encode("utf-8"), "text/xml; charset=utf-8")
        if method != "POST":
            return _respond(start_response, "405 Method Not Allowed", b"POST SOAP requests here", "text/plain")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if not (self._authorised(environ.get("HTTP_AUTHORIZATION", "")) or self._wsse_authorised(body)):
            return _respond(start_response, "401 Unauthorized", "认证失败 authentication required".encode(),
                            "text/plain; charset=utf-8", [("WWW-Authenticate", 'Basic realm="hrss"')])
        fault = self._next_fault()
        if fault:
            kind, delay = fault
            if kind == "slow":
                time.sleep(delay)
            elif kind == "fault":
                return _fault(start_response, "soap:Server", "HRSS-DB-503 数据库暂不可用 database unavailable",
                              {"ErrorCode": "HRSS-DB-503", "Table": "T_SBJ_BJ"})
            elif kind == "hostile":
                return _respond(start_response, "200 OK", HOSTILE_REPLY, "text/xml; charset=utf-8")
            else:
                status = {"http500": "500 Internal Server Error", "http503": "503 Service Unavailable",
                          "http429": "429 Too Many Requests"}[kind]
                return _respond(start_response, status, b"<html><body>error</body></html>", "text/html")
        try:
            reply = self._dispatch(body)
        except SoapFault as exc:
            return _fault(start_response, exc.code, exc.message)
        return _respond(start_response, "200 OK", reply, "text/xml; charset=utf-8")

    def _authorised(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except ValueError:
            return False
        return user == self.username and password == self.password

    def _wsse_authorised(self, body: bytes) -> bool:
        """The alternative some of these systems accept: a WS-Security UsernameToken (PasswordText) header."""
        if b"UsernameToken" not in body:
            return False
        try:
            envelope = safexml.parse_bytes(body, max_bytes=1024 * 1024, source="SOAP request")
        except safexml.XMLRejected:
            return False
        token = envelope.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None:
            return False
        return (token.findtext(f"{{{WSSE}}}Username") == self.username
                and token.findtext(f"{{{WSSE}}}Password") == self.password)

    def _dispatch(self, body: bytes) -> bytes:
        try:
            envelope = safexml.parse_bytes(body, max_bytes=1024 * 1024, source="SOAP request")
        except safexml.XMLRejected as exc:
            raise SoapFault("soap:Client", f"bad request envelope: {exc}") from None
        request = envelope.find(f"{{{SOAP_ENV}}}Body/{{{NS}}}QueryCases")
        if request is None:
            raise SoapFault("soap:Client", "unknown operation; this service offers QueryCases")
        params = {child.tag.split("}")[-1]: (child.text or "").strip() for child in request}
        self.calls.append(params)
        try:
            page_no = int(params.get("PageNo") or 1)
            page_size = int(params.get("PageSize") or 100)
        except ValueError:
            raise SoapFault("soap:Client", "PageNo and PageSize must be integers") from None
        if page_no < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise SoapFault("soap:Client", f"PageNo must be ≥ 1 and PageSize 1–{MAX_PAGE_SIZE}")
        selected = self.visible_cases()
        if params.get("ModifiedAfter"):
            try:
                after = _parse_time(params["ModifiedAfter"])
            except ValueError:
                raise SoapFault("soap:Client", f"ModifiedAfter is not a dateTime: {params['ModifiedAfter']!r}") from None
            selected = [c for c in selected if c["ModifyTime"] > after]
        page = selected[(page_no - 1) * page_size: page_no * page_size]
        return self._render(len(selected), page)

    def _render(self, total: int, page: list[dict[str, Any]]) -> bytes:
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "h": NS})
        body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
        response = etree.SubElement(body, f"{{{NS}}}QueryCasesResponse")
        etree.SubElement(response, f"{{{NS}}}Total").text = str(total)
        records = etree.SubElement(response, f"{{{NS}}}Records")
        for case in page:
            record = etree.SubElement(records, f"{{{NS}}}Record")
            for name in _FIELD_ORDER:
                value = case.get(name)
                if value is None:
                    continue
                etree.SubElement(record, f"{{{NS}}}{name}").text = (
                    _xml_time(value) if isinstance(value, datetime) else str(value)
                )
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


# A reply no parser of ours may expand: a billion-laughs entity and an external entity (XXE) in one DOCTYPE.
HOSTILE_MARKER = "HOSTILE-EXPANDED"
HOSTILE_REPLY = (
    '<?xml version="1.0"?>\n'
    '<!DOCTYPE lolz [<!ENTITY lol "' + HOSTILE_MARKER + '">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:h="{NS}"><soap:Body><h:QueryCasesResponse><h:Total>1</h:Total>'
    '<h:Records><h:Record><h:CaseId>&lol3;</h:CaseId><h:ItemNo>&xxe;</h:ItemNo></h:Record></h:Records>'
    '</h:QueryCasesResponse></soap:Body></soap:Envelope>'
).encode("utf-8")

_FIELD_ORDER = ["CaseId", "ItemNo", "ApplicantName", "CertType", "CertNo", "AreaCode", "ApplyTime", "AcceptTime",
                "Acceptor", "FinishTime", "FinishResult", "Satisfaction", "EvaluateTime", "ModifyTime"]


def _respond(start_response, status: str, body: bytes, content_type: str, headers=()) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
    return [body]


def _fault(start_response, code: str, message: str, detail: dict[str, str] | None = None) -> list[bytes]:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    if detail:
        element = etree.SubElement(fault, "detail")
        for name, value in detail.items():
            etree.SubElement(element, f"{{{NS}}}{name}").text = value
    payload = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    # SOAP 1.1: faults travel with HTTP 500.
    return _respond(start_response, "500 Internal Server Error", payload, "text/xml; charset=utf-8")


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # wsgiref alone serves one request at a time
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


def start_soap_server(
    host: str = "127.0.0.1", port: int = 0, *, service: HrssSoapService | None = None, **service_options: Any
) -> tuple[str, Callable[[], None]]:
    """Serve the mock in a background thread; returns (service URL, stop function). WSDL: URL + "?wsdl"."""
    app = service or HrssSoapService(**service_options)
    server = make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="sandbox-hrss-soap", daemon=True)
    thread.start()
    url = f"http://{host}:{server.server_address[1]}{SERVICE_PATH}"

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return url, stop


if __name__ == "__main__":  # python -m sandbox.legacy_soap  (serves until Ctrl-C)
    import sys

    url, stop = start_soap_server(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8711)
    print(f"{SYSTEM} serving {url}?wsdl  (user {USERNAME}, password from ${PASSWORD_ENV} or the sandbox default)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop()
