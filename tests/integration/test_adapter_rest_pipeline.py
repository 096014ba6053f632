"""The REST adapter through the real pipeline against the messy legacy server: watermark ties lose nothing
(overlap + change detection), and `tongban ingest` as a user runs it (every record fetched, exit 0; a fatal
answer inside HTTP 200: exit 1, the watermark unmoved)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.legacy_world import LegacyWorld
from sandbox.messy_rest import MessyServer, create_app
from sandbox.platform import create_app as platform_app
from sandbox.runner import Server
from tests.schema_at_head import home_at_head

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
TONGBAN = str(Path(sys.executable).with_name("tongban"))
SYSTEM = "cq-messy-rest"
PASSWORD = "pipeline-pw"

MESSY_SOURCE = """source:
  adapter: rest
  base_url: ${CQ_MESSY_URL}
  path: /api/cases
  auth: {type: login, url: /auth/login, body: {username: cl_sync, password_env: CQ_CL_PASSWORD},
         token_path: result.token, header: X-Auth-Token, expires_in_path: result.expiresIn}
  pagination: {style: page, page_param: pageNo, size_param: pageSize, size: PAGE_SIZE, total_path: result.totalCount}
  envelope: {success: "code == '0000'", retry: "code == '9999'", reauth: "code == '4011'", message: msg}
  incremental: {param: gxsjStart, format: "%Y%m%d%H%M%S", overlap_seconds: OVERLAP}
  records_path: result.list
  retry: {attempts: 8, initial_wait: 0.01, max_wait: 0.05}

"""


def write_mapping(folder: Path, page_size: int = 20, overlap: int = 600) -> Path:
    """cq-samr-rest's case mapping (the messy server shows the same world) with the messy system's source."""
    text = (REPO / "mappings" / "cq-samr-rest.yaml").read_text(encoding="utf-8")
    source = MESSY_SOURCE.replace("PAGE_SIZE", str(page_size)).replace("OVERLAP", str(overlap))
    text = re.sub(r"(?ms)^source:\n.*?(?=^record:)", lambda _m: source, text)
    text = text.replace("system: cq-samr-rest", f"system: {SYSTEM}")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "mappings" / "tables", folder / "tables", dirs_exist_ok=True)
    path = folder / f"{SYSTEM}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def stack(tmp_path, monkeypatch):
    world = LegacyWorld(seed=13, cases=50, bad_share=0.0)
    world.advance(10)
    messy = MessyServer(world, password=PASSWORD)
    legacy = Server(create_app(messy), name="messy").start()
    platform = Server(platform_app(str(tmp_path / "platform.db")), name="platform").start()
    env = {"TONGBAN_HOME": str(home_at_head(tmp_path / "home")), "TONGBAN_PLATFORM_URL": platform.url, "CQ_MESSY_URL": legacy.url,
           "CQ_CL_PASSWORD": PASSWORD, "TONGBAN_BUS": "inprocess"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield messy, tmp_path, env
    legacy.stop()
    platform.stop()


def _ingest(store, mapping_path):
    from tongban.bus.local import LocalBus
    from tongban.bus.topology import cases_work
    from tongban.pipeline.ingest import run_ingest
    from tongban.mapping import load_mapping
    from tongban.platform.client import PlatformClient
    from tongban.settings import load

    return run_ingest(load_mapping(mapping_path), store=store, bus=LocalBus(store), platform=PlatformClient(load()),
                      work=cases_work("t"))


def _case_number(store, key):
    from tongban.store import state as st

    with store.read() as conn:
        return st.get_case_number(conn, SYSTEM, key)


@pytest.mark.parametrize("overlap", [600, 0])
def test_a_record_written_late_in_the_same_second_at_a_page_boundary_is_not_lost(stack, sqlite_store, overlap):
    messy, tmp_path, _env = stack
    shown = messy.visible()
    newest = shown[-1]
    # The late record K: a case whose transaction commits after the run read the newest record N, with N's
    # 更新时间 (a tie), sorting right after N: N ends a page, K starts the next one.
    late_key = next(r["ywh"] for r in reversed(shown[:-1]) if r["ywh"] > newest["ywh"] and r["sxbm"] != "SX-9999")
    messy.hold_back(late_key)
    messy.release()
    second_run = messy.visible(_minus(newest["gxsj"], 600))
    page_size = [r["ywh"] for r in second_run].index(newest["ywh"]) + 1
    messy.tie_with = None  # not committed yet
    assert second_run[page_size]["ywh"] == late_key and second_run[page_size]["gxsj"] == newest["gxsj"]
    mapping = write_mapping(tmp_path / "mappings", page_size=page_size, overlap=overlap)

    first = _ingest(sqlite_store, mapping)
    assert first.fetched == len(shown) - 1 and first.watermark_after == newest["gxsj"]
    assert _case_number(sqlite_store, late_key) is None

    messy.release()  # K commits, in the same second as N
    second = _ingest(sqlite_store, mapping)
    if overlap:
        # Asked from the watermark minus the overlap: K is fetched; everything fetched again is recognised
        # as unchanged by change detection (no event, no quarantine).
        assert second.fetched == len(second_run) >= 2 and second.quarantined == 0
        assert second.unchanged == second.fetched - 1 and second.cases_changed == 1
        assert _case_number(sqlite_store, late_key) is not None
    else:
        # Without an overlap the exclusive 更新时间 filter skips K for good: why overlap_seconds exists.
        assert second.fetched == 0 and _case_number(sqlite_store, late_key) is None


def _minus(stamp: str, seconds: int) -> str:
    from datetime import datetime, timedelta

    return (datetime.strptime(stamp, "%Y%m%d%H%M%S") - timedelta(seconds=seconds)).strftime("%Y%m%d%H%M%S")


def _tongban(args, env, tmp_path):
    full = {**os.environ, **env, "COLUMNS": "200"}
    return subprocess.run([TONGBAN, *args], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=100)


def _watermark(env):
    from tongban.store import Store
    from tongban.store import state as st

    store = Store(f"sqlite:///{env['TONGBAN_HOME']}/tongban.db")
    try:
        with store.read() as conn:
            return st.get_watermark(conn, SYSTEM)
    finally:
        store.dispose()


def test_tongban_ingest_fetches_every_record_of_a_messy_system_and_fails_loudly_on_a_fatal_answer(stack):
    messy, tmp_path, env = stack
    messy.quirks.busy_share, messy.quirks.token_calls, messy.quirks.page_cap = 0.25, 3, 15
    mapping = write_mapping(tmp_path / "mappings", page_size=40)
    total = messy.total()

    run = _tongban(["ingest", str(mapping)], env, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(rf"{SYSTEM}: fetched {total}\b", run.stdout), run.stdout
    assert messy.stats.busy > 0 and messy.stats.reauth > 0 and messy.stats.logins >= 2  # the mess was there
    watermark = _watermark(env)
    assert watermark == messy.visible()[-1]["gxsj"]

    messy.world.advance(3)  # new progress to fetch, then the legacy database fails mid-run
    messy.quirks.busy_share, messy.quirks.page_cap = 0.0, 1  # one record a page: the failure comes mid-run
    messy.quirks.fatal_on_call = messy.stats.data_calls + 2
    run = _tongban(["ingest", str(mapping)], env, tmp_path)
    assert run.returncode == 1
    out = " ".join((run.stdout + run.stderr).split())  # the failure is reported on stderr
    assert f"{SYSTEM}: ingest failed" in out and "数据库连接失败" in out and "the watermark did not move" in out
    assert "Traceback" not in run.stdout + run.stderr
    assert _watermark(env) == watermark


def test_a_run_that_stops_between_two_tied_records_moves_no_watermark_and_the_next_loses_neither(stack, sqlite_store):
    """The issue's case: 更新时间 compared exclusively, two records sharing one, a page boundary between them, and
    the run interrupted right there (a fatal answer inside HTTP 200 on the next page)."""
    messy, tmp_path, _env = stack
    from adapters.base import SourceError

    shown = messy.visible()
    first, second = shown[9]["ywh"], shown[-1]["ywh"]
    messy.quirks.same_time_as = {second: first}  # the last record now shares the 10th one's 更新时间
    tied = [r["ywh"] for r in messy.visible()]
    assert tied[9:11] == [first, second]
    mapping = write_mapping(tmp_path / "mappings", page_size=10)
    messy.quirks.fatal_on_call = 2  # page 2 starts with the second of the pair

    with pytest.raises(SourceError, match="数据库连接失败"):
        _ingest(sqlite_store, mapping)
    from tongban.store import state as st

    with sqlite_store.read() as conn:
        assert st.get_watermark(conn, SYSTEM) is None  # the failed run moved nothing
    report = _ingest(sqlite_store, mapping)
    assert report.fetched == len(tied) and report.quarantined == 0
    assert _case_number(sqlite_store, first) and _case_number(sqlite_store, second)
