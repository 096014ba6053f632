"""`--json` on the operator commands, end to end against the sandbox's platform and legacy REST system: stdout holds
valid JSON and nothing else (notices go to stderr); a progress bar shows on a terminal only."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongban.cli import app

REPO = Path(__file__).resolve().parents[2]
TONGBAN = str(Path(sys.executable).with_name("tongban"))


@pytest.fixture
def one_system(samr_mappings, sandbox_env):
    """The REST department alone in a mapping folder of its own, pointed at the sandbox servers."""
    return samr_mappings


def _json(args: list[str], exit_code: int = 0):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    return json.loads(result.stdout), result  # the whole of stdout is one JSON document


def test_ingest_worker_status_quarantine_trace_audit_as_json(one_system):
    ingest, result = _json(["ingest", "--json"])
    assert "in-process bus" in result.stderr  # the notice went to stderr, not into the JSON
    assert ingest["system"] == "cq-samr-rest" and ingest["error"] is None
    assert ingest["fetched"] > 0 and ingest["events_published"] > 0
    assert ingest["quarantined"] > 0  # the sandbox world holds bad records on purpose

    worker, _ = _json(["worker", "--idle-exit", "0.5", "--json"])
    assert worker["delivered"] == ingest["events_published"] and "latencies" not in worker

    status, _ = _json(["status", "--json"])
    (row,) = [r for r in status["systems"] if r["system"] == "cq-samr-rest"]
    assert row["events_delivered"] == worker["delivered"]
    assert 0 < row["cases_delivered"] <= row["events_delivered"]
    assert row["quarantined_open"] == ingest["quarantined"] and row["parked_open"] == 0
    assert row["watermark"] == ingest["watermark_after"]
    assert set(row) >= {"system", "cases_delivered", "events_delivered", "quarantined_open", "parked_open", "watermark"}
    human = CliRunner().invoke(app, ["status"]).stdout  # the same numbers for people
    assert f"cq-samr-rest  cases delivered {row['cases_delivered']}, events delivered {row['events_delivered']}" in human

    listed, _ = _json(["quarantine", "list", "--json", "--limit", "2"])
    assert listed["total"] == ingest["quarantined"] and listed["shown"] == min(2, listed["total"])
    assert all("rule" in e and "record" not in e for e in listed["entries"])
    shown, _ = _json(["quarantine", "show", str(listed["entries"][0]["id"]), "--json"])
    assert shown["system"] == "cq-samr-rest" and shown["record"]
    assert shown["record"].count("zjhm") and not re.search(r"\d{17}[\dX]", shown["record"])  # 证件号码 masked

    replayed, _ = _json(["quarantine", "replay", str(shown["id"]), "--json"])
    assert {k: replayed[k] for k in ("selected", "replayed", "republished", "skipped")} == {
        "selected": 1, "replayed": 1, "republished": 0, "skipped": 0}
    assert replayed["summary"].startswith("replayed 1 records through ingest")
    assert _json(["quarantine", "show", str(shown["id"]), "--json"])[0]["status"] == "replayed"

    parked, _ = _json(["parked", "list", "--json"])
    assert parked == {"total": 0, "shown": 0, "entries": []}
    assert _json(["parked", "replay", "--json"])[0] == {
        "kind": "parked", "selected": 0, "replayed": 0, "republished": 0, "skipped": 0, "summary": "nothing to replay"}

    trace, _ = _json(["trace", _delivered_case(), "--json"])
    assert {"numbered", "published", "delivered", "receipt"} <= {event["hop"] for event in trace}

    verified, _ = _json(["audit", "verify", "--json"])
    assert verified["ok"] is True and verified["events"] > 0


def _delivered_case() -> str:
    from sqlalchemy import select

    from tongban.settings import load
    from tongban.store import open_store
    from tongban.store.tables import deliveries

    with open_store(load().db_url).read() as conn:
        return conn.execute(select(deliveries.c.case_number).limit(1)).scalar()


def test_ingest_json_is_a_list_for_several_systems_and_names_the_broken_one(one_system, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("system: zz\nsource: {adapter: rest}\n", encoding="utf-8")
    outcomes, _ = _json(["ingest", str(one_system / "cq-samr-rest.yaml"), str(broken), "--json"], exit_code=2)
    assert [o["system"] for o in outcomes] == ["cq-samr-rest", None]
    assert outcomes[0]["error"] is None and outcomes[0]["fetched"] > 0
    assert outcomes[1]["mapping_file"] == str(broken) and "record" in outcomes[1]["error"]


def test_json_of_the_other_groups(tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    region, _ = _json(["check", "region", "500101", "--json"])
    assert region["county_code"] == "500101" and region["name"] == "万州区"
    assert _json(["catalog", "versions", "--json"])[0] == []
    assert _json(["identity", "conflicts", "--json"])[0] == []
    certs, _ = _json(["certs", "init", "--dir", str(tmp_path / "ca"), "--json"])
    assert certs["sandbox_only"] is True and Path(certs["ca_cert"]).is_file() and certs["departments"]
    marks, _ = _json(["watermark", "show", "--json"])
    assert {m["system"] for m in marks} >= {"cq-samr-rest", "cq-hrss-soap", "cq-wsjkw-files"}


def _ledger_home(tmp_path) -> dict:
    """A home whose ledger holds a few thousand events, for the progress bar to have something to count."""
    from tongban.audit import ledger
    from tongban.audit.ledger import LedgerEvent
    from tongban.store import open_store

    home = tmp_path / "home"
    home.mkdir()
    ledger.record(open_store(f"sqlite:///{home / 'tongban.db'}"),
                  *(LedgerEvent("fetched", {"n": i}, system="s") for i in range(6000)))
    return {**os.environ, "TONGBAN_HOME": str(home), "TONGBAN_BUS": "inprocess", "TERM": "xterm"}


def _on_a_terminal(args: list[str], env: dict, cwd: Path) -> bytes:
    """What a person at a terminal sees (stdout and stderr on a pseudo-terminal)."""
    import pty

    main, child = pty.openpty()
    process = subprocess.Popen([TONGBAN, *args], stdout=child, stderr=child, env=env, cwd=cwd)
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=60) == 0, seen
    os.close(main)
    return seen


def test_audit_verify_shows_a_progress_bar_on_a_terminal_only(tmp_path):
    env = _ledger_home(tmp_path)
    seen = _on_a_terminal(["audit", "verify"], env, tmp_path)
    assert b"verifying the ledger" in seen and b"ledger intact: 6000 events" in seen

    piped = subprocess.run([TONGBAN, "audit", "verify"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=60)
    assert piped.stdout == ("ledger intact: 6000 events, hash chain verified; "
                            "0 delivery events, each with its publication\n")  # no bar, no escape codes
    as_json = subprocess.run([TONGBAN, "audit", "verify", "--json"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=60)
    assert json.loads(as_json.stdout)["events"] == 6000


def test_ingest_counts_records_on_a_terminal(one_system, tmp_path):
    seen = _on_a_terminal(["ingest"], {**os.environ, "TERM": "xterm"}, tmp_path)
    assert b"cq-samr-rest: fetching" in seen and b"/?" in seen  # a running count: the total is not known ahead
    assert b"cq-samr-rest: fetched " in seen
