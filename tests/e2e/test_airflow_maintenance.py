"""Maintenance windows (维护窗口, article 27 报备) under `dag.test()`: a run inside a window is `skipped`, not failed,
and is a ledger event; the first run after it catches up from the watermark; outside every window a legacy outage
fails the run as before. Plus the mapping file's `maintenance:` and `concurrency:` rules, and the pool per system."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.airflow_harness import (  # noqa: F401 - airflow and world are fixtures
    REPO, _samr_mapping, _store, _watermark, airflow, world,
)

pytestmark = pytest.mark.airflow
ZONE_NAME = "Asia/Shanghai"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _now():
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(ZONE_NAME))


def _ledger(env, hop: str) -> list[dict]:
    from tongban.store.tables import ledger

    with _store(env).read() as conn:
        return [json.loads(r.detail) | {"system": r.system}
                for r in conn.execute(select(ledger.c.detail, ledger.c.system).where(ledger.c.hop == hop))]


def _tongban(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "tongban"), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def _with_window(path: Path, window: str | None) -> None:
    text = path.read_text(encoding="utf-8").split("\nmaintenance:")[0]
    path.write_text(text + (f"\nmaintenance:\n  - {window}\n" if window else ""), encoding="utf-8")


def test_a_weekly_window_skips_the_run_and_the_next_run_catches_up_from_the_watermark(world):
    samr = world.mappings / "cq-samr-rest.yaml"
    first = world.run("ingest__cq-samr-rest")
    assert first["state"] == "success"
    watermark = _watermark(world.env)

    # The department's weekly window covers now (one hour either side, past midnight if need be).
    start, end = _now() - timedelta(hours=1), _now() + timedelta(hours=1)
    _with_window(samr, f'{{day: {DAYS[start.weekday()]}, from: "{start:%H:%M}", to: "{end:%H:%M}", reason: 每周备份}}')
    world.world.advance(3)  # the legacy system moves on while it is "away"
    skipped = world.run("ingest__cq-samr-rest")

    assert skipped["state"] == "success"  # nothing failed: no alert
    assert skipped["tries"]["ingest"][1] == "skipped" and skipped["tries"]["report"][1] == "skipped"
    assert _watermark(world.env) == watermark
    (event,) = _ledger(world.env, "maintenance_skipped")
    assert event["system"] == "cq-samr-rest" and event["reason"] == "每周备份"
    assert event["origin"].startswith(f"mapping file {samr}:")

    _with_window(samr, None)  # the window is over
    after = world.run("ingest__cq-samr-rest")
    assert after["state"] == "success" and after["tries"]["ingest"] == [1, "success"]
    result = after["xcom"]["ingest"]
    assert result["watermark_before"] == watermark  # it continued from where the last real run stopped
    assert result["events_published"] > 0  # what changed while the system was away
    assert _watermark(world.env) > watermark


def test_an_announced_outage_skips_without_alert_and_a_failure_outside_it_fails(world):
    httpx.post(f"{world.legacy_url}/_sandbox/faults", json={"fail_next": 100, "status": 503}).raise_for_status()
    later = _now() + timedelta(days=1)
    fmt = "%Y-%m-%d %H:%M"
    future = _tongban(world.env, "maintenance", "add", "cq-samr-rest", "--from", f"{later:{fmt}}",
                      "--to", f"{later + timedelta(hours=2):{fmt}}", "--reason", "机房搬迁", "--json")
    assert future.returncode == 0, future.stderr

    failed = world.run("ingest__cq-samr-rest")  # down outside any window: fails as before, after every attempt
    assert failed["state"] == "failed" and failed["tries"]["ingest"] == [3, "failed"]

    now = _tongban(world.env, "maintenance", "add", "cq-samr-rest", "--from", f"{_now() - timedelta(minutes=5):{fmt}}",
                   "--to", f"{_now() + timedelta(hours=1):{fmt}}", "--reason", "紧急停机报备", "--json")
    assert now.returncode == 0, now.stderr
    announced = json.loads(now.stdout)
    skipped = world.run("ingest__cq-samr-rest")  # still down, but announced: skipped, not failed
    assert skipped["state"] == "success" and skipped["tries"]["ingest"][1] == "skipped"

    assert [e["reason"] for e in _ledger(world.env, "maintenance_announced")] == ["机房搬迁", "紧急停机报备"]
    (skip,) = _ledger(world.env, "maintenance_skipped")
    assert skip["reason"] == "紧急停机报备" and announced["window_id"] in skip["origin"]
    listed = json.loads(_tongban(world.env, "maintenance", "list", "--json").stdout)
    assert [(w["reason"], w["active"]) for w in listed] == [("紧急停机报备", True), ("机房搬迁", False)]


def test_an_ended_or_reversed_window_is_refused_naming_the_rule(world):
    fmt = "%Y-%m-%d %H:%M"
    ended = _tongban(world.env, "maintenance", "add", "cq-samr-rest", "--from", f"{_now() - timedelta(hours=3):{fmt}}",
                     "--to", f"{_now() - timedelta(hours=2):{fmt}}", "--reason", "x")
    assert ended.returncode == 2 and "it ended already" in ended.stderr
    reversed_ = _tongban(world.env, "maintenance", "add", "cq-samr-rest", "--from", "2026-12-25 06:00",
                         "--to", "2026-12-24 22:00", "--reason", "x")
    assert reversed_.returncode == 2 and "ends (2026-12-24 22:00) before it starts" in reversed_.stderr
    assert _ledger(world.env, "maintenance_announced") == []


@pytest.mark.parametrize("section, rule", [
    ("maintenance:\n  - {day: sun, from: \"25:00\", to: \"04:00\", reason: 备份}\n", "'25:00' is not a time of day"),
    ("maintenance:\n  - {day: someday, from: \"02:00\", to: \"04:00\", reason: 备份}\n", "is not a day of the week"),
    ("maintenance:\n  - {from: \"2026-12-24 22:00\", to: \"2026-12-25 06:00\"}\n", "every window needs a reason"),
    ("concurrency: 0\n", "concurrency must be a whole number from 1 to 64"),
])
def test_mapping_check_names_the_line_and_rule_of_a_bad_schedule_setting(tmp_path, section, rule):
    path = _samr_mapping(tmp_path)
    text = path.read_text(encoding="utf-8")
    if section.startswith("concurrency"):  # the file already says `concurrency: 2`
        lines = text.splitlines()
        line = next(n for n, l in enumerate(lines, 1) if l.startswith("concurrency:"))
        path.write_text("\n".join(lines[:line - 1] + [section.rstrip()] + lines[line:]) + "\n", encoding="utf-8")
    else:
        path.write_text(text + section, encoding="utf-8")
        line = len(text.splitlines()) + 2
    done = _tongban({"TONGBAN_HOME": str(tmp_path)}, "mapping", "check", str(path))
    assert done.returncode == 1
    assert f"{path}:{line}: " in done.stdout + done.stderr and rule in done.stdout + done.stderr


def test_each_legacy_system_gets_a_pool_sized_by_its_concurrency_and_the_ingest_task_takes_it(airflow, tmp_path):
    from tongban.scheduling.ingest_plans import discover
    from tongban.scheduling.pools import pools_for

    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(REPO / "mappings")})
    assert loaded["pools"]["ingest__cq-samr-rest"]["ingest"] == "legacy__cq-samr-rest"
    assert loaded["pools"]["ingest__cq-hrss-soap"]["ingest"] == "legacy__cq-hrss-soap"
    plans, errors = discover(REPO / "mappings")
    assert errors == []
    pools = pools_for(plans)  # what scripts/airflow-env.sh imports (`airflow pools import`) at every start
    assert pools["legacy__cq-samr-rest"]["slots"] == 2  # mappings/cq-samr-rest.yaml: concurrency: 2
    assert pools["legacy__cq-hrss-soap"]["slots"] == 1   # no concurrency: one call at a time
