"""Airflow schedules and retries every ingest: the DAG factory, the operations DAGs, and real `dag.test()` runs
(the harness, shared with the flowback and chores tests, is tests/airflow_harness.py)."""
from __future__ import annotations

import os

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from tests.airflow_harness import (  # noqa: F401 - airflow and world are fixtures
    REPO, _deliver, _published_keys, _samr_mapping, _settings, _store, _valid_cases, _watermark, airflow, world,
)

pytestmark = pytest.mark.airflow


def test_every_dag_loads_with_the_schedule_and_retries_its_mapping_file_declares(airflow):
    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(REPO / "mappings")})
    assert loaded["errors"] == {}
    for path in sorted((REPO / "mappings").glob("*.yaml")):
        assert f"ingest__{yaml.safe_load(path.read_text(encoding='utf-8'))['system']}" in loaded["dags"]
    assert {"ops__replay", "ops__reconcile"} <= set(loaded["dags"])
    samr = loaded["tasks"]["ingest__cq-samr-rest"]
    assert samr["schedule"] == "*/15 * * * *"
    # mappings/cq-samr-rest.yaml: retries: {attempts: 3, delay_seconds: 60, max_delay_seconds: 900}
    assert samr["ingest"] == [2, 60.0, 2.0, 900.0]
    assert samr["check_mapping"][0] == 0  # a broken file is not retried


def test_a_broken_mapping_file_is_one_named_import_error_and_a_new_file_is_a_new_dag(airflow, tmp_path):
    mappings = tmp_path / "mappings"
    _samr_mapping(mappings)
    _samr_mapping(mappings, system="cq-newcomer-rest")  # a department onboarding: one file, no code
    broken = _samr_mapping(mappings, system="cq-broken-rest")
    text = broken.read_text(encoding="utf-8").replace('schedule: "*/15 * * * *"', 'schedule: "every quarter hour"')
    broken.write_text(text, encoding="utf-8")
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith("schedule:"))

    loaded = airflow("load", {"TONGBAN_MAPPINGS": str(mappings)})

    assert {"ingest__cq-samr-rest", "ingest__cq-newcomer-rest", "ops__replay", "ops__reconcile"} <= set(loaded["dags"])
    assert "ingest__cq-broken-rest" not in loaded["dags"]
    assert len(loaded["errors"]) == 1
    (where, message), = loaded["errors"].items()
    assert where.endswith("tongban_mapping_errors.py")
    assert f"{broken}:{line}: schedule 'every quarter hour' is not a cron expression" in message
    assert "cq-samr-rest.yaml" not in message and "cq-newcomer-rest.yaml" not in message
    assert loaded["tasks"]["ingest__cq-newcomer-rest"]["ingest"] == [2, 1.0, 2.0, 2.0]


# ------------------------------------------------------------------------------------------ runs
def test_the_legacy_system_fails_the_first_attempts_and_airflow_retry_delivers(world):
    # The first two fetches answer 503; the REST adapter gives up at once, so only Airflow's third try succeeds.
    httpx.post(f"{world.legacy_url}/_sandbox/faults", json={"fail_next": 2, "status": 503}).raise_for_status()

    run = world.run("ingest__cq-samr-rest")

    assert run["state"] == "success"
    assert run["tries"]["ingest"] == [3, "success"]
    assert run["tries"]["report"][1] == "success"
    assert _watermark(world.env) is not None
    stats, platform = _deliver(world.env)
    assert platform.get("/api/v1/stats")["cases"] == _valid_cases(world.world) > 0
    assert stats.duplicates == 0


def test_a_run_that_fails_for_good_leaves_nothing_half_done_and_the_next_run_delivers_once(world):
    world.world.advance(10)  # every case exists and has progressed: about 630 events in all
    _samr_mapping(world.mappings, page_size=130)  # page 1 alone holds more than one publish chunk (500 events)
    world.outage.from_page = 2  # … so a chunk is published before page 2 answers 503, on every try

    failed = world.run("ingest__cq-samr-rest")

    assert failed["state"] == "failed"
    assert failed["tries"]["ingest"] == [3, "failed"]  # every attempt the mapping file allows
    assert _watermark(world.env) is None  # the watermark has not moved
    assert _published_keys(world.env), "the outage should come after the first chunk was published"

    world.outage.from_page = None
    later = world.run("ingest__cq-samr-rest")
    assert later["state"] == "success"
    assert _watermark(world.env) is not None
    stats, platform = _deliver(world.env)

    published = _published_keys(world.env)
    assert len(published) == len(set(published))  # nothing published twice across the failed and the later run
    platform_stats = platform.get("/api/v1/stats")
    assert platform_stats["cases"] == _valid_cases(world.world)
    assert platform_stats["events"] == len(published) == stats.delivered  # each event delivered exactly once

    # ops__reconcile agrees: a receipt for every delivery, equal case counts per item code.
    assert world.run("ops__reconcile")["state"] == "success"


def test_reconcile_names_the_gap_and_its_dag_fails_when_the_platform_lacks_a_case(world):
    from tongban.platform.client import PlatformClient
    from tongban.audit.reconcile import reconcile
    from tongban.store.tables import case_numbers, deliveries

    assert world.run("ingest__cq-samr-rest")["state"] == "success"
    _deliver(world.env)
    store, platform = _store(world.env), PlatformClient(_settings(world.env))
    assert reconcile(store, platform).gaps == []
    # The ledger says one more case of an item was delivered than the platform holds (the platform lost it).
    with store.write() as conn:
        item = conn.execute(select(case_numbers.c.item_code).limit(1)).scalar()
        conn.execute(case_numbers.insert().values(system="cq-samr-rest", source_key="GHOST", case_number="GHOST-1",
                                                  item_code=item, assigned_at="2026-01-01T00:00:00Z"))
        conn.execute(deliveries.insert().values(idempotency_key="ghost", message_id="m-ghost", case_number="GHOST-1",
                                                sequence=1, receipt="{}", delivered_at="2026-01-01T00:00:00Z"))
    gaps = reconcile(store, platform).gaps
    assert any(g.startswith(f"item {item}: ledger has") and "the platform holds" in g for g in gaps)

    assert world.run("ops__reconcile")["state"] == "failed"


def test_ops_replay_replays_only_the_entries_an_operator_marked(world):
    from tongban.operator.replay_marks import mark_for_replay, pending
    from tongban.store.tables import ledger, quarantine

    world.world.advance(10)
    assert world.run("ingest__cq-samr-rest")["state"] == "success"
    store = _store(world.env)
    with store.read() as conn:
        ids = list(conn.execute(select(quarantine.c.id).where(quarantine.c.status == "open")
                                .order_by(quarantine.c.id)).scalars())
    assert len(ids) >= 2, "the sandbox world seeds bad records"
    with pytest.raises(ValueError, match="999999"):
        mark_for_replay(store, "quarantine", [999999])
    assert mark_for_replay(store, "quarantine", [ids[0]], by="operator") == 1

    assert world.run("ops__replay")["state"] == "success"

    with store.read() as conn:
        status = dict(conn.execute(select(quarantine.c.id, quarantine.c.status)
                                   .where(quarantine.c.id.in_(ids[:2]))).all())
        replayed = conn.execute(select(func.count()).select_from(ledger).where(ledger.c.hop == "replayed")).scalar()
    assert status == {ids[0]: "replayed", ids[1]: "open"}  # the unmarked entry is untouched
    assert replayed == 1
    assert pending(store, "quarantine") == []


def test_every_ingest_dag_of_the_repository_runs_against_the_full_sandbox(airflow, tmp_path, monkeypatch):
    """The real mapping files, unchanged, against the sandbox's REST, SOAP and file-drop departments."""
    from sandbox.environment import Sandbox
    from tongban.store.tables import ledger

    exported = ["TONGBAN_PLATFORM_URL", "CQ_SAMR_URL", "CQ_SAMR_TOKEN", "CQ_HRSS_WSDL", "CQ_HRSS_USER",
                "CQ_HRSS_PASSWORD", "CQ_WSJKW_DROP"]
    for name in exported:  # Sandbox.start() exports these into os.environ; monkeypatch puts them back afterwards
        monkeypatch.delenv(name, raising=False)
    sandbox = Sandbox(tmp_path / "sandbox", cases=40).start()
    try:
        home = tmp_path / "home"
        env = {"TONGBAN_HOME": str(home), "TONGBAN_MAPPINGS": str(REPO / "mappings"), "TONGBAN_BUS": "inprocess",
               "TONGBAN_DB_URL": f"sqlite:///{home}/tongban.db", **{name: os.environ[name] for name in exported}}
        systems = [yaml.safe_load(path.read_text(encoding="utf-8"))["system"]
                   for path in sorted((REPO / "mappings").glob("*.yaml"))]
        for system in systems:
            run = airflow("run", env, f"ingest__{system}")
            assert run["state"] == "success", (system, run)
        stats, platform = _deliver(env)
        with _store(env).read() as conn:
            published_by_system = dict(conn.execute(select(ledger.c.system, func.count())
                                                    .where(ledger.c.hop == "published").group_by(ledger.c.system)).all())
        assert set(published_by_system) == set(systems)
        assert stats.delivered == sum(published_by_system.values())
        assert airflow("run", env, "ops__reconcile")["state"] == "success"
    finally:
        sandbox.stop()


def test_a_marked_parked_delivery_is_republished_once_and_the_mark_closes(tmp_path):
    """replay_marks without Airflow: the parked entry stays open (holding its case back) until the replay runs."""
    from tongban.operator import quarantine as q
    from tongban.bus.local import LocalBus
    from tongban.bus.topology import CASES
    from tongban.bus.envelope import KIND_CASE_EVENT, Envelope
    from tongban.operator.replay_marks import mark_for_replay, pending, replay_marked
    from tongban.store import Store
    from tongban.store.tables import parked

    store = Store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    bus.declare(CASES)
    env = Envelope(kind=KIND_CASE_EVENT, source="cq-samr-rest", idempotency_key="k1", correlation="N1",
                   payload={"event": "application", "sequence": 1, "source_key": "YW1"})
    with store.write() as conn:
        first = q.park(conn, message_id=env.message_id, idempotency_key="k1", system="cq-samr-rest", case_number="N1",
                       reason="gave up after 8 attempts", envelope_json=env.to_bytes().decode())
        second = q.park(conn, message_id="m2", idempotency_key="k2", system="cq-samr-rest", case_number="N2",
                        reason="gave up after 8 attempts", envelope_json=env.to_bytes().decode())

    assert mark_for_replay(store, "parked", [first]) == 1
    assert mark_for_replay(store, "parked", [first]) == 0  # marking twice is harmless
    with store.read() as conn:  # still open: later events of case N1 keep waiting behind it
        assert q.is_blocked(conn, "N1", None, None)
    assert pending(store, "parked") == [first]

    result = replay_marked(store, bus)

    assert result.parked_ids == [first]
    assert bus.depth(CASES.queue) == 1
    with store.read() as conn:
        assert dict(conn.execute(select(parked.c.id, parked.c.status)).all()) == {first: "replayed", second: "open"}
    assert pending(store, "parked") == []
    assert replay_marked(store, bus).messages == ["nothing marked for replay"]
    with pytest.raises(ValueError, match="not found or not open"):
        mark_for_replay(store, "parked", [first])
    store.dispose()
