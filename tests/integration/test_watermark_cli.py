"""`tongban watermark show|set|reset`: each change is a ledger event, and the next ingest run follows it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongban.cli import app

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "cq-samr-rest"


@pytest.fixture
def samr(samr_mappings, sandbox_env):
    return samr_mappings


def _run(*args: str, code: int = 0):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def _json(*args: str):
    return json.loads(_run(*args, "--json").stdout)


def _ledger(hop: str) -> list[dict]:
    from sqlalchemy import select

    from tongban.settings import load
    from tongban.store import open_store
    from tongban.store.tables import ledger

    with open_store(load().db_url).read() as conn:
        rows = conn.execute(select(ledger).where(ledger.c.hop == hop).order_by(ledger.c.seq)).mappings().all()
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def test_set_and_reset_are_ledger_events_and_the_next_run_follows_them(samr):
    first = _json("ingest")
    assert first["fetched"] > 0 and first["watermark_after"]
    shown = _json("watermark", "show", SYSTEM)
    assert shown["watermark"] == first["watermark_after"] and shown["mapping_file"].endswith("cq-samr-rest.yaml")

    # Moved past every record: the next run asks only for later changes and finds none.
    out = _run("watermark", "set", SYSTEM, "2099-01-01 00:00:00", "--operator", "ops-li", "--reason", "skip history")
    assert "→ 2099-01-01 00:00:00" in out.stdout
    (event,) = _ledger("watermark_set")
    assert event["system"] == SYSTEM and event["detail"] == {
        "from": first["watermark_after"], "to": "2099-01-01 00:00:00", "operator": "ops-li", "reason": "skip history"}
    assert _json("ingest")["fetched"] == 0

    # Cleared: the next run fetches everything again, and change detection sends nothing twice.
    reset = _json("watermark", "reset", SYSTEM)
    assert reset["from"] == "2099-01-01 00:00:00" and reset["to"] is None
    (event,) = _ledger("watermark_reset")
    assert event["detail"]["from"] == "2099-01-01 00:00:00" and event["detail"]["operator"]
    again = _json("ingest")
    assert again["fetched"] == first["fetched"] and again["events_published"] == 0
    assert _json("watermark", "show", SYSTEM)["watermark"] == first["watermark_after"]

    assert _json("audit", "verify")["ok"] is True  # operator changes sit in the hash chain like every hop


def test_refusals(tmp_path, monkeypatch):
    folder = tmp_path / "mappings"
    folder.mkdir()
    text = (REPO / "mappings" / "cq-samr-rest.yaml").read_text(encoding="utf-8").replace(
        "incremental: {param: updated_since}", 'incremental: {param: updated_since, format: "%Y%m%d%H%M%S"}')
    assert "%Y%m%d%H%M%S" in text
    (folder / "cq-samr-rest.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("TONGBAN_MAPPINGS", str(folder))
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))

    typo = _run("watermark", "set", "cq-samr-rst", "20261127080000", code=2)
    assert "unknown system 'cq-samr-rst'" in typo.stderr and "cq-samr-rest" in typo.stderr
    wrong = _run("watermark", "set", SYSTEM, "2026-11-27 08:00", code=2)
    assert "does not fit the mapping's incremental.format" in wrong.stderr and "20261127080000" in wrong.stderr
    assert _run("watermark", "reset", SYSTEM, code=1).stderr.startswith(f"error: {SYSTEM} has no watermark to reset")
    assert not _ledger("watermark_set") and not _ledger("watermark_reset")  # a refusal changes nothing

    _run("watermark", "set", SYSTEM, "20261127080000")
    listed = _run("watermark", "show").stdout
    assert SYSTEM in listed and "20261127080000" in listed
