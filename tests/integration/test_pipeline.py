"""End to end through the real parts: legacy REST sandbox → mapping → bus → worker → mock 渝快办, ledger checked.

Run on the embedded default (local queue + SQLite) and on RabbitMQ + PostgreSQL."""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tongban.audit import ledger
from tongban.operator import quarantine as q
from tongban.delivery.retry import RedeliveryPolicy
from tongban.delivery.worker import DeliveryWorker
from tongban.pipeline.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.platform.client import PlatformClient
from tongban.settings import load

SAMR = Path(__file__).resolve().parents[2] / "mappings" / "cq-samr-rest.yaml"


@pytest.fixture(params=["local+sqlite", "rabbitmq+postgresql"])
def stack(request, sandbox_env):
    if request.param == "local+sqlite":
        from tongban.bus.local import LocalBus
        from tongban.bus.topology import cases_work

        store = request.getfixturevalue("sqlite_store")
        return store, LocalBus(store), cases_work("t"), sandbox_env
    store = request.getfixturevalue("pg_store")
    return store, request.getfixturevalue("rabbit_bus"), request.getfixturevalue("rabbit_work"), sandbox_env


def _poll_and_deliver(store, bus, work, policy=None):
    settings = load()
    platform = PlatformClient(settings)
    report = run_ingest(load_mapping(SAMR), store=store, bus=bus, platform=platform, work=work)
    worker = DeliveryWorker(store=store, bus=bus, platform=platform, work=work, policy=policy)
    stats = worker.run(stop=threading.Event(), idle_exit=0.8)
    return report, stats, platform


def _platform_events(platform, number):
    return [(e["event"], e["sequence"]) for e in platform.get(f"/api/v1/cases/{number}")["events"]]


def test_lifecycles_reach_the_platform_once_in_order(stack):
    store, bus, work, sandbox = stack
    world = sandbox.world
    bad = world.bad_cases()
    for _ in range(4):  # cases progress between polls
        report, stats, platform = _poll_and_deliver(store, bus, work)
        world.advance(5)
    # Every seeded bad record is quarantined, named by its rule; nothing else is.
    with store.read() as conn:
        from sqlalchemy import select

        from tongban.store.tables import quarantine

        quarantined = {r.source_key: r.rule for r in conn.execute(select(quarantine))}
    existing_bad = {k: v for k, v in bad.items() if world.record(k) is not None}
    assert set(quarantined) == set(existing_bad)
    expected_words = {"id_check_digit": "check digit", "unknown_item_code": "not in table",
                      "impossible_date": "not a valid date", "outside_chongqing": "outside Chongqing"}
    for key, kind in existing_bad.items():
        assert expected_words[kind] in quarantined[key]
    # Every valid case is at the platform under one number with exactly the events the ledger delivered, in order.
    stats_now = platform.get("/api/v1/stats")
    valid = [k for k in world.keys() if world.record(k) is not None and k not in bad]
    assert stats_now["cases"] == len(valid)
    delivered = [e for e in ledger.iter_events(store, ["delivered"])]
    per_case = Counter(e["case_number"] for e in delivered)
    for number, count in list(per_case.items())[:25]:
        events = _platform_events(platform, number)
        assert [s for _, s in events] == list(range(1, count + 1))
    assert sum(per_case.values()) == stats_now["events"]
    # Polling again changes nothing and delivers nothing twice.
    report, stats, _ = _poll_and_deliver(store, bus, work)
    assert report.events_published == 0 and stats.delivered == 0
    assert platform.get("/api/v1/stats")["events"] == stats_now["events"]
    assert ledger.verify(store).ok


def test_a_platform_rejection_is_quarantined_without_retry(sqlite_store, sandbox_env):
    from tongban.bus.local import LocalBus
    from tongban.bus.topology import cases_work
    from tongban.bus.envelope import KIND_CASE_EVENT, Envelope

    bus, work = LocalBus(sqlite_store), cases_work("rej")
    event = {"case_number": "NEVER-ISSUED", "event": "application", "sequence": 1}  # the platform answers 4xx
    bus.publish(work, [Envelope(kind=KIND_CASE_EVENT, source="cq-samr-rest", idempotency_key="k1",
                                correlation="NEVER-ISSUED", payload=event)])
    worker = DeliveryWorker(store=sqlite_store, bus=bus, platform=PlatformClient(load()), work=work)
    stats = worker.run(idle_exit=0.5)
    assert stats.rejected == 1 and stats.retried == 0 and stats.delivered == 0
    counts = q.counts(sqlite_store)
    assert counts["quarantined"] == 1 and list(counts["by_rule"]) == ["platform: application"]


def test_outage_parks_then_replay_delivers_once(sqlite_store, sandbox_env):
    from tongban.bus.local import LocalBus
    from tongban.bus.topology import cases_work
    from tongban.operator.actions import replay_parked

    bus, work = LocalBus(sqlite_store), cases_work("park")
    platform = PlatformClient(load())
    report = run_ingest(load_mapping(SAMR), store=sqlite_store, bus=bus, platform=platform, work=work)
    httpx.post(f"{sandbox_env.platform.url}/_sandbox/faults", json={"fail_next": 100000, "status": 503}).raise_for_status()
    policy = RedeliveryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1)
    stats = DeliveryWorker(store=sqlite_store, bus=bus, platform=platform, work=work, policy=policy).run(idle_exit=0.8)
    assert stats.delivered == 0 and stats.parked == report.events_published > 0
    httpx.delete(f"{sandbox_env.platform.url}/_sandbox/faults")
    outcome = replay_parked(sqlite_store, bus, work=work)
    assert outcome.republished == outcome.selected == report.events_published
    assert str(outcome) == f"re-published {report.events_published} parked events"
    stats = DeliveryWorker(store=sqlite_store, bus=bus, platform=platform, work=work).run(idle_exit=0.5)
    assert stats.delivered == report.events_published and stats.parked == 0
    assert platform.get("/api/v1/stats")["events"] == report.events_published
    assert ledger.count_by_hop(sqlite_store)["replayed"] == report.events_published


@pytest.mark.parametrize("push_batch", ["1", "0"], ids=["batch push", "single push"])
def test_transient_failures_are_retried_and_delivered(sqlite_store, sandbox_env, monkeypatch, push_batch):
    from tongban.bus.local import LocalBus
    from tongban.bus.topology import cases_work

    monkeypatch.setenv("TONGBAN_PUSH_BATCH", push_batch)
    bus, work = LocalBus(sqlite_store), cases_work("retry")
    platform = PlatformClient(load())
    report = run_ingest(load_mapping(SAMR), store=sqlite_store, bus=bus, platform=platform, work=work)
    # Failing often enough that the client's quick retry does not absorb them all, also with batch push's few calls:
    # some pushes go round the bus's delay queue.
    httpx.post(f"{sandbox_env.platform.url}/_sandbox/faults",
               json={"error_rate": 0.6, "kinds": ["500", "429"], "retry_after": 0, "seed": 3}).raise_for_status()
    policy = RedeliveryPolicy(max_attempts=20, initial_delay=0.05, max_delay=0.2)
    stats = DeliveryWorker(store=sqlite_store, bus=bus, platform=platform, work=work, policy=policy).run(idle_exit=0.8)
    httpx.delete(f"{sandbox_env.platform.url}/_sandbox/faults")
    assert stats.retried > 0 and stats.parked == 0
    assert stats.delivered == report.events_published == platform.get("/api/v1/stats")["events"]


def test_unroutable_publishes_wait_in_the_outbox_and_go_once_the_topology_is_fixed(sqlite_store, sandbox_env,
                                                                                    rabbit_bus, rabbit_work):
    import pika

    from tongban.bus import outbox
    from tongban.bus import PublishError
    from tongban.bus.topology import WorkQueue
    from tongban.store import state as st

    rabbit_bus.declare(rabbit_work)
    nowhere = WorkQueue(rabbit_work.exchange, rabbit_work.queue, "no-queue-bound-to-this-key")

    class NoDeclare(type(rabbit_bus)):
        def declare(self, work):  # the topology is broken: nothing binds the key ingest publishes with
            pass

    bus = NoDeclare(rabbit_bus.url)
    platform = PlatformClient(load())
    with pytest.raises(PublishError, match="unroutable.*wait in the outbox"):
        run_ingest(load_mapping(SAMR), store=sqlite_store, bus=bus, platform=platform, work=nowhere)
    # Nothing lost, nothing moved on: the events wait in the outbox with their ledger trail; the watermark stayed.
    staged = outbox.pending(sqlite_store)["cq-samr-rest"]
    assert staged == ledger.count_by_hop(sqlite_store)["published"] > 0
    with sqlite_store.read() as conn:
        assert st.get_watermark(conn, "cq-samr-rest") is None
    # The operator binds the key; the next run sends the waiting events first, and they are delivered once.
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_bus.url))
    connection.channel().queue_bind(rabbit_work.queue, rabbit_work.exchange, nowhere.routing_key)
    connection.close()
    report = run_ingest(load_mapping(SAMR), store=sqlite_store, bus=bus, platform=platform, work=nowhere)
    bus.close()
    assert outbox.pending(sqlite_store) == {}
    stats = DeliveryWorker(store=sqlite_store, bus=rabbit_bus, platform=platform, work=rabbit_work).run(idle_exit=0.8)
    # Records of the failed chunk are unchanged now (their events were staged); only later ones are new events.
    assert stats.delivered == staged + report.events_published and stats.duplicates == 0
    assert ledger.unpublished_deliveries(sqlite_store).ok
