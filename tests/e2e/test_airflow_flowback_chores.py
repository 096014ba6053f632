"""Airflow runs the national flowback (one DAG per ministry source) and the daily/hourly chores (catalogue sync,
identity retry) — with the same harness and the same long-lived Airflow process as tests/e2e/test_airflow_dags.py."""
from __future__ import annotations

import json
import re
import shutil
from types import SimpleNamespace

import httpx
import pytest
import yaml
from sqlalchemy import select

from tests.airflow_harness import REPO, _samr_mapping, _store, airflow, world  # noqa: F401 - fixtures
from tongban.store.at_rest import reveal

pytestmark = pytest.mark.airflow


FLOWBACK_SOURCES = REPO / "mappings" / "flowback" / "sources"


def test_each_flowback_source_file_is_a_dag_on_its_schedule_and_the_chores_are_scheduled(airflow):
    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(REPO / "mappings")})
    assert loaded["errors"] == {}
    for path in sorted(FLOWBACK_SOURCES.glob("*.yaml")):
        source = yaml.safe_load(path.read_text(encoding="utf-8"))
        dag = loaded["tasks"][f"flowback__{source['system']}"]
        assert dag["schedule"] == source["schedule"].replace("@hourly", "0 * * * *")
        assert dag["flowback"][0] == 2  # a ministry service that is away gets two more tries
    catalog, identity = loaded["tasks"]["ops__catalog_sync"], loaded["tasks"]["ops__identity_retry"]
    assert catalog["schedule"] == "0 0 * * *" and catalog["catalog_sync"][:2] == [2, 30.0]
    assert identity["schedule"] == "0 * * * *" and identity["identity_retry"][0] == 3


def test_a_broken_flowback_source_file_is_named_and_the_other_dags_load(airflow, tmp_path):
    mappings = tmp_path / "mappings"
    _samr_mapping(mappings)
    shutil.copytree(REPO / "mappings" / "flowback", mappings / "flowback")
    broken = mappings / "flowback" / "sources" / "mps-broken.yaml"
    broken.write_text("system: mps-broken\nschedule: \"@hourly\"\nsource: {adapter: files, directory: x}\n"
                      "record: {key: ROWGUID}\nflowback:\n  fieldz: {}\n", encoding="utf-8")

    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(mappings)})

    assert {"flowback__mps-flowback-files", "flowback__mps-flowback-soap", "ingest__cq-samr-rest",
            "ops__catalog_sync"} <= set(loaded["dags"])
    assert "flowback__mps-broken" not in loaded["dags"]
    (where, message), = loaded["errors"].items()
    assert where.endswith("tongban_mapping_errors.py")
    assert f"{broken}:6: flowback: unknown key 'fieldz'" in message  # file, line of the mistake, the rule
    assert "mps-files.yaml" not in message and "cq-samr-rest.yaml" not in message


@pytest.fixture
def ministry(tmp_path, airflow):
    """The repository's file-drop ministry source, unchanged, pointed at a tmp TONGBAN_HOME (its drop folder and
    the counties' file sinks live there) and at the sandbox district sinks (TONGBAN_DISTRICT_GATEWAY)."""
    from sandbox.district_sinks import DistrictSinkWorld

    home = tmp_path / "home"
    # mappings/flowback/district-sinks.yaml drops the counties' records in ${TONGBAN_HOME}/flowback-drop/<code>.
    sinks = DistrictSinkWorld(home / "flowback-drop").start()
    env = {"TONGBAN_HOME": str(home), "TONGBAN_MAPPINGS": str(REPO / "mappings"), "TONGBAN_BUS": "inprocess",
           "TONGBAN_DB_URL": f"sqlite:///{home}/tongban.db", "TONGBAN_DISTRICT_GATEWAY": sinks.server.url}
    yield SimpleNamespace(env=env, sinks=sinks, incoming=home / "ministry-drop" / "incoming",
                          run=lambda: airflow("run", env, "flowback__mps-flowback-files"))
    sinks.stop()


def test_the_file_drop_flowback_dag_routes_ministry_batches_to_the_district_sinks_and_balances(ministry):
    from sandbox.ministry import make_batch, write_batch

    batches = [make_batch("MPS-20260301-0001", 180, seed=7), make_batch("MPS-20260301-0002", 120, seed=8)]
    write_batch(ministry.incoming, batches[0], "xml")
    write_batch(ministry.incoming, batches[1], "csv")

    run = ministry.run()

    assert run["state"] == "success"
    report = run["xcom"]["flowback"]
    assert report["balanced"] and report["source"] == "mps-flowback-files"
    assert {r["batch_id"]: r["received"] for r in report["reconciliations"]} == {
        "MPS-20260301-0001": 180, "MPS-20260301-0002": 120}
    received = ministry.sinks.received_by_rowguid()  # REST districts, the city, and the counties' file drops
    for batch in batches:
        for guid, expected in batch.expected.items():
            assert received.get(guid) == (None if expected.startswith("quarantine:") else expected), guid
    assert report["delivery"]["delivered"] == len(received)
    # The next run finds nothing new and still balances.
    again = ministry.run()
    assert again["state"] == "success" and again["xcom"]["flowback"]["batches"] == []


def test_a_batch_that_does_not_match_its_manifest_fails_the_flowback_dag_at_once(ministry):
    from sandbox.ministry import make_batch, write_batch

    write_batch(ministry.incoming, make_batch("MPS-20260302-0001", 40, seed=9), "csv")
    manifest = ministry.incoming / "MPS-20260302-0001.manifest.json"
    claimed = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps({**claimed, "record_count": claimed["record_count"] + 1}), encoding="utf-8")

    run = ministry.run()

    assert run["state"] == "failed"
    # No retry: the batch is already routed, a second try would find nothing and pass.
    assert run["tries"]["flowback"] == [1, "failed"]
    assert "flowback mps-flowback-files does not balance" in run["log"]
    assert "batch MPS-20260302-0001: records in 40 ≠ manifest count 41" in run["log"]


def test_catalog_sync_passes_on_the_default_catalogue_and_fails_once_an_item_of_a_mapping_table_retires(world):
    from collections import Counter

    from tongban.catalog import current, waiting_cases
    from tongban.store.tables import case_snapshots

    assert world.run("ingest__cq-samr-rest")["state"] == "success"  # cases under way, catalogue version 1 synced
    ok = world.run("ops__catalog_sync")
    assert ok["state"] == "success"
    report = ok["xcom"]["catalog_sync"]
    assert report["version"] == 1 and report["affected_files"] == {} and report["problems_by_file"] == {}

    store = _store(world.env)
    with store.read() as conn:
        snapshots = [json.loads(reveal(s)) for s in conn.execute(select(case_snapshots.c.snapshot)).scalars()]
    code = Counter(s["item_code"] for s in snapshots if not s.get("conclusion")).most_common(1)[0][0]
    open_cases = waiting_cases(store, [code])[code]["open_cases"]
    assert open_cases >= 1
    platform_url = world.env["TONGBAN_PLATFORM_URL"]
    httpx.post(f"{platform_url}/_sandbox/catalog", json={"retire": [code]}).raise_for_status()

    failed = world.run("ops__catalog_sync")

    assert failed["state"] == "failed"
    assert failed["tries"]["catalog_sync"] == [1, "failed"]  # a finding, not an outage: no retry
    assert current(store).version == 2  # it did sync the new version before judging it
    mapping = world.mappings / "cq-samr-rest.yaml"
    assert f"{mapping}: sends withdrawn 实施编码 {code} — {open_cases} open cases, 0 quarantined" in failed["log"]
    assert re.search(rf"{re.escape(str(mapping))}: items: \S+ → {code}: retired: ", failed["log"])
    # The next day it still fails: the mapping table still sends the retired item.
    assert world.run("ops__catalog_sync")["state"] == "failed"


def test_identity_retry_is_retried_by_airflow_while_throttled_and_then_replays_the_waiting_case(world):
    from tongban import codes
    from tongban.store.tables import case_snapshots

    platform_url = world.env["TONGBAN_PLATFORM_URL"]
    bad = world.world.bad_cases()
    victim = next(r for r in world.world.records() if r["ywh"] not in bad and r["zjlx"] == "SFZ" and len(r["zjhm"]) == 18
                  and codes.normalise(r["zjhm"]).isascii() and r["zjhm"][-1].isdigit())
    httpx.post(f"{platform_url}/_sandbox/users", json={"unknown": [victim["zjhm"]]}).raise_for_status()
    assert world.run("ingest__cq-samr-rest")["state"] == "success"  # the victim's case waits in quarantine

    nothing_yet = world.run("ops__identity_retry")
    assert nothing_yet["state"] == "success"
    assert nothing_yet["xcom"]["identity_retry"]["replayed"] == 0  # the service still does not know them

    # The service knows the applicant now, but throttles the next requests (every quick retry inside the first try).
    httpx.post(f"{platform_url}/_sandbox/users",
               json={"known": [victim["zjhm"]], "throttle_next": 8, "retry_after": 0}).raise_for_status()

    run = world.run("ops__identity_retry", retry_delay=1)

    assert run["state"] == "success"
    assert run["tries"]["identity_retry"][0] >= 2  # the throttled try raised; Airflow tried again
    assert "the unified user service throttled the retry" in run["log"]
    summary = run["xcom"]["identity_retry"]
    assert summary["throttled"] is False and summary["replayed"] >= 1 and summary["waiting"] == 0
    with _store(world.env).read() as conn:
        snapshot = conn.execute(select(case_snapshots.c.snapshot)
                                .where(case_snapshots.c.source_key == victim["ywh"])).scalar()
    assert snapshot and json.loads(reveal(snapshot))["application"]["applicant_user_id"].startswith("U")
