"""A message given again (RabbitMQ redelivers what was not acked when a connection or the broker went away) is
delivered once: one `delivered` ledger event, one delivery row, one push to the platform — whether the copy comes
after the first delivery committed, while it is still being pushed, or in the same group commit."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import func, select

from tongban.audit import ledger
from tongban.bus.base import Delivery
from tongban.bus.envelope import KIND_CASE_EVENT, Envelope, idempotency_key
from tongban.cases.changes import events_between
from tongban.cases.samples import sample_snapshot
from tongban.delivery.worker import DeliveryWorker
from tongban.platform.client import PlatformClient
from tongban.settings import load
from tongban.store.tables import deliveries

SYSTEM = "redelivery-test"


@pytest.fixture
def platform(tmp_path, monkeypatch):
    """The mock platform signing receipts (JWS) with the sandbox CA the worker trusts."""
    from sandbox.platform import create_app
    from sandbox.runner import Server
    from tongban.seal.ca import init_sandbox_ca

    home = tmp_path / "home"
    init_sandbox_ca(home / "certs")
    server = Server(create_app(str(tmp_path / "platform.db"), certs_dir=str(home / "certs")), name="platform").start()
    monkeypatch.setenv("TONGBAN_HOME", str(home))
    monkeypatch.setenv("TONGBAN_PLATFORM_URL", server.url)
    monkeypatch.setenv("TONGBAN_PUSH_BATCH", "0")
    yield server
    server.stop()


class CountingClient(PlatformClient):
    """The platform client, counting case-event pushes; `slow` holds the first push until `resume` is set."""

    def __init__(self, settings):
        super().__init__(settings)
        self.pushes = 0
        self.pushing = threading.Event()
        self.resume: threading.Event | None = None

    def push_event(self, event, key):
        self.pushes += 1
        self.pushing.set()
        if self.resume is not None:
            self.resume.wait(10)
        return super().push_event(event, key)


def _envelope(client: PlatformClient) -> Envelope:
    snapshot = sample_snapshot("applied")
    (event_type, data, at), = events_between(None, snapshot)
    key = uuid.uuid4().hex[:10]
    number = client.case_number(SYSTEM, key, snapshot["item_code"])
    event = {"case_number": number, "event": event_type, "sequence": 1, "source_system": SYSTEM, "source_key": key,
             "item_code": snapshot["item_code"], "local_item_code": None, "region": snapshot["region"],
             "occurred_at": at, "data": data}
    return Envelope(kind=KIND_CASE_EVENT, source=SYSTEM, correlation=number, payload=event,
                    idempotency_key=idempotency_key(SYSTEM, f"{key}#1", event))


def _copy(env: Envelope) -> Envelope:
    """The same message as the broker gives it again (same message id and idempotency key)."""
    return Envelope.from_bytes(env.to_bytes())


def _hops(store, env: Envelope) -> list[str]:
    return sorted(e["hop"] for e in ledger.iter_events(store) if e["idempotency_key"] == env.idempotency_key)


def _rows(store, env: Envelope) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(deliveries)
                            .where(deliveries.c.idempotency_key == env.idempotency_key)).scalar()


@pytest.fixture
def worker(store, platform):
    client = CountingClient(load())
    worker = DeliveryWorker(store=store, bus=None, platform=client)
    yield worker
    client.close()


def test_a_message_given_again_after_its_delivery_is_a_duplicate(store, worker):
    env = _envelope(worker.platform)
    worker.handle(Delivery(env, "q"))
    worker.handle(Delivery(_copy(env), "q", redelivered=True))
    assert _hops(store, env) == ["delivered", "duplicate", "receipt"]
    assert worker.platform.pushes == 1 and _rows(store, env) == 1
    assert worker.stats.delivered == 1 and worker.stats.duplicates == 1


def test_a_copy_taken_by_another_lane_while_the_first_is_pushed_is_not_pushed_again(store, worker):
    env = _envelope(worker.platform)
    worker.platform.resume = threading.Event()
    first = threading.Thread(target=worker.handle, args=(Delivery(env, "q"),), daemon=True)
    first.start()
    assert worker.platform.pushing.wait(10)  # the first copy is at the platform, nothing recorded yet
    second = threading.Thread(target=worker.handle, args=(Delivery(_copy(env), "q", redelivered=True),), daemon=True)
    second.start()
    second.join(0.3)  # the second copy's lane is under way (it must not reach the platform)
    worker.platform.resume.set()
    first.join(20)
    second.join(20)
    assert not first.is_alive() and not second.is_alive()
    assert worker.platform.pushes == 1
    assert _hops(store, env) == ["delivered", "duplicate", "receipt"] and _rows(store, env) == 1


def test_two_records_of_one_message_in_one_group_commit_make_one_delivery(store, worker):
    env = _envelope(worker.platform)
    receipt = worker.platform.push_event(env.payload, env.idempotency_key)
    hold, taken = threading.Event(), threading.Event()
    threading.Thread(target=worker.writes.write, args=(lambda conn: taken.set() or hold.wait(10),),
                     daemon=True).start()
    assert taken.wait(10)  # the committer is busy: the next writes queue up and go in one transaction
    results: list[bool] = []
    lanes = [threading.Thread(target=lambda e=e: results.append(worker.writes.write(
        lambda conn: worker._record(conn, e, receipt)).fresh), daemon=True) for e in (env, _copy(env))]  # noqa: SLF001
    for lane in lanes:
        lane.start()
    deadline = time.monotonic() + 10
    while worker.writes._pending.qsize() < 2 and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.01)
    hold.set()
    for lane in lanes:
        lane.join(20)
    assert sorted(results) == [False, True]
    assert _hops(store, env) == ["delivered", "duplicate", "receipt"] and _rows(store, env) == 1
    assert ledger.verify(store).ok


def test_a_message_published_twice_on_rabbitmq_is_delivered_once(pg_store, rabbit_bus, rabbit_work, platform):
    client = CountingClient(load())
    envs = [_envelope(client) for _ in range(6)]
    rabbit_bus.declare(rabbit_work)
    rabbit_bus.publish(rabbit_work, envs + [_copy(e) for e in envs])  # each message, then each again
    stats = DeliveryWorker(store=pg_store, bus=rabbit_bus, platform=client, work=rabbit_work).run(
        stop=threading.Event(), idle_exit=1.0)
    client.close()
    assert stats.delivered == 6 and stats.duplicates == 6
    for env in envs:
        assert _hops(pg_store, env) == ["delivered", "duplicate", "receipt"] and _rows(pg_store, env) == 1
    assert client.pushes == 6 and ledger.verify(pg_store).ok


def test_two_workers_recording_one_message_at_once_make_one_delivery(store, platform):
    """Two workers' committers (two transactions) record the same message: the second waits on the first's row and
    records a duplicate once the first commits."""
    clients = [CountingClient(load()) for _ in range(2)]
    first, second = (DeliveryWorker(store=store, bus=None, platform=c) for c in clients)
    env = _envelope(clients[0])
    receipt = clients[0].push_event(env.payload, env.idempotency_key)
    recorded, hold = threading.Event(), threading.Event()
    results: dict[str, bool] = {}

    def record_then_wait(conn):
        # The first transaction has its turn at the ledger (a delivery's row goes in only under it, at the end of
        # the transaction) and is not committed yet.
        ledger.take_turn(conn)
        outcome = first._record(conn, env, receipt)  # noqa: SLF001
        recorded.set()
        hold.wait(10)
        return outcome

    a = threading.Thread(target=lambda: results.setdefault("first", first.writes.write(record_then_wait).fresh),
                         daemon=True)
    a.start()
    assert recorded.wait(10)
    b = threading.Thread(target=lambda: results.setdefault("second", second.writes.write(
        lambda conn: second._record(conn, _copy(env), receipt)).fresh), daemon=True)  # noqa: SLF001
    b.start()
    b.join(0.3)  # the second transaction is under way, waiting for the first
    hold.set()
    a.join(30)
    b.join(30)
    for c in clients:
        c.close()
    assert results == {"first": True, "second": False}
    assert _hops(store, env) == ["delivered", "duplicate", "receipt"] and _rows(store, env) == 1
