"""Chaos: 10,000 cases through the real RabbitMQ to a mock platform that fails 30% of requests, with two
competing `tongban worker` processes, one of them SIGKILLed three times mid-stream, and every broker connection
force-closed once (the broker connections of a vhost of its own: tests running beside it keep theirs). Afterwards the platform holds every case exactly once, the ledger accounts for every message,
and the hash chain verifies.

TONGBAN_CHAOS_CASES overrides the size (default 10,000)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.support import close_vhost_connections, rabbit_vhost
from tongban.audit import ledger
from tongban.bus.rabbit import RabbitBus
from tongban.bus.topology import cases_work
from tongban.cases.samples import sample_snapshot
from tongban.cases.changes import events_between
from tongban.bus.envelope import KIND_CASE_EVENT, Envelope, idempotency_key
from tongban.platform.client import PlatformClient
from tongban.settings import Settings
from tongban.store.tables import deliveries, parked, quarantine

CASES = int(os.environ.get("TONGBAN_CHAOS_CASES", "10000"))
TONGBAN = str(Path(sys.executable).with_name("tongban"))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _counts(store) -> tuple[int, int, int]:
    with store.read() as conn:
        return (conn.execute(select(func.count()).select_from(deliveries)).scalar(),
                conn.execute(select(func.count()).select_from(parked).where(parked.c.status == "open")).scalar(),
                conn.execute(select(func.count()).select_from(quarantine)).scalar())


def _worker(env, log: Path) -> subprocess.Popen:
    # stderr to a file, not a pipe nobody reads: once a worker's retry warnings filled the pipe (64 KiB), its next
    # log line blocked it — mid-run it stopped delivering, and at the end it could not finish and exit on SIGTERM.
    with log.open("ab") as stderr:
        return subprocess.Popen([TONGBAN, "worker", "--lanes", "8", "--prefetch", "64"], env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def test_nothing_lost_nothing_doubled_under_chaos(pg_store, tmp_path, monkeypatch):
    with rabbit_vhost("tongban-chaos") as amqp_url:
        _chaos(pg_store, tmp_path, monkeypatch, amqp_url)


def _chaos(pg_store, tmp_path, monkeypatch, amqp_url: str):
    from sandbox.platform import create_app
    from sandbox.runner import Server

    platform_server = Server(create_app(str(tmp_path / "platform.db")), name="chaos-platform").start()
    prefix = f"chaos-{uuid.uuid4().hex[:8]}"
    work = cases_work(prefix)
    monkeypatch.setenv("TONGBAN_PLATFORM_URL", platform_server.url)
    settings = Settings()
    platform = PlatformClient(settings)

    # 10,000 legacy cases, each numbered by the platform and published as its application event.
    snapshot = sample_snapshot("applied")
    (event_type, data, occurred_at), = events_between(None, snapshot)

    def number(i: int) -> str:
        return platform.case_number("chaos-legacy", f"L{i:06d}", snapshot["item_code"])

    with ThreadPoolExecutor(16) as pool:
        numbers = list(pool.map(number, range(CASES)))
    envelopes = []
    for i, case_number in enumerate(numbers):
        event = {"case_number": case_number, "event": event_type, "sequence": 1, "source_system": "chaos-legacy",
                 "source_key": f"L{i:06d}", "item_code": snapshot["item_code"], "local_item_code": None,
                 "region": snapshot["region"], "occurred_at": occurred_at, "data": data}
        envelopes.append(Envelope(kind=KIND_CASE_EVENT, source="chaos-legacy", correlation=case_number, payload=event,
                                  idempotency_key=idempotency_key("chaos-legacy", f"L{i:06d}#1", event)))
    bus = RabbitBus(amqp_url)
    bus.declare(work)
    bus.publish(work, envelopes)

    httpx.post(f"{platform_server.url}/_sandbox/faults", json={
        "error_rate": 0.3, "kinds": ["500", "timeout", "reset", "429"], "retry_after": 1,
        "timeout_seconds": 1.0, "seed": 7}).raise_for_status()
    env = {**os.environ, "TONGBAN_DB_URL": pg_store.url, "TONGBAN_BUS": "rabbitmq", "TONGBAN_AMQP_URL": amqp_url,
           "TONGBAN_QUEUE_PREFIX": prefix, "TONGBAN_PLATFORM_URL": platform_server.url,
           "TONGBAN_HOME": str(tmp_path / "home")}
    steady, victim = _worker(env, tmp_path / "steady.log"), _worker(env, tmp_path / "victim.log")
    kills, closed_connections = 0, False
    deadline = time.monotonic() + 1200
    try:
        while time.monotonic() < deadline:
            delivered, parked_n, _ = _counts(pg_store)
            if delivered + parked_n >= CASES:
                break
            progress = delivered / CASES
            if kills < 3 and progress > 0.15 * (kills + 1):
                os.killpg(victim.pid, signal.SIGKILL)  # mid-stream: messages in hand are lost by the worker
                victim.wait()
                kills += 1
                victim = _worker(env, tmp_path / "victim.log")
            if not closed_connections and progress > 0.5:
                assert close_vhost_connections(amqp_url, "chaos test") >= 2  # the two workers' at least
                closed_connections = True
            time.sleep(0.5)
    finally:
        for proc in (steady, victim):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # finish the message in hand, then exit
        for proc in (steady, victim):
            proc.wait(timeout=60)
        httpx.delete(f"{platform_server.url}/_sandbox/faults")
        bus.close()
    assert kills == 3 and closed_connections

    delivered, parked_n, quarantined_n = _counts(pg_store)
    stats = platform.get("/api/v1/stats")
    platform_server.stop()
    # The platform holds every delivered case exactly once; nothing else arrived twice.
    assert stats["events"] == stats["cases"] == delivered
    # The ledger accounts for every message: delivered, or parked with a reason.
    assert delivered + parked_n == CASES and quarantined_n == 0
    events = ledger.iter_events(pg_store, ["delivered", "parked"])
    accounted = {e["idempotency_key"] for e in events}
    assert accounted == {e.idempotency_key for e in envelopes}
    assert all(e["detail"] for e in events if e["hop"] == "parked")
    by_hop = ledger.count_by_hop(pg_store)
    assert by_hop["retried"] > CASES * 0.05  # the faults really happened and were retried
    assert ledger.verify(pg_store).ok
    # The queues are empty: nothing is left behind.
    assert sum(bus.depth(q) for q in bus.queues(work)) == 0
    bus.delete(work)
