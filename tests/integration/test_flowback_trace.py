"""Every flowback record stays traceable with one ledger event per chunk of routed records: `tongban trace` finds a
record by its ROWGUID, message id or idempotency key and shows where it went (the chunk event's line for it) and its
delivery; a quarantined record shows its rule; an edited chunk event is named, never silently trusted. Also the bulk
quarantine insert (quarantine.add_many) and the ledger check in small pages."""
from __future__ import annotations

import json

from sqlalchemy import select, update
from typer.testing import CliRunner

from sandbox.ministry import make_batch, write_batch
from tongban.audit import ledger
from tongban.cli import app as tongban_app
from tongban.flowback import ingest as ingest_module
from tongban.flowback.tables import flowback_records
from tongban.flowback.trace import trace
from tongban.operator import quarantine as q
from tongban.store import open_store
from tongban.store.tables import ledger as ledger_table

from test_flowback import source_file


def _cli_env(tmp_path, monkeypatch) -> str:
    db = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("TONGBAN_DB_URL", db)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")
    return db


def test_tongban_trace_follows_a_flowback_record_from_its_chunk_event_to_its_district(tmp_path, sinks, sinks_file,
                                                                                      monkeypatch):
    db = _cli_env(tmp_path, monkeypatch)
    monkeypatch.setattr(ingest_module, "CHUNK", 20)  # 60 records: three chunks, three routed_chunk events at most
    batch = make_batch("MPS-TR-0001", 60, seed=21)
    source = source_file(tmp_path, "trace", sinks_file)
    write_batch(tmp_path / "drop" / "trace", batch, "xml")
    runner = CliRunner()
    ingested = runner.invoke(tongban_app, ["flowback", "ingest", str(source)])
    assert ingested.exit_code == 0, ingested.output
    routed = [g for g, e in batch.expected.items() if not e.startswith("quarantine:")]
    quarantined = [g for g, e in batch.expected.items() if e.startswith("quarantine:")]
    # The run report states that every record read has one outcome.
    assert f"read {len(batch.records)} = routed {len(set(routed))} + already routed 0 + duplicates" in ingested.output
    assert runner.invoke(tongban_app, ["flowback", "deliver", str(source), "--idle-exit", "0.2"]).exit_code == 0

    store = open_store(db)
    hops = ledger.count_by_hop(store, "trace")
    assert "routed" not in hops and 1 <= hops["routed_chunk"] <= 3  # no event per routed record …
    guid = routed[0]
    out = runner.invoke(tongban_app, ["trace", guid, "--json"])
    assert out.exit_code == 0, out.output
    events = json.loads(out.output)
    (step,) = [e for e in events if e["hop"] == "routed"]  # … yet the record's routing is in its trace
    assert step["detail"]["key"] == guid and step["detail"]["target"] == batch.expected[guid]
    assert step["detail"]["chunk"] == step["event_id"] and "problem" not in step["detail"]
    (delivered,) = [e for e in events if e["hop"] == "flowback_delivered"]
    assert delivered["message_id"] == step["message_id"] and delivered["seq"] > step["seq"]
    # The same record by its message id and by its idempotency key.
    with store.read() as conn:
        row = conn.execute(select(flowback_records).where(flowback_records.c.record_key == guid)).mappings().one()
    for ident in (row["message_id"], row["idempotency_key"]):
        assert [e["hop"] for e in trace(store, ident) if e["hop"] in ("routed", "flowback_delivered")] == [
            "routed", "flowback_delivered"], ident
    # The timeline for the eye: the routing line, not the chunk's thousand lines.
    text = runner.invoke(tongban_app, ["trace", guid])
    assert text.exit_code == 0 and "routed" in text.output and batch.expected[guid] in text.output
    # A quarantined record: its own event, with the rule.
    bad = quarantined[0]
    (rejected,) = [e for e in trace(store, bad) if e["hop"] == "quarantined"]
    assert rejected["detail"]["stage"] in ("mapping", "routing") and rejected["detail"]["rule"]
    assert ledger.verify(store).ok
    # An evidence package of the record carries its chunk event as stored (its hash recomputes), and its delivery.
    from tongban.audit.evidence import _raw_events

    exported = {e["event_id"]: e for e in _raw_events(store, guid)}
    assert step["event_id"] in exported and delivered["event_id"] in exported
    assert json.loads(exported[step["event_id"]]["detail"])["count"] == step["detail"]["chunk_count"]

    # Someone removes the record from its chunk event: the trace says so, and the chain check finds the edit.
    chunk = step["event_id"]
    with store.write() as conn:
        detail = json.loads(conn.execute(select(ledger_table.c.detail).where(ledger_table.c.event_id == chunk)).scalar())
        detail["records"] = [r for r in detail["records"] if r["key"] != guid]
        conn.execute(update(ledger_table).where(ledger_table.c.event_id == chunk)
                     .values(detail=json.dumps(detail, ensure_ascii=False, sort_keys=True)))
    (step,) = [e for e in trace(store, guid) if e["hop"] == "routed"]
    assert "is not listed in its routed_chunk event" in step["detail"]["problem"]
    broken = ledger.verify(store)
    assert not broken.ok and broken.broken_event_id == chunk


def test_add_many_adds_each_new_entry_once_and_names_the_open_one_otherwise(sqlite_store):
    def entry(key, rule="rule A"):
        return q.QuarantineEntry("mps", key, "routing", rule, field="AREACODE", position="p", record={"k": key})

    with sqlite_store.write() as conn:
        first = q.add(conn, entry("R1"))
    with sqlite_store.write() as conn:
        result = q.add_many(conn, [entry("R1"), entry("R2"), entry("R2"), entry("R1", "rule B"), entry(None)])
    (r1, r1_new), (r2, r2_new), (r2_again, r2_again_new), (r1b, r1b_new), (anon, anon_new) = result
    assert (r1, r1_new) == (first, False)                     # already open for the same rule
    assert r2_new and (r2_again, r2_again_new) == (r2, False)  # repeated within the call: one entry
    assert r1b_new and anon_new and len({first, r2, r1b, anon}) == 4
    with sqlite_store.read() as conn:
        from tongban.store.tables import quarantine

        rows = conn.execute(select(quarantine.c.id, quarantine.c.source_key, quarantine.c.rule)
                            .order_by(quarantine.c.id)).all()
    assert [(r.source_key, r.rule) for r in rows] == [("R1", "rule A"), ("R2", "rule A"), ("R1", "rule B"),
                                                      (None, "rule A")]


def test_the_chain_check_reads_the_ledger_in_small_pages_and_still_finds_an_edit(sqlite_store):
    for n in range(7):
        ledger.record(sqlite_store, ledger.LedgerEvent("fetched", {"n": n}, system="s"))
    pages: list[int] = []
    assert ledger.verify(sqlite_store, batch=3, progress=pages.append).events == 7 and pages == [3, 3, 1]
    with sqlite_store.write() as conn:
        conn.execute(update(ledger_table).where(ledger_table.c.seq == 6).values(detail='{"n":60}'))
    result = ledger.verify(sqlite_store, batch=3)
    assert not result.ok and result.broken_seq == 6 and "content altered" in result.reason
