"""Ministry batches end to end (数据回流): pinyin field names in GB18030 CSV and XML with another record tag, through
the files adapter and the local bus to the sandbox district sinks; exact duplicates; a batch read wrongly at first
and recovered with `flowback retry`; parked and quarantined records replayed; the queue prefix; a REST ministry."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from sandbox.district_sinks import DistrictSinkWorld
from sandbox.ministry import PINYIN, MinistryBatch, make_batch, write_batch
from tongban.audit import ledger
from tongban.operator import quarantine as q
from tongban.bus.local import LocalBus
from tongban.cli import app as tongban_app
from tongban.flowback.trace import routed_count
from tongban.flowback import load_flowback_mapping, reconcile, retry_batch, run_flowback_source
from tongban.store import open_store

from test_flowback import PINYIN_FIELDS, source_file


def assert_arrived_as_expected(batch: MinistryBatch, sinks: DistrictSinkWorld) -> None:
    received = sinks.received_by_rowguid()  # raises when a record reached two sinks
    for guid, expected in batch.expected.items():
        if expected.startswith("quarantine:"):
            assert guid not in received, f"{guid} ({expected}) reached a district"
        else:
            assert received.get(guid) == expected, f"{guid} should reach {expected}, got {received.get(guid)}"


def held_in_total(sinks: DistrictSinkWorld) -> int:
    return sum(len(sinks.received(t)) for t in sinks.targets)


def test_pinyin_batches_in_gb18030_csv_and_xml_with_their_own_record_tag_route_exactly(tmp_path, sinks, sinks_file,
                                                                                       store):
    bus = LocalBus(store)  # `store`: SQLite and the real PostgreSQL (tests/conftest.py)
    csv_batch = make_batch("MPS-PY-0001", 400, seed=3, duplicate_share=0.02)
    xml_batch = make_batch("MPS-PY-0002", 300, seed=4, duplicate_share=0.01)
    source = source_file(tmp_path, "pinyin", sinks_file, fields=PINYIN_FIELDS, key="LSH",
                         settings="  encoding: gb18030\n  xml_record_tag: HJXX\n")
    drop = tmp_path / "drop" / "pinyin"
    write_batch(drop, csv_batch, "csv", dialect=PINYIN, encoding="gb18030")
    write_batch(drop, xml_batch, "xml", dialect=PINYIN, encoding="gb18030", record_tag="HJXX", root_tag="SJHL")

    report = run_flowback_source(source, store=store, bus=bus, prefix="t.flowback")

    assert report.balanced, [r.gaps for r in report.reconciliations]
    for batch in (csv_batch, xml_batch):
        assert_arrived_as_expected(batch, sinks)
    kinds = {e.split(":")[1] for b in (csv_batch, xml_batch) for e in b.expected.values() if e.startswith("quarantine:")}
    assert {"other_province", "no_region"} <= kinds
    recs = {r.batch_id: r for r in report.reconciliations}
    for batch in (csv_batch, xml_batch):
        r = recs[batch.batch_id]
        quarantined = sum(e.startswith("quarantine:") for e in batch.expected.values())
        assert (r.received, r.duplicates, r.quarantined) == (len(batch.records), batch.duplicates, quarantined)
        assert r.received == r.duplicates + r.routed + r.quarantined and r.routed == r.delivered + r.held
        assert r.digest == r.manifest_digest and r.status == "done"
    # The district receives the national record: the pinyin fields mapped back exactly (dates, status, names).
    original = next(x for x in csv_batch.records if csv_batch.expected[x["ROWGUID"]] == "500229")
    (body,) = [b for b in sinks.received("500229") if b["record"]["ROWGUID"] == original["ROWGUID"]]
    assert body["record"] == {k: v for k, v in original.items() if v}
    # Both batches are done: moved to done/ with their manifests.
    assert sorted(p.name for p in (drop / "done").iterdir()) == [
        "MPS-PY-0001.csv", "MPS-PY-0001.manifest.json", "MPS-PY-0002.manifest.json", "MPS-PY-0002.xml"]
    hops = ledger.count_by_hop(store, "pinyin")
    # One routed_chunk event per chunk of routed records, counting them; one delivery event per record.
    assert "routed" not in hops and hops["routed_chunk"] >= 2
    assert routed_count(store, "pinyin") == hops["flowback_delivered"] == sum(r.routed for r in recs.values())
    details = " ".join(e["detail"] for e in ledger.iter_events(store))
    assert "APPLYERCARDCODE" not in details and original["APPLYERCARDCODE"] not in details
    assert ledger.verify(store).ok


def test_a_wrong_source_file_never_balances_and_flowback_retry_recovers_the_batch(tmp_path, sinks, sinks_file,
                                                                                monkeypatch):
    db = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("TONGBAN_DB_URL", db)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    batch = make_batch("MPS-WRONG-0001", 200, seed=5, duplicate_share=0.02)
    wrong_fields = PINYIN_FIELDS.replace("AREACODE: {path: XZQHDM}", "AREACODE: {path: XZQH}")  # no such column
    source = source_file(tmp_path, "pinyin", sinks_file, fields=wrong_fields, key="LSH",
                         settings="  encoding: gb18030\n")
    write_batch(tmp_path / "drop" / "pinyin", batch, "csv", dialect=PINYIN, encoding="gb18030")
    runner = CliRunner()

    first = runner.invoke(tongban_app, ["flowback", "ingest", str(source)])
    assert first.exit_code == 1  # read completely and accounted for, but every record quarantined: nothing to deliver
    assert "every one quarantined" in first.output and "flowback retry MPS-WRONG-0001" in first.output
    runner.invoke(tongban_app, ["flowback", "deliver", str(source), "--idle-exit", "0.2"])
    report = runner.invoke(tongban_app, ["flowback", "report", "--json"])
    assert report.exit_code == 1
    (line,) = json.loads(report.output)["batches"]
    assert line["balanced"] is False and line["routed"] == 0 and line["delivered"] == 0
    assert line["quarantined"] == line["received"] - line["duplicates"] == 200
    assert any("nothing was delivered" in g and "flowback retry MPS-WRONG-0001" in g for g in line["gaps"])
    assert held_in_total(sinks) == 0

    source.write_text(source.read_text(encoding="utf-8").replace("{path: XZQH}", "{path: XZQHDM}"), encoding="utf-8")
    fixed = runner.invoke(tongban_app, ["flowback", "retry", "MPS-WRONG-0001", str(source)])

    assert fixed.exit_code == 0, fixed.output
    assert "BALANCED" in fixed.output
    assert_arrived_as_expected(batch, sinks)
    (after,) = reconcile(open_store(db), "MPS-WRONG-0001")
    quarantined = sum(e.startswith("quarantine:") for e in batch.expected.values())
    assert (after.duplicates, after.quarantined, after.routed, after.delivered) == (
        batch.duplicates, quarantined, 200 - quarantined, 200 - quarantined)
    # The wrong rule's entries are closed; what stays open is what the data itself breaks (other provinces …).
    assert runner.invoke(tongban_app, ["flowback", "report", "MPS-WRONG-0001"]).exit_code == 0
    with open_store(db).read() as conn:
        open_rules = [r.rule for r in conn.execute(q.quarantine.select().where(q.quarantine.c.status == "open"))]
    assert len(open_rules) == quarantined and not any("XZQH)" in r for r in open_rules)
    # A second retry routes nothing twice.
    again = runner.invoke(tongban_app, ["flowback", "retry", "MPS-WRONG-0001", str(source)])
    assert again.exit_code == 0 and held_in_total(sinks) == 200 - quarantined


def test_an_xml_batch_read_with_the_wrong_record_tag_stays_in_the_drop_and_is_recovered(tmp_path, sinks, sinks_file):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    batch = make_batch("MPS-TAG-0001", 120, seed=6)
    source = source_file(tmp_path, "tagged", sinks_file, settings="  xml_record_tag: Record\n")
    drop = tmp_path / "drop" / "tagged"
    write_batch(drop, batch, "xml", record_tag="Row")

    broken = run_flowback_source(source, store=store, bus=bus, prefix="t.flowback")

    assert not broken.balanced
    (outcome,) = broken.batches
    assert outcome.records_in == 0 and not outcome.complete
    assert "records in 0 ≠ manifest count 120" in outcome.error and "record tag" in outcome.error
    assert (drop / "MPS-TAG-0001.xml").exists() and (drop / "MPS-TAG-0001.manifest.json").exists()  # not done
    (gap,) = reconcile(store, "MPS-TAG-0001")
    assert gap.status == "incomplete" and "records in 0 ≠ manifest count 120" in gap.gaps[0]
    # Dropping it again is not "already received": it is read again (and still fails the same way).
    assert run_flowback_source(source, store=store, bus=bus, prefix="t.flowback").batches[0].duplicate is False

    source.write_text(source.read_text(encoding="utf-8").replace("xml_record_tag: Record", "xml_record_tag: Row"),
                      encoding="utf-8")
    recovered = retry_batch(source, "MPS-TAG-0001", store=store, bus=bus, prefix="t.flowback")

    assert recovered.balanced, [r.gaps for r in recovered.reconciliations]
    assert_arrived_as_expected(batch, sinks)
    assert (drop / "done" / "MPS-TAG-0001.xml").exists()


def test_a_done_batch_received_again_routes_nothing(tmp_path, sinks, sinks_file):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    batch = make_batch("MPS-AGAIN-0001", 60, seed=7)
    source = source_file(tmp_path, "again", sinks_file)
    drop = tmp_path / "drop" / "again"
    write_batch(drop, batch, "xml")
    run_flowback_source(source, store=store, bus=bus, prefix="t.flowback")
    before = held_in_total(sinks)

    write_batch(drop, batch, "csv")  # the ministry sends the same batch again, as CSV this time
    again = run_flowback_source(source, store=store, bus=bus, prefix="t.flowback")

    assert [b.duplicate for b in again.batches] == [True] and again.delivery.delivered == 0
    assert held_in_total(sinks) == before
    (r,) = reconcile(store, "MPS-AGAIN-0001")
    assert r.balanced and r.times_received == 2
    assert not (drop / "MPS-AGAIN-0001.csv").exists()  # moved to done/, the ledger says it was a re-delivery


def test_a_record_already_delivered_by_another_batch_is_held_not_sent_twice(tmp_path, sinks, sinks_file):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    batch = make_batch("MPS-HELD-0001", 20, seed=8, kinds=["district"] * 20)
    source = source_file(tmp_path, "held", sinks_file)
    write_batch(tmp_path / "drop" / "held", batch, "xml")
    run_flowback_source(source, store=store, bus=bus, prefix="t.flowback")
    write_batch(tmp_path / "drop" / "held", MinistryBatch("MPS-HELD-0002", batch.records[:5]), "xml")

    report = run_flowback_source(source, store=store, bus=bus, prefix="t.flowback")

    (r,) = report.reconciliations
    assert (r.routed, r.delivered, r.held) == (5, 0, 5) and r.balanced
    assert held_in_total(sinks) == 20


def test_parked_records_unbalance_the_batch_until_parked_replay_sends_them_to_their_district(tmp_path, sinks,
                                                                                          sinks_file, monkeypatch):
    db = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("TONGBAN_DB_URL", db)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    batch = make_batch("MPS-PARK-0001", 30, seed=9, kinds=["district"] * 30)
    targets = sorted({batch.expected[r["ROWGUID"]] for r in batch.records if r["AREACODE"].startswith("5001")})
    flaky, refusing = targets[0], targets[1]
    sinks.sink(flaky).fail_next(2, 503)
    sinks.sink(refusing).fail_next(50, 422)
    source = source_file(tmp_path, "park", sinks_file)
    write_batch(tmp_path / "drop" / "park", batch, "xml")
    runner = CliRunner()
    assert runner.invoke(tongban_app, ["flowback", "ingest", str(source)]).exit_code == 0

    delivered = runner.invoke(tongban_app, ["flowback", "deliver", str(source), "--idle-exit", "0.2", "--json"])

    stats = json.loads(delivered.stdout)
    assert delivered.exit_code == 1 and stats["retried"] >= 2 and stats["parked"] > 0
    (r,) = reconcile(open_store(db), "MPS-PARK-0001")
    lines = {t.target: t for t in r.targets}
    assert lines[flaky].delivered == lines[flaky].routed
    assert lines[refusing].parked == lines[refusing].routed == stats["parked"]
    assert not r.balanced and any("parked by the sink" in g for g in r.gaps)

    sinks.sink(refusing).heal()
    replay = runner.invoke(tongban_app, ["parked", "replay"])
    assert "re-published" in replay.output, replay.output
    assert runner.invoke(tongban_app, ["flowback", "deliver", str(source), "--idle-exit", "0.2"]).exit_code == 0

    assert runner.invoke(tongban_app, ["flowback", "report", "MPS-PARK-0001"]).exit_code == 0
    assert len(sinks.received(refusing)) == lines[refusing].routed
    assert_arrived_as_expected(batch, sinks)


def test_quarantine_replay_routes_flowback_records_back_through_their_batch(tmp_path, sinks, sinks_file, monkeypatch):
    mappings = tmp_path / "mappings"
    (mappings / "flowback" / "sources").mkdir(parents=True)
    db = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("TONGBAN_DB_URL", db)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    monkeypatch.setenv("TONGBAN_MAPPINGS", str(mappings))
    batch = make_batch("MPS-QR-0001", 50, seed=10)
    wrong = PINYIN_FIELDS.replace('map: {受理: "1", 办理中: "2", 办结: "3"}', 'map: {受理: "1", 办结: "3"}')
    source = source_file(mappings / "flowback" / "sources", "pinyin", sinks_file, fields=wrong, key="LSH")
    (tmp_path / "drop").mkdir(exist_ok=True)
    source.write_text(source.read_text(encoding="utf-8").replace(
        str(mappings / "flowback" / "sources" / "drop"), str(tmp_path / "drop")), encoding="utf-8")
    (tmp_path / "drop" / "pinyin").mkdir(parents=True, exist_ok=True)
    write_batch(tmp_path / "drop" / "pinyin", batch, "csv", dialect=PINYIN)
    runner = CliRunner()
    assert runner.invoke(tongban_app, ["flowback", "ingest", str(source)]).exit_code == 0
    listed = runner.invoke(tongban_app, ["quarantine", "list", "--system", "pinyin", "--stage", "mapping"])
    assert "办理中" in listed.output and "not in the field's map" in listed.output
    (before,) = reconcile(open_store(db), "MPS-QR-0001")

    source.write_text(source.read_text(encoding="utf-8").replace('{受理: "1", 办结: "3"}',
                                                                 '{受理: "1", 办理中: "2", 办结: "3"}'), encoding="utf-8")
    replay = runner.invoke(tongban_app, ["quarantine", "replay", "--system", "pinyin", "--stage", "mapping"])
    assert f"replayed {before.quarantined_by_stage['mapping']} records" in replay.output, replay.output
    runner.invoke(tongban_app, ["flowback", "deliver", str(source), "--idle-exit", "0.2"])

    (after,) = reconcile(open_store(db), "MPS-QR-0001")
    assert after.balanced, after.gaps
    assert "mapping" not in after.quarantined_by_stage
    assert_arrived_as_expected(batch, sinks)


class FailingBus(LocalBus):
    """Loses the broker after `ok_messages` messages were published."""

    def __init__(self, store, ok_messages: int):
        super().__init__(store)
        self.left = ok_messages

    def publish(self, work, envelopes):
        from tongban.bus import PublishError

        if self.left < len(envelopes):
            raise PublishError("connection to RabbitMQ lost while publishing")
        self.left -= len(envelopes)
        super().publish(work, envelopes)


def test_an_interrupted_batch_stays_for_pickup_and_the_rerun_routes_nothing_twice(tmp_path, sinks, sinks_file,
                                                                                   monkeypatch):
    from tongban.flowback import ingest as ingest_module

    store = open_store(f"sqlite:///{tmp_path}/t.db")
    batch = make_batch("MPS-INT-0001", 80, seed=11)
    source = source_file(tmp_path, "int", sinks_file)
    write_batch(tmp_path / "drop" / "int", batch, "xml")
    monkeypatch.setattr(ingest_module, "CHUNK", 20)  # some chunks are published before the broker goes away

    broken = run_flowback_source(source, store=store, bus=FailingBus(store, ok_messages=30), prefix="t.flowback",
                                 deliver=False)
    assert "interrupted" in broken.batches[0].error and not broken.balanced
    assert (tmp_path / "drop" / "int" / "MPS-INT-0001.xml").exists()
    (gap,) = reconcile(store, "MPS-INT-0001")
    assert gap.status == "reading" and not gap.balanced

    rerun = run_flowback_source(source, store=store, bus=LocalBus(store), prefix="t.flowback")

    (outcome,) = rerun.batches
    assert outcome.already_routed > 0 and outcome.complete
    (done,) = rerun.reconciliations
    assert done.balanced, done.gaps
    assert_arrived_as_expected(batch, sinks)


def test_flowback_queues_carry_the_queue_prefix(tmp_path, sinks, sinks_file, monkeypatch):
    monkeypatch.setenv("TONGBAN_QUEUE_PREFIX", "envb")
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    batch = make_batch("MPS-PFX-0001", 40, seed=12, kinds=["district"] * 40)
    source = source_file(tmp_path, "pfx", sinks_file)
    write_batch(tmp_path / "drop" / "pfx", batch, "xml")

    run_flowback_source(source, store=store, bus=bus, deliver=False)

    target = batch.expected[batch.records[0]["ROWGUID"]]
    assert bus.depth(f"envb.flowback.{target}") > 0 and bus.depth(f"tongban.flowback.{target}") == 0


def test_marked_replays_cover_flowback_parked_records(tmp_path, sinks, sinks_file, monkeypatch):
    """The ops__replay DAG's path (tongban.operator.replay_marks): a marked parked flowback record goes back to its district."""
    from tongban.flowback import DistrictDeliverer
    from tongban.operator.replay_marks import mark_for_replay, replay_marked

    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = LocalBus(store)
    batch = make_batch("MPS-MARK-0001", 10, seed=13, kinds=["district"] * 10)
    target = next(t for t in batch.expected.values() if t.startswith("5001"))  # a district with a REST sink
    sinks.sink(target).fail_next(50, 422)
    source = source_file(tmp_path, "mark", sinks_file)
    write_batch(tmp_path / "drop" / "mark", batch, "xml")
    run_flowback_source(source, store=store, bus=bus)
    with store.read() as conn:
        parked_ids = [r.id for r in conn.execute(q.parked.select().where(q.parked.c.status == "open"))]
    assert parked_ids and not reconcile(store, "MPS-MARK-0001")[0].balanced
    sinks.sink(target).heal()

    mark_for_replay(store, "parked", parked_ids, by="test")
    result = replay_marked(store, bus)
    DistrictDeliverer(store=store, bus=bus, sinks=load_flowback_mapping(source).sinks).run(idle_exit=0.2)

    assert "re-published" in result.messages[0]
    assert reconcile(store, "MPS-MARK-0001")[0].balanced
    assert_arrived_as_expected(batch, sinks)


def test_a_rest_ministry_in_its_own_dialect_is_read_through_the_rest_adapter(tmp_path, sinks, sinks_file, monkeypatch):
    from sandbox.ministry import MinistryRestService
    from sandbox.runner import Server

    monkeypatch.setenv("MCA_TOKEN", "t0ken")
    batch = make_batch("MPS-REST-0001", 230, seed=14, duplicate_share=0.02)
    service = MinistryRestService([batch], dialect=PINYIN, token="t0ken")
    server = Server(service.app, name="ministry-rest").start()
    try:
        source = source_file(tmp_path, "mps-rest", sinks_file, fields=PINYIN_FIELDS, key="LSH", source=f"""\
  adapter: rest
  base_url: {server.url}
  path: /ministry/api/records
  pagination: {{style: page, page_param: page, size_param: size, size: 100}}
  records_path: records
  auth: {{type: bearer, token_env: MCA_TOKEN}}
""", flowback="""\
  batches:
    list: {path: /ministry/api/batches, records_path: batches, pagination: {style: none}}
    batch_param: batch_id
""")
        store = open_store(f"sqlite:///{tmp_path}/t.db")

        report = run_flowback_source(source, store=store, bus=LocalBus(store), prefix="t.flowback")

        assert report.balanced, [r.gaps for r in report.reconciliations]
        (r,) = report.reconciliations
        assert (r.received, r.duplicates) == (len(batch.records), batch.duplicates)
        assert_arrived_as_expected(batch, sinks)
        # The API lists the batch for ever: the next run passes over it without a word.
        again = run_flowback_source(source, store=store, bus=LocalBus(store), prefix="t.flowback")
        assert again.batches == [] and again.balanced
        assert reconcile(store, "MPS-REST-0001")[0].times_received == 1
    finally:
        server.stop()
