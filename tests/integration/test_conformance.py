"""The built-in adapters (rest, soap, files) pass the adapter conformance kit, each against its sandbox source.

Each class is what a third-party adapter author writes (see docs/conformance.md): a kind, a mapping file and
a few hooks. The worlds are small so that the whole file runs in seconds.
"""
from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.responses import Response

from sandbox import filedrop
from sandbox.legacy_rest import create_app as legacy_rest_app
from sandbox.legacy_soap import DEFAULT_PASSWORD, HOSTILE_MARKER, USERNAME, HrssSoapService, start_soap_server
from sandbox.legacy_world import LegacyWorld
from sandbox.runner import Server
from tongban.conformance import AdapterConformance
from tongban.mapping import load_mapping

pytestmark = pytest.mark.timeout(120)

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
QUICK_RETRY = {"attempts": 3, "initial_wait": 0.01, "max_wait": 0.05}


def declared_source(name: str) -> dict:
    return dict(load_mapping(MAPPINGS / name).source)


def first_bad_case(bad: set) -> str:
    """The first of the deliberately bad cases a small world already holds (there must be one)."""
    assert bad, "the small world should already hold a deliberately bad case"
    return sorted(bad)[0]


class TestRestConformance(AdapterConformance):
    adapter_kind = "rest"
    mapping_file = MAPPINGS / "cq-samr-rest.yaml"

    def start_source(self, workdir):
        self.world = LegacyWorld(seed=5, cases=40, bad_share=0.2)
        self.world.advance(2)  # some cases have appeared, many are still in progress
        app = legacy_rest_app(self.world, token="conformance-token")
        self.hostile = False

        @app.middleware("http")
        async def hostile_answer(request, call_next):
            if self.hostile:
                self.hostile = False
                return Response(b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
                                media_type="application/json")
            return await call_next(request)

        self.server = Server(app, port=0, name="conformance-rest").start()
        self.monkeypatch.setenv("CONFORMANCE_SAMR_TOKEN", "conformance-token")
        return {**declared_source("cq-samr-rest.yaml"), "base_url": self.server.url,
                "auth": {"type": "bearer", "token_env": "CONFORMANCE_SAMR_TOKEN"},
                "pagination": {"style": "page", "page_param": "page", "size_param": "size", "size": 15},
                "retry": QUICK_RETRY, "timeout": 5}

    def stop_source(self):
        self.server.stop()

    def fail_source_once(self):
        self.server.app.state.faults.fail_next, self.server.app.state.faults.status = 1, 503

    def inject_bad_record(self):
        return first_bad_case(self.world.bad_cases(existing_only=True))

    def serve_hostile_input(self):
        self.hostile = True  # the middleware answers an external entity once; no marker, as nothing is expanded

    def change_source(self):
        self.world.advance(2)


class TestSoapConformance(AdapterConformance):
    adapter_kind = "soap"
    mapping_file = MAPPINGS / "cq-hrss-soap.yaml"

    def start_source(self, workdir):
        self.service = HrssSoapService(seed=5, cases_count=40, password=DEFAULT_PASSWORD)
        self.service.clock = self.service.first_entry + timedelta(days=1)
        url, self.stop = start_soap_server(service=self.service)
        self.monkeypatch.setenv("CONFORMANCE_HRSS_USER", USERNAME)
        self.monkeypatch.setenv("CONFORMANCE_HRSS_PASSWORD", DEFAULT_PASSWORD)
        return {**declared_source("cq-hrss-soap.yaml"), "wsdl": url + "?wsdl",
                "auth": {"type": "basic", "username_env": "CONFORMANCE_HRSS_USER",
                         "password_env": "CONFORMANCE_HRSS_PASSWORD"},
                "paging": {"page_param": "PageNo", "size_param": "PageSize", "size": 15},
                "retry": QUICK_RETRY, "timeout": 5}

    def stop_source(self):
        self.stop()

    def fail_source_once(self):
        self.service.fail_next(1, "http503")

    def inject_bad_record(self):
        visible = {case["CaseId"] for case in self.service.visible_cases()}
        return first_bad_case(set(self.service.bad_records) & visible)

    def serve_hostile_input(self):
        self.service.fail_next(1, "hostile")
        return HOSTILE_MARKER

    def change_source(self):
        self.service.advance(3)


class TestFilesConformance(AdapterConformance):
    adapter_kind = "files"
    mapping_file = MAPPINGS / "cq-wsjkw-files.yaml"
    retries_within_fetch = False  # a file still being written is left for the next run

    def _age(self, *paths):
        old = time.time() - 600
        for path in paths:
            os.utime(path, (old, old))

    def start_source(self, workdir):
        self.drop = workdir / "drop"
        self.drop.mkdir()
        manifest = filedrop.DropManifest()
        self._age(filedrop.write_csv(self.drop / "wsjkw_cases_1.csv", 3, 30, manifest, series="C"),
                  filedrop.write_xml(self.drop / "wsjkw_cases_1.xml", 4, 20, manifest, series="X"))
        self.manifest = manifest
        return {**declared_source("cq-wsjkw-files.yaml"), "directory": str(self.drop), "stable_seconds": 30}

    def fail_source_once(self):
        # The XML export looks as if the department were still writing it.
        now = time.time()
        os.utime(self.drop / "wsjkw_cases_1.xml", (now, now))

    def source_recovers(self):
        self._age(self.drop / "wsjkw_cases_1.xml")

    def inject_bad_record(self):
        row = next(filedrop.wsjkw_rows(9, 1, series="B"))
        row[1] = filedrop.UNKNOWN_ITEM  # an item the code table does not know
        path = self.drop / "wsjkw_cases_bad.csv"
        path.write_bytes((",".join(filedrop.HEADER) + "\r\n" + ",".join(row) + "\r\n").encode("gbk"))
        self._age(path)
        return row[0]

    def serve_hostile_input(self):
        path = self.drop / "wsjkw_cases_evil.xml"
        path.write_text('<?xml version="1.0"?><!DOCTYPE e [<!ENTITY m "HOSTILE-EXPANDED">'
                        '<!ENTITY x SYSTEM "file:///etc/passwd">]><Export><Case><BJBH>&m;</BJBH>'
                        '<SXBM>&x;</SXBM></Case></Export>', encoding="utf-8")
        self._age(path)
        return "HOSTILE-EXPANDED"

    def change_source(self):
        self._age(filedrop.write_csv(self.drop / "wsjkw_cases_2.csv", 7, 10, series="N"))


# --- the two departments onboarded by mapping files alone ------------------------------------------------

def map_all(mapping, records):
    """(source keys mapped to valid snapshots, {key: field} of records that failed)."""
    from pydantic import ValidationError

    from tongban import codes
    from tongban.cases.models import CaseSnapshot
    from tongban.mapping import MappingError

    good, failed = set(), {}
    for record in records:
        try:
            snapshot = mapping.map_record(record)
            snapshot.pop("_flags", None)
            CaseSnapshot.model_validate(snapshot)
            codes.parse_item_code(snapshot["item_code"])
            good.add(snapshot["source_key"])
        except MappingError as exc:
            failed[exc.record_key] = exc.field
        except ValidationError as exc:  # pragma: no cover - shows what broke if a mapping goes wrong
            pytest.fail(f"{mapping.system}: mapped record is not a valid case: {exc}")
    return good, failed


def test_hrss_soap_cases_map_to_valid_snapshots_and_only_the_bad_ones_fail(monkeypatch):
    from adapters.soap import SoapAdapter

    service = HrssSoapService(seed=21, cases_count=300, password=DEFAULT_PASSWORD)
    url, stop = start_soap_server(service=service)
    try:
        monkeypatch.setenv("CQ_HRSS_WSDL", url + "?wsdl")
        monkeypatch.setenv("CQ_HRSS_USER", USERNAME)
        monkeypatch.setenv("CQ_HRSS_PASSWORD", DEFAULT_PASSWORD)
        mapping = load_mapping(MAPPINGS / "cq-hrss-soap.yaml")
        adapter = SoapAdapter(mapping.system, mapping.source)
        records = [r.data for r in adapter.fetch(None)]
        adapter.close()
    finally:
        stop()
    good, failed = map_all(mapping, records)
    assert set(failed) == set(service.bad_records)
    assert set(failed.values()) == {"item_code (ItemNo)", "application.applicant_id_number (CertNo)"}
    assert len(good) == 300 - len(service.bad_records)
    snapshots = [mapping.map_record(r) for r in records if r["CaseId"] in good]
    assert any(s["evaluation"] for s in snapshots) and any(s["conclusion"]["result"] == "2"
                                                           for s in snapshots if s["conclusion"])
    # every concluded case was accepted first: valid cases flow through the state machine
    assert all(s["acceptance"] for s in snapshots if s["conclusion"] and s["conclusion"]["result"] == "1")


def test_wsjkw_csv_xml_and_xlsx_exports_map_through_one_mapping(monkeypatch, tmp_path):
    from adapters.files import FileDropAdapter

    manifest = filedrop.write_exports(tmp_path, seed=4, rows=120, xml_rows=120, xlsx_rows=60)
    old = time.time() - 600
    for path in manifest.files:
        os.utime(path, (old, old))
    monkeypatch.setenv("CQ_WSJKW_DROP", str(tmp_path))
    mapping = load_mapping(MAPPINGS / "cq-wsjkw-files.yaml")
    raw = list(FileDropAdapter(mapping.system, mapping.source).fetch(None))
    assert sum(1 for r in raw if r.error) == len(manifest.csv_damaged_lines)
    good, failed = map_all(mapping, [r.data for r in raw if not r.error])
    assert set(failed) == set(manifest.bad_records)
    assert len(good) == 120 + 120 + 60 - len(manifest.csv_damaged_lines) - len(manifest.bad_records)
    assert {key[2] for key in good} == {"C", "X", "S"}  # all three formats


def test_sandbox_runs_three_departments_and_drops_a_new_export_on_advance(tmp_path, monkeypatch):
    from sandbox.environment import Sandbox

    for name in ("TONGBAN_PLATFORM_URL", "CQ_SAMR_URL", "CQ_HRSS_WSDL", "CQ_HRSS_USER", "CQ_HRSS_PASSWORD",
                 "CQ_WSJKW_DROP"):
        monkeypatch.delenv(name, raising=False)
    sandbox = Sandbox(tmp_path, cases=40).start()
    try:
        assert os.environ["CQ_HRSS_WSDL"].startswith("http://127.0.0.1:")
        assert os.environ["CQ_HRSS_USER"] == USERNAME and os.environ["CQ_HRSS_PASSWORD"]
        drop = Path(os.environ["CQ_WSJKW_DROP"])
        first = sorted(p.name for p in drop.glob("wsjkw_cases_*"))
        assert len(first) == 3
        clock = sandbox.soap.clock
        sandbox.advance(2)
        assert sandbox.soap.clock == clock + timedelta(days=2)
        assert len(list(drop.glob("wsjkw_cases_*"))) == 6
        assert load_mapping(MAPPINGS / "cq-hrss-soap.yaml").source["wsdl"] == os.environ["CQ_HRSS_WSDL"]
    finally:
        sandbox.stop()


def test_the_kit_imports_without_pytest_or_the_sandbox():
    """A third party's tooling (docs, a plugin registry) can import the kit without pytest or sandbox/ installed."""
    import subprocess
    import sys

    blocker = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('pytest', '_pytest', 'sandbox'):\n"
               "            raise ImportError(f'{name} is not installed here')\n"
               "sys.meta_path.insert(0, Block())\n"
               "import tongban.conformance as kit\n"
               "print(kit.AdapterConformance.__name__)\n")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "AdapterConformance"
