"""The bundled services (一件事一次办) in the sandbox: the departments' mock systems, sample applications, and one
"day" of the whole loop — departments work, their cases come back through the ordinary ingest, tongban gathers.

`BundleSandbox` is what `tongban sandbox demo` and the end-to-end tests drive:

    sandbox = BundleSandbox(home, platform_url).start()      # departments on 127.0.0.1 (a free port)
    sandbox.offer("newborn", newborn_form(1))                 # the platform receives a bundle application
    sandbox.day(store=…, bus=…, platform=…)                   # tongban bundle run; departments tick; ingest; deliver

The clock knob: `days_ahead` moves tongban's deadline clock with the departments' own clock (one tick = one day),
so a slow department crosses its 承诺时限 in a few ticks, in seconds.
"""
from __future__ import annotations

import os
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from sandbox.bundle_depts import DEFAULT_TOKEN, BundleWorld, create_app
from sandbox.runner import Server

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "mappings" / "bundles"
DROP_VARIABLES = {"wsjkw": "CQ_WSJKW_INBOX", "ybj": "CQ_YBJ_INBOX"}


def newborn_form(n: int) -> dict[str, Any]:
    from tongban.codes import make_id_number

    return {"applicant": {"name": f"王芳{n}", "id_number": make_id_number("500103", date(1992, 3, 1 + n % 27), n, "F")},
            "child": {"name": f"王小明{n}", "sex": "男", "birth_date": "2026-11-28", "birth_place": "重庆市妇幼保健院"},
            "household": {"region": "500103", "address": "重庆市渝中区解放碑街道"},
            "card": {"delivery": "邮寄"}}


def business_form(n: int) -> dict[str, Any]:
    from tongban.codes.credit_code import make_credit_code

    return {"company": {"name": f"重庆山城{n}号科技有限公司", "credit_code": make_credit_code("9", "1", "500112",
                                                                                    f"MA{n:05d}X"[:8]),
                        "region": "500112", "capital": "100万元", "scope": "软件开发"},
            "legal_rep": {"name": f"李强{n}"}, "seal": {"kinds": ["公章", "财务章"]},
            "finance": {"contact": f"张敏{n}"}, "staff": {"count": 5}}


class BundleSandbox:
    def __init__(self, home: Path, platform_url: str, *, port: int = 0):
        self.home, self.platform_url, self.port = Path(home), platform_url, port
        self.world = BundleWorld(drop_root=self.home / "bundle-drop",
                                 start=datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=8)))
                                 .replace(tzinfo=None))
        self.server: Server | None = None
        self.days_ahead = 0
        self.days_per_tick = 1.0  # the clock knob: calendar days tongban's deadline clock moves per department tick
        self.jumped_days = 0.0     # and days it jumped ahead at once ("a week passes")
        self._saved: dict[str, str | None] = {}

    # --- life ------------------------------------------------------------------------------------------------
    def start(self) -> "BundleSandbox":
        self.server = Server(create_app(self.world), port=self.port, name="bundle-departments").start()
        env = {"CQ_BUNDLE_DEPTS_URL": self.server.url, "CQ_BUNDLE_TOKEN": DEFAULT_TOKEN, "CQ_SWJ_USER": "intake",
               **{var: str(self.home / "bundle-drop" / prefix / "inbox") for prefix, var in DROP_VARIABLES.items()}}
        for name, value in env.items():
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    # --- what the sandbox offers ---------------------------------------------------------------------------
    def definitions(self):
        from tongban.bundle.definition import load_bundles

        return load_bundles(BUNDLES_DIR)

    def department_mappings(self) -> list:
        from tongban.mapping import load_mapping

        return [load_mapping(path) for path in sorted((BUNDLES_DIR / "departments").glob("*.yaml"))]

    def offer(self, bundle: str, form: dict[str, Any], application_id: str | None = None) -> str:
        body = {"bundle": bundle, "form": form, **({"application_id": application_id} if application_id else {})}
        answer = httpx.post(f"{self.platform_url}/_sandbox/bundle-applications", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()["application_id"]

    def control(self, prefix: str, what: str, body: dict) -> None:
        httpx.post(f"{self.url}/_sandbox/{prefix}/{what}", json=body, timeout=10).raise_for_status()

    def clock(self) -> datetime:
        """tongban's deadline clock in the sandbox: now, moved on with the departments' days."""
        return datetime.now(timezone.utc) + timedelta(days=self.days_ahead * self.days_per_tick + self.jumped_days)

    # --- one day ---------------------------------------------------------------------------------------------
    def gather(self, *, store, bus, platform, definitions, bundle_work=None, case_work=None, policy=None,
               idle_exit: float = 0.6) -> dict:
        """tongban's side of a day: ingest every department system, deliver its case events, run the bundles."""
        from tongban.bundle.run import run_bundles
        from tongban.bus.topology import CASES
        from tongban.delivery.worker import DeliveryWorker
        from tongban.pipeline.ingest import run_ingest

        case_work = case_work or CASES
        for mapping in self.department_mappings():
            run_ingest(mapping, store=store, bus=bus, platform=platform, work=case_work)
        DeliveryWorker(store=store, bus=bus, platform=platform, work=case_work).run(
            stop=threading.Event(), idle_exit=idle_exit, lanes=4)
        return run_bundles(store=store, bus=bus, platform=platform, definitions=definitions, work=bundle_work,
                           clock=self.clock, idle_exit=idle_exit, policy=policy)

    def advance(self, ticks: int = 1) -> None:
        httpx.post(f"{self.url}/_sandbox/advance", params={"ticks": ticks}, timeout=10).raise_for_status()
        self.days_ahead += ticks


def run_bundle_demo(say, *, store, bus, platform, platform_url: str, home: Path, most_days: int = 12) -> dict[str, dict]:
    """The demo's bundles: 新生儿出生一件事 with a slow 医保局 (预警), 企业开办一件事 granted, and one whose 营业执照
    is refused (the bundle ends refused, the other members are never submitted). Returns each bundle's view."""
    from tongban.bundle.views import bundle_view

    sandbox = BundleSandbox(home, platform_url).start()
    sandbox.days_per_tick = 0.25  # a department tick is six hours of tongban's deadline clock
    try:
        definitions = sandbox.definitions()
        refused = business_form(2)
        sandbox.control("ybj", "behaviour", {"slow_ticks": 5})
        sandbox.control("samr", "behaviour", {"refuse_if": {"sqrxm": refused["company"]["name"]}})
        stamp = datetime.now().strftime("%H%M%S")
        ids = [sandbox.offer("newborn", newborn_form(1), f"DEMO-NB-{stamp}"),
               sandbox.offer("business-start", business_form(1), f"DEMO-KB-{stamp}"),
               sandbox.offer("business-start", refused, f"DEMO-KB-{stamp}-R")]
        say("\n[bold]一件事一次办[/bold]: 3 bundle applications across 6 department systems "
            "(REST POST/PUT, SOAP, JSON and GB18030 XML file drops)")
        for day in range(1, most_days + 1):
            result = sandbox.gather(store=store, bus=bus, platform=platform, definitions=definitions, idle_exit=0.3)
            views = [bundle_view(store, app_id, definitions) for app_id in ids]
            say(f"  tick {day}: submitted {result['submitted']}, late {result['late']}, concluded "
                f"{sum(1 for v in views if v['state'] == 'concluded')} of {len(ids)}")
            if all(v["state"] == "concluded" for v in views):
                break
            open_members = [m["member"] for m in views[0]["members"] if m["state"] not in ("granted", "refused")]
            if open_members == ["medical_insurance"] and not sandbox.jumped_days:
                sandbox.jumped_days = 7  # 医保局 is slow: a week passes, its 5 working days run out
                say("  … a week passes; 重庆市医疗保障局 has not concluded 医保参保")
            sandbox.advance(1)
        from tongban.cli.bundle import render_bundle

        for view in views:
            say(render_bundle(view), highlight=False, soft_wrap=True)
        say("  see one with: tongban trace " + ids[0])
        return {v["application_id"]: v for v in views}
    finally:
        sandbox.stop()


def try_bundle(path: Path, form: dict[str, Any], *, store, bus, home: Path, most_days: int = 12,
               say=lambda *a, **k: None) -> dict:
    """Run one application of the bundle defined in `path` (its members on the sandbox departments) through a mock
    platform and the bundle departments, day by day until it concludes; its final view."""
    from sandbox.platform import create_app as platform_app
    from tongban.bundle.definition import load_bundle
    from tongban.bundle.views import bundle_view
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings

    defn = load_bundle(path)
    definitions = {defn.bundle: defn}
    state = Path(home) / "sandbox" / "bundle-try"
    state.mkdir(parents=True, exist_ok=True)
    platform_server = Server(platform_app(str(state / "platform.db")), port=0, name="mock-platform").start()
    sandbox = BundleSandbox(state, platform_server.url).start()
    platform = PlatformClient(Settings(home=Path(home), platform_url=platform_server.url))
    try:
        app_id = sandbox.offer(defn.bundle, form)
        view: dict = {}
        for day in range(1, most_days + 1):
            sandbox.gather(store=store, bus=bus, platform=platform, definitions=definitions, idle_exit=0.3)
            view = bundle_view(store, app_id, definitions) or {}
            say(f"tick {day}: " + ", ".join(f"{m['member']} {m['state']}" for m in view.get("members", [])))
            if view.get("state") == "concluded":
                break
            sandbox.advance(1)
        return view
    finally:
        platform.close()
        sandbox.stop()
        platform_server.stop()
