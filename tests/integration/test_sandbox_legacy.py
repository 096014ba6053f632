"""The mock legacy system cq-samr-rest: a deterministic world whose cases unfold tick by tick, its
deliberately bad records, and the REST API with auth, pagination and fault injection."""
from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sandbox.legacy_rest import create_app
from sandbox.legacy_world import (
    BAD_KINDS,
    DEPARTMENT_CREDIT_CODE,
    ITEMS,
    TIME_FORMAT,
    LegacyWorld,
)
from tongban.codes import CodeError, parse_credit_code, parse_id_number, parse_item_code, parse_region

ITEM_TABLE = Path(__file__).resolve().parents[2] / "mappings" / "tables" / "samr_items.csv"
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def small_world(**kwargs) -> LegacyWorld:
    return LegacyWorld(**{"seed": 11, "cases": 400, "bad_share": 0.04, **kwargs})


@pytest.fixture(scope="module")
def settled_world() -> LegacyWorld:
    world = small_world()
    world.advance(world.settled_tick)
    return world


def item_table() -> dict[str, dict[str, str]]:
    with ITEM_TABLE.open(encoding="utf-8", newline="") as handle:
        return {row["legacy_code"]: row for row in csv.DictReader(handle)}


# --- the world ----------------------------------------------------------------------------------------

def test_same_seed_gives_the_same_world_and_another_seed_a_different_one():
    first, second, other = small_world(), small_world(), small_world(seed=12)
    for world in (first, second, other):
        world.advance(3)
    assert first.records() == second.records()
    assert first.bad_cases() == second.bad_cases()
    assert first.records() != other.records()


def test_cases_appear_over_the_first_days_and_all_settle():
    world = small_world()
    counts = []
    for _ in range(5):
        counts.append(len(world.records()))
        world.advance()
    assert 0 < counts[0] < counts[1] < counts[2] < counts[3] < counts[4] == 400  # five days of applications
    world.advance(world.settled_tick)
    records = world.records()
    assert len(records) == 400
    assert all(record["bjsj"] for record in records), "every case is concluded or returned once settled"


def test_lifecycles_progress_in_order_as_the_clock_advances():
    world = small_world()
    early = {record["ywh"]: record for record in world.records()}
    world.advance(world.settled_tick)
    late = {record["ywh"]: record for record in world.records()}
    progressed = [key for key, record in early.items() if record["bjsj"] is None and late[key]["slsj"]]
    assert progressed, "some cases open at tick 0 are accepted and concluded later"
    for key in progressed:
        before, after = early[key], late[key]
        assert after["gxsj"] > before["gxsj"]
        assert len(after["hj"]) >= len(before["hj"])
        assert after["bjjg"] in ("准予许可", "不予许可")
    for record in late.values():
        if record["slsj"] is None:  # returned before acceptance
            assert record["bjjg"] == "退回" and record["hj"] == []
            continue
        moments = [record["slsj"]] + [t for step in record["hj"] for t in (step["kssj"], step["jssj"])]
        moments.append(record["bjsj"])
        assert moments == sorted(moments)
        assert all(step["zt"] == "已办" and step["dz"] for step in record["hj"])
        if record["pj"]:
            assert record["pj"]["pjsj"] > record["bjsj"] and record["pj"]["myd"] in "12345"


def test_pending_steps_show_no_end_and_no_opinion():
    world = small_world()
    pending = []
    for _ in range(6):
        pending += [step for record in world.records() for step in record["hj"] if step["zt"] == "待办"]
        world.advance()
    assert pending
    assert all(step["jssj"] is None and step["yj"] is None and step["dz"] is None for step in pending)


def test_updated_since_returns_exactly_the_cases_that_changed():
    world = small_world()
    world.advance(2)
    before = {record["ywh"]: record for record in world.records()}
    watermark = max(record["gxsj"] for record in before.values())
    assert world.records(watermark) == []
    world.advance()
    changed = world.records(watermark)
    expected = {record["ywh"] for record in world.records() if before.get(record["ywh"]) != record}
    assert {record["ywh"] for record in changed} == expected and expected
    assert [(r["gxsj"], r["ywh"]) for r in changed] == sorted((r["gxsj"], r["ywh"]) for r in changed)
    with pytest.raises(ValueError):
        world.records("2024/03/01")


def test_applicants_regions_and_items_are_valid_apart_from_the_bad_cases(settled_world):
    bad = settled_world.bad_cases()
    table = item_table()
    seen_lower_x = seen_full_width = seen_company = seen_retired = seen_town = False
    for record in settled_world.records():
        if record["ywh"] in bad:
            continue
        if record["zjlx"] == "SFZ":
            parse_id_number(record["zjhm"])
            seen_lower_x |= record["zjhm"].endswith("x")
            seen_full_width |= not record["zjhm"].isascii()
        else:
            assert record["zjlx"] == "TYSHXYDM"
            assert parse_credit_code(record["zjhm"]).checksum_ok
            seen_company = True
        region = parse_region(record["xzqh"])
        seen_retired |= region.retired_from is not None
        seen_town |= region.rolled_up
        assert record["sxbm"] in table
        datetime.strptime(record["sqsj"], TIME_FORMAT)
    assert seen_lower_x and seen_full_width and seen_company and seen_retired and seen_town


def test_bad_cases_cover_every_kind_and_each_breaks_its_rule(settled_world):
    bad = settled_world.bad_cases()
    assert len(bad) == 16 and sorted(set(bad.values())) == sorted(BAD_KINDS)
    table = item_table()
    for key, kind in bad.items():
        record = settled_world.record(key)
        if kind == "id_check_digit":
            assert record["zjlx"] == "SFZ"
            with pytest.raises(CodeError, match="check digit"):
                parse_id_number(record["zjhm"])
        elif kind == "unknown_item_code":
            assert record["sxbm"] == "SX-9999" and record["sxbm"] not in table
        elif kind == "impossible_date":
            with pytest.raises(ValueError):
                datetime.strptime(record["sqsj"], TIME_FORMAT)
        else:
            with pytest.raises(CodeError, match="outside Chongqing"):
                parse_region(record["xzqh"])


def test_bad_cases_existing_only_grows_with_the_clock():
    world = small_world()
    early = world.bad_cases(existing_only=True)
    world.advance(world.settled_tick)
    assert len(early) < len(world.bad_cases(existing_only=True)) == len(world.bad_cases())


def test_state_file_lets_a_restarted_world_continue(tmp_path):
    state = tmp_path / "legacy-state.json"
    world = small_world(state_file=state)
    world.advance(4)
    restarted = small_world(state_file=state)
    assert restarted.tick == 4 and restarted.records() == world.records()


# --- the item table ---------------------------------------------------------------------------------

def test_item_table_maps_every_legacy_item_to_a_valid_implementation_code():
    table = item_table()
    assert list(table) == [f"SX-{n:04d}" for n in range(1, 21)]
    names = {item.code: item.name for item in ITEMS}
    for legacy_code, row in table.items():
        item = parse_item_code(row["implementation_code"])
        assert item.kind == "implementation" and item.flags == ()
        assert item.implementing_body_credit_code == DEPARTMENT_CREDIT_CODE
        assert (item.level, item.region_prefix, item.sub) == ("2", "50", "000")
        assert item.item_type == row["item_type"] and row["item_type"] in ("01", "07", "20")
        assert row["name"] == names[legacy_code]
    assert len({row["implementation_code"] for row in table.values()}) == 20


# --- the REST API -----------------------------------------------------------------------------------

@pytest.fixture()
def client():
    world = small_world()
    with TestClient(create_app(world, token=TOKEN)) as test_client:
        test_client.world = world
        yield test_client


def test_cases_need_the_bearer_token(client):
    assert client.get("/api/cases").status_code == 401
    assert client.get("/api/cases", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/cases", headers=AUTH).json()["code"] == 0


def test_pages_add_up_to_the_whole_snapshot(client):
    client.post("/_sandbox/advance", params={"days": 2})
    items, page = [], 1
    while True:
        data = client.get("/api/cases", params={"page": page, "size": 70}, headers=AUTH).json()["data"]
        items += data["items"]
        if page * data["size"] >= data["total"]:
            break
        page += 1
    assert data["total"] == len(items) == len(client.world.records()) and page > 1
    assert items == client.world.records()


def test_advance_and_updated_since_over_http(client):
    first = client.get("/api/cases", params={"size": 1000}, headers=AUTH).json()["data"]
    watermark = first["items"][-1]["gxsj"]
    advanced = client.post("/_sandbox/advance", params={"days": 1}).json()["data"]
    assert advanced == {"tick": 1, "now": "2024-03-03 08:00:00"}
    later = client.get("/api/cases", params={"updated_since": watermark}, headers=AUTH).json()["data"]
    assert 0 < later["total"] and all(item["gxsj"] > watermark for item in later["items"])
    bad_since = client.get("/api/cases", params={"updated_since": "yesterday"}, headers=AUTH)
    assert bad_since.status_code == 400


def test_bad_cases_endpoint(client):
    assert client.get("/_sandbox/bad").json()["data"] == client.world.bad_cases()


def test_fault_injection_fails_then_recovers(client):
    client.post("/_sandbox/faults", json={"fail_next": 2, "status": 503})
    statuses = [client.get("/api/cases", headers=AUTH).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    client.post("/_sandbox/faults", json={"fail_next": 1, "status": 429})
    assert client.get("/api/cases", headers=AUTH).status_code == 429


def test_delay_injection_is_consumed_and_the_answer_still_arrives(client):
    client.post("/_sandbox/faults", json={"delay_next": 2, "seconds": 0.01})
    assert client.get("/api/cases", headers=AUTH).status_code == 200
    assert client.get("/_sandbox/state").json()["data"]["faults"]["delay_next"] == 1
