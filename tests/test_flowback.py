"""National data flowback (数据回流): routing rules, file-drop batches through the local bus to the sandbox
district sinks, reconciliation, duplicate batches, sink retries and parking, and the CLI report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.district_sinks import DistrictSinkWorld
from sandbox.ministry import MinistryBatch, make_batch, write_batch
from tongban import ledger
from tongban import quarantine as q
from tongban.bus.local import LocalBus
from tongban.flowback import load_source_config, reconcile, run_flowback_source
from tongban.flowback.config import RoutingConfig
from tongban.flowback.routing import Reject, Route, Router
from tongban.flowback.worker import DistrictDeliverer, replay_parked_flowback
from tongban.store import open_store

ROUTING = Path(__file__).resolve().parents[1] / "mappings" / "flowback" / "routing.yaml"
TASK = "11500103MB1234567X" + "4" + "500100101000"   # a district body's 实施编码 (checksum not needed here)
MUNICIPAL_TASK = "11500000MB1234567X" + "2" + "500100101000"


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_source_config({"source": "t", "transport": {"kind": "files", "drop_dir": "x"},
                                      "routing": str(ROUTING)}).routing)


def rec(area: str | None, task: str = TASK, **extra) -> dict:
    record = {"ROWGUID": "g1", "TASKCODE": task, "APPLYERCARDCODE": "510202198001010011", **extra}
    if area is not None:
        record["AREACODE"] = area
    return record


# --- routing rules -----------------------------------------------------------------------------------
def test_current_code_routes_to_its_district_never_by_the_applicants_id(router):
    # The applicant's ID number carries a pre-1997 Sichuan prefix; the case's own 行政区划 decides.
    route = router.route(rec("500103"))
    assert route == Route("500103", "500103")


def test_retired_code_is_translated_to_its_successor(router):
    route = router.route(rec("500222"))  # 綦江县 → 綦江区
    assert isinstance(route, Route) and route.target == "500110" and route.translated_from == "500222"


@pytest.mark.parametrize("area", ["500106003", "500106003201", "５００１０６００３"])
def test_town_and_village_codes_roll_up_to_their_county(router, area):
    route = router.route(rec(area))
    assert isinstance(route, Route) and route.target == "500106" and route.rolled_up


def test_retired_village_code_is_rolled_up_and_translated(router):
    route = router.route(rec("500381104002"))  # 江津市 village → 江津区
    assert isinstance(route, Route) and route.target == "500116" and route.translated_from == "500381"


def test_city_code_and_municipal_items_go_to_the_city_queue(router):
    assert router.route(rec("500000")).target == "city"
    assert router.route(rec("500000002")).target == "city"
    municipal = router.route(rec("500105", task=MUNICIPAL_TASK))
    assert municipal.target == "city" and "municipal" in municipal.why


def test_functional_zone_routes_where_the_configuration_says(router):
    route = router.route(rec("500192"))
    assert route.target == "500112" and route.zone == "两江新区"
    other = Router(RoutingConfig(zones=[{"code": "500192", "name": "两江新区", "route_to": "city"}]))
    assert other.route(rec("500192")).target == "city"


@pytest.mark.parametrize("area,words", [("110105", "other province"), ("510104", "other province"),
                                        ("500199", "unknown region code"), ("5001", "6, 9 or 12 digits")])
def test_other_provinces_and_unknown_codes_are_rejected_with_the_rule(router, area, words):
    result = router.route(rec(area))
    assert isinstance(result, Reject) and result.field == "AREACODE" and words in result.rule


def test_record_without_region_is_rejected_even_when_the_id_number_looks_chongqing(router):
    result = router.route(rec(None, APPLYERCARDCODE="500103198001010011"))
    assert isinstance(result, Reject) and "no region" in result.rule


def test_bad_item_code_is_rejected_naming_the_field(router):
    result = router.route(rec("500103", task="1150010"))
    assert isinstance(result, Reject) and result.field == "TASKCODE"


# --- end to end over the local bus -------------------------------------------------------------------
@pytest.fixture
def sinks(tmp_path):
    world = DistrictSinkWorld(tmp_path / "sinks").start()
    yield world
    world.stop()


def file_source(tmp_path: Path, sinks: DistrictSinkWorld, **retry) -> dict:
    return {"source": "mps-test-files", "transport": {"kind": "files", "drop_dir": str(tmp_path / "drop")},
            "routing": load_source_config({"source": "x", "transport": {"kind": "files", "drop_dir": "x"},
                                           "routing": str(ROUTING)}).routing.model_dump(),
            "sinks": sinks.sinks_config(retry={"initial_delay": 0.05, "max_delay": 0.2, **retry}).model_dump()}


def assert_arrived_as_expected(batch: MinistryBatch, sinks: DistrictSinkWorld) -> None:
    received = sinks.received_by_rowguid()
    for guid, expected in batch.expected.items():
        if expected.startswith("quarantine:"):
            assert guid not in received, f"{guid} ({expected}) reached a district"
        else:
            assert received.get(guid) == expected, f"{guid} should reach {expected}, got {received.get(guid)}"


def test_file_batches_flow_to_district_sinks_and_reconcile(tmp_path, sinks):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    xml_batch = make_batch("MPS-20240301-0001", 300, seed=3)
    csv_batch = make_batch("MPS-20240301-0002", 200, seed=4)
    write_batch(tmp_path / "drop" / "incoming", xml_batch, "xml")
    write_batch(tmp_path / "drop" / "incoming", csv_batch, "csv")
    config = file_source(tmp_path, sinks)

    report = run_flowback_source(config, store=store, bus=bus, prefix="t.flowback")

    assert report.balanced, [r.gaps for r in report.reconciliations]
    for batch in (xml_batch, csv_batch):
        assert_arrived_as_expected(batch, sinks)
    kinds = {e.split(":")[1] for b in (xml_batch, csv_batch) for e in b.expected.values() if e.startswith("quarantine:")}
    assert {"other_province", "no_region"} <= kinds
    recs = {r.batch_id: r for r in report.reconciliations}
    first = recs["MPS-20240301-0001"]
    assert first.records_in == 300 == first.routed + first.quarantined
    assert first.quarantined == sum(e.startswith("quarantine:") for e in xml_batch.expected.values())
    assert first.digest == first.manifest_digest
    # A county (file drop) received full records, ID numbers included: the district owns the case.
    county_files = sinks.received("500229") + sinks.received("500243") + sinks.received("500230")
    assert all(body["record"]["APPLYERCARDCODE"] for body in county_files)
    # Rejects sit in quarantine at the routing stage with their reasons.
    with store.read() as conn:
        rules = [r.rule for r in conn.execute(q.quarantine.select().where(q.quarantine.c.stage == "routing"))]
    assert any("other province" in r for r in rules) and any("no region" in r for r in rules)
    # Batches moved to done/ once routed; the ledger has one routed and one delivered event per record.
    assert sorted(p.name for p in (tmp_path / "drop" / "done").iterdir())[:2] == [
        "MPS-20240301-0001.manifest.json", "MPS-20240301-0001.xml"]
    hops = ledger.count_by_hop(store, "mps-test-files")
    assert hops["routed"] == hops["flowback_delivered"] == first.routed + recs["MPS-20240301-0002"].routed
    assert ledger.verify(store).ok
    details = " ".join(e["detail"] for e in ledger.iter_events(store))
    assert "510202198001010011" not in details and "APPLYERCARDCODE" not in details


def test_a_batch_received_twice_routes_nothing_twice(tmp_path, sinks):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    batch = make_batch("MPS-20240302-0001", 60, seed=5)
    incoming = tmp_path / "drop" / "incoming"
    config = file_source(tmp_path, sinks)
    write_batch(incoming, batch, "xml")
    run_flowback_source(config, store=store, bus=bus, prefix="t.flowback")
    delivered_before = sum(len(sinks.received(t)) for t in sinks.targets)

    write_batch(incoming, batch, "csv")  # the ministry sends the same batch again, as CSV this time
    again = run_flowback_source(config, store=store, bus=bus, prefix="t.flowback")

    assert [b.duplicate for b in again.batches] == [True]
    assert again.delivery.delivered == 0 and sum(len(sinks.received(t)) for t in sinks.targets) == delivered_before
    (rec_,) = reconcile(store, "MPS-20240302-0001")
    assert rec_.balanced and rec_.times_received == 2
    assert (tmp_path / "drop" / "duplicates" / "MPS-20240302-0001.csv").exists()
    assert ledger.count_by_hop(store, "mps-test-files")["duplicate"] == 1


def test_same_record_in_a_later_batch_is_not_delivered_twice(tmp_path, sinks):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    batch = make_batch("MPS-20240303-0001", 20, seed=6, kinds=["district"] * 20)
    config = file_source(tmp_path, sinks)
    write_batch(tmp_path / "drop" / "incoming", batch, "xml")
    run_flowback_source(config, store=store, bus=bus, prefix="t.flowback")
    resent = MinistryBatch("MPS-20240303-0002", batch.records[:5])  # a new batch repeating 5 records
    write_batch(tmp_path / "drop" / "incoming", resent, "xml")

    report = run_flowback_source(config, store=store, bus=bus, prefix="t.flowback")

    assert report.delivery.duplicates == 5 and report.delivery.delivered == 0
    assert report.balanced  # routed 5 = duplicate 5
    assert sum(len(sinks.received(t)) for t in sinks.targets) == 20


def test_sink_failures_are_retried_then_parked_and_the_batch_still_balances(tmp_path, sinks):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    batch = make_batch("MPS-20240304-0001", 12, seed=7, kinds=["district"] * 12)
    targets = sorted({batch.expected[r["ROWGUID"]] for r in batch.records if r["AREACODE"].startswith("5001")})
    flaky, refusing = targets[0], targets[1]
    sinks.sink(flaky).fail_next(2, 503)
    sinks.sink(refusing).fail_next(50, 422)
    write_batch(tmp_path / "drop" / "incoming", batch, "xml")

    report = run_flowback_source(file_source(tmp_path, sinks, max_attempts=4), store=store, bus=bus, prefix="t.flowback")

    (rec_,) = report.reconciliations
    assert rec_.balanced, rec_.gaps
    lines = {t.target: t for t in rec_.targets}
    assert lines[flaky].delivered == lines[flaky].routed and lines[flaky].parked == 0
    assert lines[refusing].parked == lines[refusing].routed > 0
    assert report.delivery.retried >= 2
    assert q.counts(store)["parked"] == lines[refusing].parked

    # The district fixes its side; the operator replays the parked records and they arrive.
    sinks.sink(refusing).heal()
    assert "re-published" in replay_parked_flowback(store, bus, prefix="t.flowback")
    DistrictDeliverer(store=store, bus=bus, sinks=sinks.sinks_config(), prefix="t.flowback").run(idle_exit=0.2)
    (after,) = reconcile(store, "MPS-20240304-0001")
    line = {t.target: t for t in after.targets}[refusing]
    assert after.balanced and line.delivered == line.routed and line.parked == 0
    assert len(sinks.received(refusing)) == line.routed


def test_report_cli_prints_the_manifest_and_exits_1_on_a_gap(tmp_path, sinks, monkeypatch):
    from tongban.cli.flowback import app

    db = f"sqlite:///{tmp_path}/t.db"
    monkeypatch.setenv("TONGBAN_DB_URL", db)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    store = open_store(db)
    bus = LocalBus(store)
    incoming = tmp_path / "drop" / "incoming"
    config = file_source(tmp_path, sinks)
    write_batch(incoming, make_batch("MPS-20240305-0001", 40, seed=8), "xml")
    run_flowback_source(config, store=store, bus=bus, prefix="t.flowback")
    runner = CliRunner()

    ok = runner.invoke(app, ["report", "MPS-20240305-0001"])
    assert ok.exit_code == 0, ok.output
    assert "BALANCED" in ok.output and "records in 40 = routed" in ok.output

    # A batch whose manifest promises more than arrived, and which is not delivered yet.
    tampered = make_batch("MPS-20240305-0002", 10, seed=9)
    manifest = write_batch(incoming, tampered, "csv")
    (incoming / "MPS-20240305-0002.manifest.json").write_text(json.dumps(
        {"batch_id": manifest.batch_id, "record_count": 11, "digest": manifest.digest}), encoding="utf-8")
    run_flowback_source(config, store=store, bus=bus, prefix="t.flowback", deliver=False)

    gap = runner.invoke(app, ["report"])
    assert gap.exit_code == 1
    assert "records in 10 ≠ manifest count 11" in gap.output and "not yet delivered or parked" in gap.output
    assert "MPS-20240305-0001" in gap.output  # every batch when none is named
    assert runner.invoke(app, ["report", "NO-SUCH-BATCH"]).exit_code == 1


class FailingBus(LocalBus):
    """Loses the broker after `ok_publishes` publishes."""

    def __init__(self, store, ok_publishes: int):
        super().__init__(store)
        self.left = ok_publishes

    def publish(self, work, envelopes):
        from tongban.bus import PublishError

        if self.left <= 0:
            raise PublishError("connection to RabbitMQ lost while publishing")
        self.left -= 1
        super().publish(work, envelopes)


def test_an_interrupted_batch_shows_a_gap_stays_for_pickup_and_balances_when_rerun(tmp_path, sinks):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    batch = make_batch("MPS-20240306-0001", 80, seed=10)
    write_batch(tmp_path / "drop" / "incoming", batch, "xml")
    config = file_source(tmp_path, sinks)
    # Small chunks so that some records are published before the broker goes away.
    from tongban.flowback import ingest as ingest_module

    original = ingest_module.CHUNK
    ingest_module.CHUNK = 20
    try:
        broken = run_flowback_source(config, store=store, bus=FailingBus(store, ok_publishes=10),
                                     prefix="t.flowback")
    finally:
        ingest_module.CHUNK = original
    assert "interrupted" in broken.batches[0].error and not broken.balanced
    assert (tmp_path / "drop" / "incoming" / "MPS-20240306-0001.xml").exists()  # not moved to done/
    (gap,) = reconcile(store, "MPS-20240306-0001")
    assert not gap.balanced and "routing did not finish" in gap.gaps[0]

    rerun = run_flowback_source(config, store=store, bus=LocalBus(store), prefix="t.flowback")

    (done,) = rerun.reconciliations
    assert done.balanced, done.gaps
    assert done.superseded > 0  # what the broken run had sent was delivered once and is shown apart
    assert_arrived_as_expected(batch, sinks)


def test_cli_ingest_then_deliver_on_the_inprocess_bus(tmp_path, sinks, monkeypatch):
    import yaml

    from tongban.cli.flowback import app

    db = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("TONGBAN_DB_URL", db)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    config = file_source(tmp_path, sinks)
    source_file, sinks_file = tmp_path / "source.yaml", tmp_path / "sinks.yaml"
    source_file.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    sinks_file.write_text(yaml.safe_dump(config["sinks"], allow_unicode=True), encoding="utf-8")
    batch = make_batch("MPS-20240307-0001", 50, seed=12)
    write_batch(tmp_path / "drop" / "incoming", batch, "csv")
    runner = CliRunner()

    routed = runner.invoke(app, ["ingest", str(source_file)])
    assert routed.exit_code == 0, routed.output
    assert "MPS-20240307-0001: 50 records" in routed.output and "digest matches" in routed.output
    assert runner.invoke(app, ["report"]).exit_code == 1  # routed, not delivered yet

    delivered = runner.invoke(app, ["deliver", "--sinks", str(sinks_file), "--idle-exit", "0.2"])
    assert delivered.exit_code == 0, delivered.output
    assert runner.invoke(app, ["report", "MPS-20240307-0001"]).exit_code == 0
    assert_arrived_as_expected(batch, sinks)
    again = runner.invoke(app, ["ingest", str(source_file)])
    assert "no new batches" in again.output
