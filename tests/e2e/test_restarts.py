"""Endurance through restarts, the short version (the soak, tests/e2e/test_soak.py, is the long one).

These tests RESTART SERVICES: the RabbitMQ broker (`rabbitmqctl stop_app` / `start_app`) and the PostgreSQL cluster
(`pg_ctlcluster … restart`) named by TONGBAN_TEST_RABBIT_NODE / TONGBAN_TEST_AMQP and TONGBAN_TEST_PG_CLUSTER /
TONGBAN_TEST_PG (tests/endurance.py), by default the machine's own. Each says on the terminal what it is about to do
before it does it, and leaves the service running afterwards, also when it fails.

After each: the mock platform stored every event exactly once AND the ledger has exactly one `delivered` event per
event (0 lost, 0 doubled, both counted), and the ledger's hash chain verifies."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest
from sqlalchemy.exc import DBAPIError

from tests import endurance as en
from tests.conftest import AMQP_URL
from tests.support import REPO, scratch_pg_schema
from tongban.audit import ledger
from tongban.bus.rabbit import RabbitBus
from tongban.bus.topology import cases_work
from tongban.platform.client import PlatformClient
from tongban.settings import Settings

pytestmark = pytest.mark.timeout(420)
CASES = 60  # × 8 events: 480 events, the later 7 of each case round the ordering gate's wait queue


@pytest.fixture
def rabbit(say):
    broker = en.Rabbit()
    yield broker
    broker.ensure_running()  # whatever happened, the broker is left running


@pytest.fixture
def postgres(say):
    cluster = en.Postgres()
    yield cluster
    cluster.ensure_running()


@pytest.fixture
def platform(tmp_path, monkeypatch):
    from sandbox.platform import create_app
    from sandbox.runner import Server

    server = Server(create_app(str(tmp_path / "platform.db")), name="restart-platform").start()
    monkeypatch.setenv("TONGBAN_PLATFORM_URL", server.url)
    server.db = tmp_path / "platform.db"
    yield server
    server.stop()


def _delivered(store) -> int:
    try:
        return en.delivered_count(store)
    except DBAPIError:  # the database is restarting
        return -1


def _deliver_through(restart, *, store, platform, tmp_path, say) -> None:
    """Publish CASES cases, two workers deliver them; `restart()` once a third is delivered; then count."""
    work = cases_work(f"restart-{uuid.uuid4().hex[:8]}")
    bus = RabbitBus(AMQP_URL)
    bus.declare(work)
    envelopes = en.case_events(PlatformClient(Settings()), CASES)
    bus.publish(work, envelopes)
    env = en.worker_env(db_url=store.url, prefix=work.queue.split(".")[0], platform_url=platform.url,
                        home=tmp_path / "home")
    workers = [en.start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        en.wait_until(lambda: _delivered(store) >= len(envelopes) // 3, 120, "a third of the events delivered")
        restart()
        en.wait_until(lambda: _delivered(store) >= len(envelopes), 240, "every event delivered after the restart")
        time.sleep(1.0)  # a redelivered copy still in flight would show up now as a second `delivered`
    finally:
        en.stop_processes(workers)
    report = en.exactly_once_report({e.idempotency_key for e in envelopes}, platform.db, store)
    assert en.clean(report), report
    assert ledger.verify(store).ok
    assert sum(bus.depth(q) for q in bus.queues(work)) == 0  # nothing left behind on the broker
    bus.delete(work)
    bus.close()


def test_a_rabbitmq_restart_mid_delivery_loses_and_doubles_nothing(rabbit, pg_store, platform, tmp_path, say):
    def restart():
        say(f"about to restart {rabbit.label}: rabbitmqctl stop_app, 2 s down, start_app "
            f"(its other clients lose their connections)")
        took = rabbit.restart()
        say(f"{rabbit.label} is back after {took:.1f} s")

    _deliver_through(restart, store=pg_store, platform=platform, tmp_path=tmp_path, say=say)


def test_a_postgresql_restart_mid_delivery_loses_and_doubles_nothing(postgres, pg_store, platform, tmp_path, say):
    def restart():
        say(f"about to restart {postgres.label}: pg_ctlcluster restart -m fast (its other sessions are cut)")
        took = postgres.restart()
        say(f"{postgres.label} is back after {took:.1f} s")

    _deliver_through(restart, store=pg_store, platform=platform, tmp_path=tmp_path, say=say)


def _published(store) -> int:
    try:
        return ledger.count_by_hop(store).get("published", 0)
    except DBAPIError:
        return 0


def test_an_ingest_killed_mid_publish_then_run_again_delivers_every_record_once(platform, tmp_path, say):
    """SIGKILL between a chunk's commit and the end of the run; the next run relays what the outbox holds and
    fetches the rest. The oracle: the same legacy world ingested uninterrupted (embedded bus, its own SQLite home)
    against the same platform (numbering is idempotent, so the idempotency keys are the same)."""
    from sandbox.legacy_rest import create_app as legacy_app
    from sandbox.legacy_world import LegacyWorld
    from sandbox.runner import Server
    from tongban.store import Store

    world = LegacyWorld(seed=5, cases=400, bad_share=0.0)
    world.advance(30)  # every case there, most with several events
    legacy = Server(legacy_app(world, token="restart-token"), name="restart-legacy").start()
    mapping = str(REPO / "mappings" / "cq-samr-rest.yaml")
    base = {**os.environ, "CQ_SAMR_URL": legacy.url, "CQ_SAMR_TOKEN": "restart-token",
            "TONGBAN_PLATFORM_URL": platform.url, "COLUMNS": "200"}
    base.pop("TONGBAN_MAPPINGS", None)
    workers: list[subprocess.Popen] = []
    try:
        from tests.schema_at_head import home_at_head

        reference_home = home_at_head(tmp_path / "reference")
        reference = subprocess.run([en.TONGBAN, "ingest", mapping], env={
            **base, "TONGBAN_HOME": str(reference_home), "TONGBAN_BUS": "inprocess"}, cwd=tmp_path,
            capture_output=True, text=True, timeout=300)
        assert reference.returncode == 0, reference.stdout + reference.stderr
        oracle = Store(f"sqlite:///{reference_home}/tongban.db")
        expected = {e["idempotency_key"] for e in ledger.iter_events(oracle, ["published"])}
        oracle.dispose()
        assert len(expected) > 1500  # several publish chunks (500 events each): a kill lands mid-run

        with scratch_pg_schema("restart") as url:
            store = Store(url)
            work = cases_work(f"restart-{uuid.uuid4().hex[:8]}")
            env = {**en.worker_env(db_url=url, prefix=work.queue.split(".")[0], platform_url=platform.url,
                                   home=tmp_path / "home"), **{k: base[k] for k in ("CQ_SAMR_URL", "CQ_SAMR_TOKEN")}}
            env.pop("TONGBAN_MAPPINGS", None)
            say("about to SIGKILL a `tongban ingest` of this test's own mid-publish (no shared service is touched)")
            first = subprocess.Popen([en.TONGBAN, "ingest", mapping], env=env, cwd=tmp_path, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            en.wait_until(lambda: _published(store) > 0 or first.poll() is not None, 120, "the first chunk",
                          every=0.02)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            at_kill = _published(store)
            assert 0 < at_kill < len(expected), at_kill  # killed mid-run, some published, not all
            again = subprocess.run([en.TONGBAN, "ingest", mapping], env=env, cwd=tmp_path, capture_output=True,
                                   text=True, timeout=300)
            assert again.returncode == 0, again.stdout + again.stderr
            workers = [en.start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
            en.wait_until(lambda: _delivered(store) >= len(expected), 240, "every ingested event delivered")
            time.sleep(1.0)
            en.stop_processes(workers)
            report = en.exactly_once_report(expected, platform.db, store)
            assert en.clean(report), report
            assert ledger.verify(store).ok
            bus = RabbitBus(AMQP_URL)
            assert sum(bus.depth(q) for q in bus.queues(work)) == 0
            bus.delete(work)
            bus.close()
            store.dispose()
    finally:
        en.stop_processes(workers)
        legacy.stop()
