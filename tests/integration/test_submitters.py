"""The submit side of the adapter seam (adapters/submit.py) through the conformance kit, against the sandbox's bundle
departments (sandbox/bundle_depts.py): REST POST, REST PUT under the reference, JSON and GB18030 XML file drops."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sandbox.bundle_depts import DEFAULT_TOKEN, BundleWorld, create_app
from sandbox.runner import Server
from tongban.bundle.submit import load_submit_target
from tongban.conformance import SubmitterConformance

REPO = Path(__file__).resolve().parents[2]
DEPARTMENTS = REPO / "mappings" / "bundles" / "departments"


class _Sandbox:
    """The bundle departments' sandbox as a conformance target. A test class names its department in its class
    statement: `kind` (the submitter), `mapping` (the department's mapping file), `prefix` (its path on the sandbox)."""

    prefix = ""

    def __init_subclass__(cls, kind: str = "", mapping: str = "", prefix: str = "", **rest):
        super().__init_subclass__(**rest)
        if mapping:
            cls.submitter_kind, cls.mapping_file, cls.prefix = kind, DEPARTMENTS / mapping, prefix

    def start_target(self, workdir: Path):
        self.world = BundleWorld(drop_root=workdir / "drop")
        self.server = Server(create_app(self.world), port=0, name="bundle-depts").start()
        self.monkeypatch.setenv("CQ_BUNDLE_TOKEN", DEFAULT_TOKEN)
        settings = dict(load_submit_target(self.mapping_file).settings)
        if "wsdl" in settings:
            settings["wsdl"] = f"{self.server.url}/{self.prefix}/soap?wsdl"
            settings["retry"] = {"attempts": 3, "initial_wait": 0.01, "max_wait": 0.05}
        elif "base_url" in settings:
            settings["base_url"] = self.server.url
            settings["retry"] = {"attempts": 3, "initial_wait": 0.01, "max_wait": 0.05}
            settings["limits"] = {"max_response_bytes": 1_000_000, "max_json_depth": 64}
        else:
            settings["directory"] = str(workdir / "drop" / self.prefix / "inbox")
        return settings

    def stop_target(self) -> None:
        self.server.stop()

    def dept(self):
        return self.world.departments[self.prefix]

    def cases_opened(self, reference: str) -> int:
        with self.world.lock:
            self.world.read_drops(self.dept())
        return sum(1 for case in self.dept().cases.values() if case["record"]["wbbh"] == reference)


class _RestSandbox(_Sandbox):
    def _control(self, body: dict) -> None:
        httpx.post(f"{self.server.url}/_sandbox/{self.prefix}/faults", json=body).raise_for_status()

    def fail_target_once(self) -> None:
        self._control({"fail_next": 1, "status": 503})

    def refuse_next(self, reference: str) -> None:
        self._control({"fail_next": 1, "status": 422})

    def serve_hostile_answer(self, kind: str) -> None:
        self._control({"hostile_next": kind})


class TestRestPostSubmitter(_RestSandbox, SubmitterConformance, kind="rest", mapping="cq-gaj-rest.yaml", prefix="gaj"):
    """A new application is POSTed (公安局)."""


class TestRestPutSubmitter(_RestSandbox, SubmitterConformance, kind="rest", mapping="cq-rsj-rest.yaml", prefix="rsj"):
    """An application is PUT under its reference (人社局)."""


class TestSoapSubmitter(_RestSandbox, SubmitterConformance, kind="soap", mapping="cq-swj-soap.yaml", prefix="swj"):
    def start_target(self, workdir: Path):
        settings = super().start_target(workdir)
        self.monkeypatch.setenv("CQ_SWJ_USER", "intake")
        return settings


class _FileSandbox(_Sandbox):
    def refuse_next(self, reference: str) -> None:
        inbox = Path(self.settings["directory"])
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / f"{reference}.{self.settings['format']}").write_text("another application", encoding="utf-8")


class TestJsonFileSubmitter(_FileSandbox, SubmitterConformance, kind="files", mapping="cq-wsjkw-birth.yaml",
                            prefix="wsjkw"):
    """A JSON file dropped in the inbox (卫健委)."""


class TestXmlFileSubmitter(_FileSandbox, SubmitterConformance, kind="files", mapping="cq-ybj-files.yaml", prefix="ybj"):
    def test_the_file_is_gb18030_xml_the_department_reads(self):
        submission = self.submission()
        self.submit(submission)
        written = Path(self.settings["directory"]) / f"{submission.reference}.xml"
        raw = written.read_bytes()
        assert raw.startswith(b'<?xml version="1.0" encoding="GB18030"?>')
        assert "王小明".encode("gb18030") in raw
        assert not [p for p in written.parent.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
        assert self.cases_opened(submission.reference) == 1
        assert self.dept().cases[next(iter(self.dept().cases))]["fields"]["xsexm"] == "王小明"


def test_an_envelope_error_quotes_the_legacy_message(tmp_path, monkeypatch):
    world = BundleWorld()
    server = Server(create_app(world), port=0).start()
    try:
        monkeypatch.setenv("CQ_BUNDLE_TOKEN", DEFAULT_TOKEN)
        target = load_submit_target(DEPARTMENTS / "cq-gaj-rest.yaml")
        from adapters.base import SourceError
        from adapters.rest_submit import RestSubmitter
        from adapters.submit import Submission

        submitter = RestSubmitter(target.system, {**target.settings, "base_url": server.url})
        with pytest.raises(SourceError, match="cq-gaj-rest.*外部编号 and 事项编码 are required"):
            submitter.submit(Submission("REF-1", "", {}))
        submitter.close()
    finally:
        server.stop()


def test_an_envelope_error_without_a_message_is_quoted_with_its_secrets_blanked(monkeypatch):
    """A department that answers an error with no message but echoes a token: the error quotes the answer as the
    fetch side does, with the token blanked (errors reach logs, quarantine and operators)."""
    import httpx

    from adapters.base import SourceError
    from adapters.rest_submit import RestSubmitter
    from adapters.submit import Submission

    monkeypatch.setenv("CQ_BUNDLE_TOKEN", DEFAULT_TOKEN)
    target = load_submit_target(DEPARTMENTS / "cq-gaj-rest.yaml")
    answer = {"code": 7, "access_token": "s3cr3t-echoed-token", "detail": "名称不符"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    submitter = RestSubmitter(target.system, {**target.settings, "base_url": "http://dept.test"}, transport=transport)
    try:
        with pytest.raises(SourceError) as caught:
            submitter.submit(Submission("REF-2", "", {}))
    finally:
        submitter.close()
    assert "名称不符" in str(caught.value) and "s3cr3t-echoed-token" not in str(caught.value)
