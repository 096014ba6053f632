"""Chains (tongban.delivery.chains): consecutive events of one case that a worker's lane holds together go to the
platform in one batch call, in order, and their receipts are recorded in one transaction — on the real PostgreSQL
and the sandbox platform. A crash between the platform's receipts and their recording doubles nothing; an event
without a receipt in the middle of a chain stops the chain there, as its single push would."""
from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select

from tongban.audit import ledger
from tongban.bus import Delivery
from tongban.delivery.batching import PushBatcher
from tongban.delivery.worker import DeliveryWorker
from tongban.platform.client import PlatformClient
from tongban.settings import load
from tongban.store.tables import deliveries, parked, quarantine

from tests.integration.test_batch_push import _batches, _cases, assert_delivered_in_order, platform  # noqa: F401 (platform: its fixture)


def _worker(store, bus, work) -> DeliveryWorker:
    worker = DeliveryWorker(store=store, bus=bus, platform=PlatformClient(load()), work=work)
    verifier = worker._verifier()
    assert verifier is not None  # the fixture's sandbox CA: receipts are signature-checked in the batch pusher
    worker.pusher = PushBatcher(worker.platform, 10, check=verifier.check)
    return worker


def _sequences(store, hop: str) -> list[int]:
    return [json.loads(e["detail"])["sequence"] for e in ledger.iter_events(store, [hop])]


def test_a_cases_events_travel_in_one_call_in_order(pg_store, rabbit_bus, rabbit_work, platform):
    client = PlatformClient(load())
    envelopes, _ = _cases(client, 1, 5)
    worker = _worker(pg_store, rabbit_bus, rabbit_work)
    assert worker.handle_run([Delivery(e, rabbit_work.queue) for e in envelopes]) == [True] * 5
    assert _batches(platform) == {"calls": 1, "events": 5, "max_events": 10}
    number = envelopes[0].correlation
    assert [e["sequence"] for e in client.case(number)["events"]] == [1, 2, 3, 4, 5]
    assert _sequences(pg_store, "delivered") == [1, 2, 3, 4, 5]
    assert worker.stats.delivered == 5 and worker.stats.waited == 0
    assert ledger.verify(pg_store).ok


def test_a_crash_before_the_receipts_are_recorded_doubles_nothing(pg_store, rabbit_bus, rabbit_work, platform):
    client = PlatformClient(load())
    envelopes, _ = _cases(client, 1, 5)
    # An earlier worker pushed the first three and died before recording them (the platform has them, we do not).
    assert all(o.error is None for o in client.push_batch([(e.payload, e.idempotency_key) for e in envelopes[:3]]))
    worker = _worker(pg_store, rabbit_bus, rabbit_work)
    write = worker.writes.write

    def crash_once(fn):
        worker.writes.write = write
        raise ConnectionError("the database went away before the commit")

    worker.writes.write = crash_once  # this worker's first recording fails too: the whole chain goes back
    runs = [Delivery(e, rabbit_work.queue) for e in envelopes]
    assert worker.handle_run(runs) == [False] * 5
    assert worker.handle_run([Delivery(e, rabbit_work.queue, redelivered=True) for e in envelopes]) == [True] * 5
    # Each event once at the platform, in order; each recorded once; the second push found them all stored.
    assert [e["sequence"] for e in client.case(envelopes[0].correlation)["events"]] == [1, 2, 3, 4, 5]
    with pg_store.read() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar() == 5
    delivered = ledger.iter_events(pg_store, ["delivered"])
    assert [json.loads(e["detail"])["sequence"] for e in delivered] == [1, 2, 3, 4, 5]
    assert [json.loads(e["detail"])["duplicate_at_platform"] for e in delivered] == [True] * 5
    assert worker.stats.delivered == 5
    assert ledger.verify(pg_store).ok


def test_a_refused_event_stops_the_chain_and_parks_the_rest(pg_store, rabbit_bus, rabbit_work, platform):
    client = PlatformClient(load())
    envelopes, _ = _cases(client, 1, 5)
    envelopes[2].payload["event"] = "no-such-event"  # the platform refuses event 3 (schema), then 4 and 5 (the gap)
    worker = _worker(pg_store, rabbit_bus, rabbit_work)
    assert worker.handle_run([Delivery(e, rabbit_work.queue) for e in envelopes]) == [True] * 5
    assert (worker.stats.delivered, worker.stats.rejected, worker.stats.parked) == (2, 1, 2)
    assert [e["sequence"] for e in client.case(envelopes[0].correlation)["events"]] == [1, 2]
    with pg_store.read() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar() == 1
        reasons = conn.execute(select(parked.c.idempotency_key, parked.c.reason).order_by(parked.c.id)).all()
    # 4 and 5 are parked behind the refused one, exactly as if they had arrived after it (5 behind the parked 4).
    assert [key for key, _ in reasons] == [envelopes[3].idempotency_key, envelopes[4].idempotency_key]
    assert "rejected by the platform" in reasons[0][1] and "is parked" in reasons[1][1]
    assert _sequences(pg_store, "delivered") == [1, 2]


def test_a_badly_signed_receipt_in_a_chain_parks_it_and_those_behind_it(pg_store, rabbit_bus, rabbit_work, platform):
    client = PlatformClient(load())
    envelopes, _ = _cases(client, 1, 4)
    httpx.post(f"{platform.url}/_sandbox/batch",
               json={"bad_receipt_keys": [envelopes[1].idempotency_key]}).raise_for_status()
    worker = _worker(pg_store, rabbit_bus, rabbit_work)
    assert worker.handle_run([Delivery(e, rabbit_work.queue) for e in envelopes]) == [True] * 4
    assert (worker.stats.delivered, worker.stats.parked) == (1, 3)
    with pg_store.read() as conn:
        reasons = [r for r, in conn.execute(select(parked.c.reason).order_by(parked.c.id))]
    assert reasons[0].startswith("receipt_signature") and all("is parked" in r for r in reasons[1:])
    assert _sequences(pg_store, "delivered") == [1]
    # The platform stored them all (only our check failed): pushed again after the replay, they are duplicates.
    assert len(client.case(envelopes[0].correlation)["events"]) == 4


@pytest.mark.parametrize("transport", ["rabbitmq", "embedded"])
def test_competing_batch_workers_keep_each_cases_order_and_deliver_once(pg_store, rabbit_work, platform,
                                                                       transport):
    """Through the buses' lanes (runs handed to the worker whole), two workers splitting the cases between them;
    the events published case by case, as an ingest does, so that a lane holds a case's events together."""
    import threading

    from tongban.bus.local import LocalBus
    from tongban.bus.rabbit import RabbitBus
    from tongban.delivery.retry import RedeliveryPolicy

    from tests.conftest import AMQP_URL

    def bus():
        return RabbitBus(AMQP_URL) if transport == "rabbitmq" else LocalBus(pg_store)

    client = PlatformClient(load())
    envelopes, expected = _cases(client, 8, 5)
    by_case = sorted(envelopes, key=lambda e: (e.correlation, e.payload["sequence"]))
    publisher = bus()
    publisher.declare(rabbit_work)
    publisher.publish(rabbit_work, by_case)
    workers = [DeliveryWorker(store=pg_store, bus=bus(), platform=PlatformClient(load()), work=rabbit_work,
                              policy=RedeliveryPolicy(initial_delay=0.2, max_delay=0.5)) for _ in range(2)]
    threads = [threading.Thread(target=w.run, kwargs={"stop": threading.Event(), "idle_exit": 1.5}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert all(w.pusher is not None for w in workers)  # batch push, so the lanes hand over runs
    assert sum(w.stats.delivered for w in workers) == len(envelopes)
    assert sum(w.stats.rejected + w.stats.parked for w in workers) == 0
    assert_delivered_in_order(client, pg_store, expected)
    assert ledger.verify(pg_store).ok
