"""The new-user trial of issue 12: a legacy REST system with its own layout (form login at another path, its own
envelope codes, camelCase fields, an ISO 更新时间 filter), onboarded by a YAML file only
(tests/data/cq-mzj-rest/), against a messy sandbox server. One `tongban ingest` accounts for every record:
delivered + quarantined = fetched = the system's total."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.legacy_world import LegacyWorld
from sandbox.messy_rest import Layout, MessyServer, Quirks, create_app
from sandbox.platform import create_app as platform_app
from sandbox.runner import Server
from tongban.platform.client import PlatformClient
from tongban.settings import Settings
from tests.schema_at_head import home_at_head

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]  # about 12 s: ingest and delivery of 120 cases

MAPPING = Path(__file__).resolve().parents[1] / "data" / "cq-mzj-rest" / "cq-mzj-rest.yaml"
TONGBAN = str(Path(sys.executable).with_name("tongban"))

RENAME = {"ywh": "caseId", "sxbm": "itemNo", "xzqh": "areaCode", "bjlx": "caseType", "sqrxm": "applicantName",
          "zjlx": "certType", "zjhm": "certNo", "lxdh": "phone", "sbqd": "channel", "sqsj": "applyTime",
          "cl": "materials", "slsj": "acceptTime", "slr": "acceptor", "cnbjsj": "promiseTime", "hj": "steps",
          "bjsj": "finishTime", "bjjg": "result", "bjsm": "resultNote", "zzmc": "licenceName", "zzbh": "licenceNo",
          "yxqq": "validFrom", "yxqz": "validTo", "pj": "evaluation", "gxsj": "updateTime"}


def _recode(record: dict) -> dict:
    record["itemNo"] = "MZ" + record["itemNo"][-2:]  # SX-0007 → MZ07; the deliberately unknown SX-9999 → MZ99
    return record


MZJ = Layout(login_path="/sso/api/token", login_user_key="account", login_password_key="pwd",
             token_header="Authorization", token_prefix="Bearer ", list_path="/openapi/v1/bj/list",
             page_param="current", size_param="rows", since_param="modifiedFrom", since_format="%Y-%m-%dT%H:%M:%S",
             code_key="retCode", message_key="retMsg", result_key="data", list_key="records", total_key="total",
             token_key="accessToken", expires_key="ttl", ok="S0", busy="E-BUSY", reauth="E-TOKEN",
             bad_login="E-AUTH", fatal="E-SYS", rename=RENAME, recode=_recode)


def test_a_new_messy_system_from_yaml_alone_accounts_for_every_record(tmp_path):
    world = LegacyWorld(seed=21, cases=120, bad_share=0.05)
    world.advance(12)
    messy = MessyServer(world, layout=MZJ, username="mzj_sync", password="mzj-pw",
                        quirks=Quirks(busy_share=0.15, seed=4, page_cap=40, token_calls=2, revoke_every=5))
    legacy = Server(create_app(messy), name="mzj").start()
    platform = Server(platform_app(str(tmp_path / "platform.db")), name="platform").start()
    env = {**os.environ, "TONGBAN_HOME": str(home_at_head(tmp_path / "home")), "TONGBAN_PLATFORM_URL": platform.url,
           "CQ_MZJ_URL": legacy.url, "CQ_MZJ_PASSWORD": "mzj-pw", "TONGBAN_BUS": "inprocess", "COLUMNS": "200"}
    try:
        run = subprocess.run([TONGBAN, "ingest", str(MAPPING)], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=150)
        assert run.returncode == 0, run.stdout + run.stderr
        counts = re.search(r"cq-mzj-rest: fetched (\d+), unchanged (\d+), cases changed (\d+), events published "
                           r"(\d+), quarantined (\d+)", run.stdout)
        assert counts, run.stdout
        fetched, unchanged, changed, _events, quarantined = map(int, counts.groups())
        total = messy.total()
        assert fetched == total and unchanged == 0 and changed + quarantined == fetched
        assert quarantined == len(world.bad_cases(existing_only=True)) > 0
        assert messy.stats.busy and messy.stats.reauth and messy.stats.revoked  # the mess was real

        delivered = subprocess.run([TONGBAN, "worker", "--idle-exit", "2"], cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=150)
        assert delivered.returncode == 0, delivered.stdout + delivered.stderr
        stats = PlatformClient(Settings(platform_url=platform.url)).get("/api/v1/stats")
        assert stats["cases"] + quarantined == fetched == total
    finally:
        legacy.stop()
        platform.stop()
