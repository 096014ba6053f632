"""Batch push (批量推送) through the real RabbitMQ and the sandbox platform: the worker groups the events its lanes
hold into the platform's batch calls, and each event keeps its own fate — a refused event is quarantined while the
others of its batch are delivered, a transient failure of the whole call is retried and delivers each event once,
a case's events reach the platform in order across batches and competing workers, and a receipt with a bad signature
inside a batch is parked with reason receipt_signature."""
from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest

from tongban.audit import ledger
from tongban.bus.envelope import KIND_CASE_EVENT, Envelope, idempotency_key
from tongban.bus.rabbit import RabbitBus
from tongban.cases.changes import events_between
from tongban.cases.samples import sample_snapshot
from tongban.delivery.retry import RedeliveryPolicy
from tongban.delivery.worker import DeliveryWorker
from tongban.platform.client import PlatformClient
from tongban.settings import load

from tests.conftest import AMQP_URL

LIFECYCLE = events_between(None, sample_snapshot("evaluated"))
SYSTEM = "batch-test"


@pytest.fixture
def platform(tmp_path, monkeypatch):
    """The mock platform with the sandbox CA (JWS receipts) and batch push of at most 10 events a call."""
    from sandbox.platform import create_app
    from sandbox.runner import Server
    from tongban.seal.ca import init_sandbox_ca

    home = tmp_path / "home"
    init_sandbox_ca(home / "certs")
    server = Server(create_app(str(tmp_path / "platform.db"), certs_dir=str(home / "certs"), batch_max=10),
                    name="platform").start()
    monkeypatch.setenv("TONGBAN_HOME", str(home))
    monkeypatch.setenv("TONGBAN_PLATFORM_URL", server.url)
    monkeypatch.setenv("TONGBAN_PUSH_BATCH", "1")  # batch push is opt-in
    yield server
    server.stop()


def _cases(client: PlatformClient, cases: int, events: int) -> tuple[list[Envelope], dict[str, int]]:
    """`cases` cases of `events` events each, published case by case interleaved (event 1 of each, then 2 …)."""
    snapshot = sample_snapshot("evaluated")
    run = uuid.uuid4().hex[:8]
    per_case = []
    for i in range(cases):
        key = f"{run}-{i}"
        number = client.case_number(SYSTEM, key, snapshot["item_code"])
        envs = []
        for sequence, (event_type, data, at) in enumerate(LIFECYCLE[:events], start=1):
            event = {"case_number": number, "event": event_type, "sequence": sequence, "source_system": SYSTEM,
                     "source_key": key, "item_code": snapshot["item_code"], "local_item_code": None,
                     "region": snapshot["region"], "occurred_at": at, "data": data}
            envs.append(Envelope(kind=KIND_CASE_EVENT, source=SYSTEM, correlation=number, payload=event,
                                 idempotency_key=idempotency_key(SYSTEM, f"{key}#{sequence}", event)))
        per_case.append(envs)
    interleaved = [envs[n] for n in range(events) for envs in per_case]
    return interleaved, {envs[0].correlation: events for envs in per_case}


def _work(store, bus, work, *, workers: int = 1, policy=None) -> list[DeliveryWorker]:
    runners = [DeliveryWorker(store=store, bus=RabbitBus(AMQP_URL), platform=PlatformClient(load()), work=work,
                              policy=policy or RedeliveryPolicy(initial_delay=0.2, max_delay=0.5))
               for _ in range(workers)]
    threads = [threading.Thread(target=w.run, kwargs={"stop": threading.Event(), "idle_exit": 1.5})
               for w in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    return runners


def _batches(server) -> dict:
    return httpx.get(f"{server.url}/_sandbox/batch").json()


def assert_delivered_in_order(client: PlatformClient, store, expected: dict[str, int]) -> None:
    """Every case of `expected` (case number → events) holds its events 1…n at the platform, in order, and each
    receipt is in the ledger, a case's recorded in its order."""
    for number, count in expected.items():
        assert [e["sequence"] for e in client.case(number)["events"]] == list(range(1, count + 1))
    order: dict[str, list[int]] = {}
    for event in ledger.iter_events(store, ["delivered"]):
        order.setdefault(event["case_number"], []).append(json.loads(event["detail"])["sequence"])
    assert order == {number: list(range(1, count + 1)) for number, count in expected.items()}


def _total(workers, name: str) -> int:
    return sum(getattr(w.stats, name) for w in workers)


def test_the_platform_advertises_its_batch_limit(platform):
    with PlatformClient(load()) as client:
        assert client.batch_limit() == 10


@pytest.mark.parametrize("setting, batched", [(None, False), ("1", True), ("0", False)],
                         ids=["default", "TONGBAN_PUSH_BATCH=1", "TONGBAN_PUSH_BATCH=0"])
def test_batch_push_is_opt_in(pg_store, rabbit_bus, rabbit_work, platform, monkeypatch, setting, batched):
    """A worker with nothing set pushes one event per call, the batch endpoint never called; TONGBAN_PUSH_BATCH=1
    makes it use the platform's batch calls (fewer calls than events). Every event is delivered once either way."""
    if setting is None:
        monkeypatch.delenv("TONGBAN_PUSH_BATCH")
    else:
        monkeypatch.setenv("TONGBAN_PUSH_BATCH", setting)
    client = PlatformClient(load())
    envelopes, expected = _cases(client, 12, 3)
    rabbit_bus.declare(rabbit_work)
    rabbit_bus.publish(rabbit_work, envelopes)
    workers = _work(pg_store, rabbit_bus, rabbit_work)
    batches = _batches(platform)
    assert _total(workers, "delivered") == len(envelopes)
    if batched:
        assert 0 < batches["calls"] < batches["events"] == len(envelopes)
    else:
        assert batches["calls"] == batches["events"] == 0
    assert_delivered_in_order(client, pg_store, expected)


def test_a_refused_event_fails_alone_in_its_batch(pg_store, rabbit_bus, rabbit_work, platform):
    from sqlalchemy import select

    from tongban.store.tables import quarantine

    client = PlatformClient(load())
    envelopes, _ = _cases(client, 30, 1)
    refused = envelopes[7]
    refused.payload["case_number"] = "NOT-ISSUED-BY-THE-PLATFORM"  # the platform answers 422 for this event only
    refused.correlation = "NOT-ISSUED-BY-THE-PLATFORM"
    rabbit_bus.declare(rabbit_work)
    rabbit_bus.publish(rabbit_work, envelopes)
    workers = _work(pg_store, rabbit_bus, rabbit_work)
    batches = _batches(platform)
    assert batches["calls"] < batches["events"]  # events did share calls
    assert _total(workers, "delivered") == 29 and _total(workers, "rejected") == 1
    # The refused event is handled as a single push's refusal: quarantined with the platform's reason, in the ledger.
    with pg_store.read() as conn:
        rows = conn.execute(select(quarantine).where(quarantine.c.source_key == refused.payload["source_key"])).all()
    assert len(rows) == 1 and "unknown case number" in rows[0].rule
    rejected = ledger.iter_events(pg_store, ["rejected"])
    assert [e["idempotency_key"] for e in rejected] == [refused.idempotency_key]
    delivered_keys = {e["idempotency_key"] for e in ledger.iter_events(pg_store, ["receipt"])}
    assert delivered_keys == {e.idempotency_key for e in envelopes} - {refused.idempotency_key}


def test_a_transient_failure_of_the_whole_call_is_retried_and_delivers_once(pg_store, rabbit_bus, rabbit_work,
                                                                             platform):
    client = PlatformClient(load())
    envelopes, _ = _cases(client, 20, 1)
    # More failures than the client's quick retry absorbs: the first call fails whole, its events go round a delay queue.
    httpx.post(f"{platform.url}/_sandbox/faults", json={"fail_next": 3, "status": 503, "retry_after": 0})
    rabbit_bus.declare(rabbit_work)
    rabbit_bus.publish(rabbit_work, envelopes)
    workers = _work(pg_store, rabbit_bus, rabbit_work)
    assert _total(workers, "retried") > 0
    assert _total(workers, "delivered") == 20 and _total(workers, "parked") == 0
    receipts = ledger.iter_events(pg_store, ["receipt"])
    assert sorted(e["idempotency_key"] for e in receipts) == sorted(e.idempotency_key for e in envelopes)
    for env in envelopes:
        assert len(client.case(env.correlation)["events"]) == 1  # stored once on the platform


def test_a_case_keeps_its_order_across_batches_and_competing_workers(pg_store, rabbit_bus, rabbit_work, platform):
    client = PlatformClient(load())
    envelopes, expected = _cases(client, 12, 5)
    rabbit_bus.declare(rabbit_work)
    rabbit_bus.publish(rabbit_work, envelopes)
    workers = _work(pg_store, rabbit_bus, rabbit_work, workers=2)
    batches = _batches(platform)
    assert batches["calls"] < batches["events"]
    # The platform refuses any event out of sequence (409): none was refused, none parked, all delivered once.
    assert _total(workers, "rejected") == 0 and _total(workers, "parked") == 0
    assert _total(workers, "delivered") == len(envelopes)
    assert_delivered_in_order(client, pg_store, expected)


def test_a_badly_signed_receipt_inside_a_batch_is_parked(pg_store, rabbit_bus, rabbit_work, platform):
    from sqlalchemy import select

    from tongban.store.tables import parked

    client = PlatformClient(load())
    envelopes, _ = _cases(client, 20, 1)
    bad = envelopes[5]
    httpx.post(f"{platform.url}/_sandbox/batch", json={"bad_receipt_keys": [bad.idempotency_key]}).raise_for_status()
    rabbit_bus.declare(rabbit_work)
    rabbit_bus.publish(rabbit_work, envelopes)
    workers = _work(pg_store, rabbit_bus, rabbit_work)
    assert _batches(platform)["calls"] < 20
    assert _total(workers, "delivered") == 19 and _total(workers, "parked") == 1
    with pg_store.read() as conn:
        rows = conn.execute(select(parked).where(parked.c.idempotency_key == bad.idempotency_key)).all()
    assert len(rows) == 1 and rows[0].reason.startswith("receipt_signature")
    assert bad.idempotency_key not in {e["idempotency_key"] for e in ledger.iter_events(pg_store, ["receipt"])}


def test_a_batch_answers_each_event_as_the_single_push_would(platform):
    """Client level: a key pushed before comes back as its original receipt marked duplicate, an event with a sequence
    gap is refused with the state rule, n and n + 1 of one case may share a call, the rest of the batch is stored."""
    from tongban.platform.client import PlatformRejected

    with PlatformClient(load()) as client:
        envelopes, _ = _cases(client, 2, 3)  # case A 1, case B 1, A 2, B 2, A 3, B 3
        a1, b1, a2, b2, a3, _b3 = [(e.payload, e.idempotency_key) for e in envelopes]
        first = client.push_event(*a1)
        outcomes = client.push_batch([a1, a2, a3, b2, b1])  # b2 before b1: a gap at the time it is taken
        assert [o.idempotency_key for o in outcomes] == [k for _, k in (a1, a2, a3, b2, b1)]
        assert outcomes[0].receipt["duplicate"] is True and outcomes[0].receipt["receipt_id"] == first["receipt_id"]
        assert outcomes[1].receipt["sequence"] == 2 and outcomes[2].receipt["sequence"] == 3
        assert isinstance(outcomes[3].error, PlatformRejected) and outcomes[3].error.status == 409
        assert outcomes[4].receipt["sequence"] == 1
        assert [e["sequence"] for e in client.case(a1[0]["case_number"])["events"]] == [1, 2, 3]
        assert [e["sequence"] for e in client.case(b1[0]["case_number"])["events"]] == [1]
