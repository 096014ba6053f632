"""`tongban sandbox up --port-base N` (every service on N, N+1, …, env.sh, the district sinks and the mock
ministry), the sandbox catalogue seeded from the mapping files whatever their tables' encoding, and the demo
finding its own mappings from any working directory."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sandbox.catalogue_seed import seed_items
from sandbox.runner import port_free

REPO = Path(__file__).resolve().parents[2]
TONGBAN = str(Path(sys.executable).with_name("tongban"))
SERVICES = ["platform", "legacy-rest", "legacy-soap", "ministry", "district-sinks"]
# 实施编码 of a department the sandbox has never seen (its own credit code, its own items).
NEW_CODES = {"gb_dict": "11500000MB1B75012N2500155001000", "gb_plain": "11500000MB1B75012N2500155002000",
             "utf8": "11500000MB1B75012N2500155003000", "const": "11500000MB1B75012N2500155004000"}


def free_port_base(count: int = len(SERVICES)) -> int:
    for _ in range(200):
        base = random.randint(20000, 60000)
        if all(port_free("127.0.0.1", base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def new_department(folder: Path) -> Path:
    """A mapping folder laid out differently from the checkout's, with GB18030 and UTF-8 tables."""
    (folder / "codes").mkdir(parents=True)
    (folder / "codes" / "items-gb.csv").write_bytes(
        f"旧事项编码,实施编码,name\nA1,{NEW_CODES['gb_dict']},食品小作坊登记\n".encode("gb18030"))
    (folder / "codes" / "more-gb.csv").write_bytes(
        f"旧事项编码,实施编码,name\nA2,{NEW_CODES['gb_plain']},小餐饮登记\n".encode("gb18030"))
    (folder / "codes" / "utf8.csv").write_text(f"code,target\nA3,{NEW_CODES['utf8']}\n", encoding="utf-8-sig")
    (folder / "codes" / "broken.csv").write_bytes(b"\xff\xfe\x00garbage")
    (folder / "cq-newdept.yaml").write_text(f"""
system: cq-newdept
department: 重庆市某区联合会
tables:
  items: {{path: codes/items-gb.csv, encoding: gb18030}}
  more: codes/more-gb.csv
  utf8: codes/utf8.csv
  broken: {{path: codes/broken.csv, encoding: utf-8}}
  missing: codes/nowhere.csv
case:
  item_code: {{const: "{NEW_CODES['const']}"}}
""", encoding="utf-8")
    (folder / "not-yaml.yaml").write_text("system: [unclosed", encoding="utf-8")
    return folder


def test_the_catalogue_holds_every_code_the_mappings_look_up_whatever_the_encoding(tmp_path):
    items = {item["implementation_code"]: item for item in seed_items([new_department(tmp_path / "m")])}
    assert set(NEW_CODES.values()) <= set(items)
    assert items[NEW_CODES["gb_dict"]]["name"] == "食品小作坊登记"    # GB18030 read as declared
    assert items[NEW_CODES["gb_plain"]]["name"] == "小餐饮登记"        # plain path: utf-8 failed, GB18030 read
    assert items[NEW_CODES["utf8"]]["implementing_body"] == "重庆市某区联合会"
    assert items[NEW_CODES["const"]]["item_type"] == NEW_CODES["const"][21:23]
    sandbox = {item["implementation_code"] for item in seed_items([REPO / "mappings"])}
    assert "11500000MB1B75012N2500129001000" in sandbox and len(sandbox) > 20  # the sandbox departments' own


def _start_up(tmp_path, base: int, mappings: Path):
    env = {**os.environ, "TONGBAN_HOME": str(tmp_path / "home"), "TONGBAN_MAPPINGS": str(mappings),
           "TONGBAN_BUS": "inprocess"}
    for name in ("TONGBAN_PLATFORM_URL", "TONGBAN_DISTRICT_GATEWAY", "TONGBAN_MINISTRY_URL"):
        env.pop(name, None)
    process = subprocess.Popen([TONGBAN, "sandbox", "up", "--port-base", str(base), "--cases", "40", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=30)
        raise AssertionError(f"sandbox up exited {process.returncode}: {process.stderr.read()}")
    return process, json.loads(line), env


def test_sandbox_up_on_a_port_base(tmp_path):
    base = free_port_base()
    process, up, env = _start_up(tmp_path, base, new_department(tmp_path / "newdept"))
    try:
        assert {name: up["services"][name]["port"] for name in SERVICES} == \
            {name: base + offset for offset, name in enumerate(SERVICES)}
        urls = {name: up["services"][name]["url"] for name in SERVICES}
        exported = dict(line.removeprefix("export ").split("=", 1)
                        for line in Path(up["env_file"]).read_text(encoding="utf-8").splitlines())
        assert exported["TONGBAN_PLATFORM_URL"] == urls["platform"] == f"http://127.0.0.1:{base}"
        assert exported["CQ_SAMR_URL"] == urls["legacy-rest"]
        assert exported["TONGBAN_MINISTRY_URL"] == urls["ministry"] == f"http://127.0.0.1:{base + 3}"
        assert exported["TONGBAN_DISTRICT_GATEWAY"] == urls["district-sinks"] == f"http://127.0.0.1:{base + 4}"
        assert "SANDBOX_MINISTRY_PASSWORD" in exported and exported["SANDBOX_MINISTRY_USER"]

        # what the README says to run next: the ministry's waiting batch, read with env.sh alone, routes
        import shlex

        flowback_env = {**env, **{name: shlex.split(value)[0] for name, value in exported.items()},
                        "TONGBAN_HOME": str(tmp_path / "flowback-home")}
        # a home of its own, so its database is new: the operator's first step for any new database
        upgraded = subprocess.run([TONGBAN, "db", "upgrade", "--json"], capture_output=True, text=True,
                                  env=flowback_env, cwd=tmp_path, timeout=60)
        assert upgraded.returncode == 0 and json.loads(upgraded.stdout)["at_head"], upgraded.stdout + upgraded.stderr
        routed = subprocess.run([TONGBAN, "flowback", "ingest", str(REPO / "mappings/flowback/sources/mps-soap.yaml"),
                                 "--json"], capture_output=True, text=True, env=flowback_env, cwd=tmp_path, timeout=120)
        assert routed.returncode == 0, routed.stdout + routed.stderr
        run = json.loads(routed.stdout)
        assert run["batches"] and all(batch["routed"] > 0 for batch in run["batches"])
        assert run["balanced"] is None  # routed, not yet delivered: only `flowback report` may say BALANCED

        assert httpx.get(f"{urls['platform']}/healthz").json() == {"status": "ok"}
        assert httpx.get(urls["legacy-soap"]).text.lstrip().startswith("<?xml")  # the WSDL
        # the district sinks answer like a careful district system (a record needs its Idempotency-Key)
        assert httpx.post(f"{urls['district-sinks']}/districts/500101/records", json={}).status_code == 400
        # the mock ministry asks for its credentials
        assert httpx.post(f"{urls['ministry']}/ministry/FlowbackService", content=b"<x/>").status_code == 401

        # the platform's catalogue knows the new department's items (and still the sandbox's own)
        from tongban.platform.client import PlatformClient
        from tongban.settings import Settings

        client = PlatformClient(Settings(platform_url=urls["platform"]))
        codes = {item["implementation_code"] for item in client.get("/api/v1/catalog")["items"]}
        client.close()
        assert set(NEW_CODES.values()) <= codes and "11500000MB1B75012N2500129001000" in codes

        # a second sandbox on the same ports is refused in one line, before anything starts
        second = subprocess.run([TONGBAN, "sandbox", "up", "--port-base", str(base)], capture_output=True, text=True,
                                env={**env, "TONGBAN_HOME": str(tmp_path / "other")}, timeout=60)
        assert second.returncode == 3 and "Traceback" not in second.stderr
        # the sandbox's once-per-process warning about public default secrets is a line of its own, not the error's
        error_lines = [line for line in second.stderr.splitlines() if not line.startswith("tongban: sandbox mode:")]
        assert len(error_lines) == 1 and f"{base} (platform)" in error_lines[0]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        process.stdout.close()
        process.stderr.close()
    assert all(port_free("127.0.0.1", base + i) for i in range(len(SERVICES)))  # every service stopped


def test_the_demo_finds_its_mappings_from_any_directory(tmp_path, monkeypatch):
    from sandbox import demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TONGBAN_MAPPINGS", str(tmp_path / "somewhere-else"))
    assert demo.demo_mappings_dir() == REPO / "mappings"
    assert demo.demo_mappings_dir(REPO / "mappings") == REPO / "mappings"
    with pytest.raises(demo.DemoMappingsMissing, match="no mapping files"):
        demo.demo_mappings_dir(tmp_path)

    from typer.testing import CliRunner

    from tongban.cli import app

    monkeypatch.setattr(demo, "SANDBOX_MAPPINGS", tmp_path / "not-installed")  # a wheel install, say
    monkeypatch.chdir(REPO)
    assert demo.demo_mappings_dir() == REPO / "mappings"  # standing in a checkout is enough then
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sandbox", "demo"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "sandbox mapping files" in result.stderr and "--mappings" in result.stderr


@pytest.mark.slow
def test_a_short_demo_run_from_another_directory(tmp_path):
    env = {**os.environ, "TONGBAN_HOME": str(tmp_path / "home"), "TONGBAN_BUS": "inprocess"}
    for name in ("TONGBAN_MAPPINGS", "TONGBAN_PLATFORM_URL", "CQ_SAMR_URL", "TONGBAN_DB_URL"):
        env.pop(name, None)
    result = subprocess.run([TONGBAN, "sandbox", "demo", "--cases", "40", "--polls", "1", "--json"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["fetched"] > 0 and summary["delivered"] > 0 and summary["duplicates"] == 0
