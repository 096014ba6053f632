"""End to end on the real RabbitMQ: the sandbox ministry's SOAP batch service, read by the zeep SOAP adapter →
routing onto exchange <TONGBAN_QUEUE_PREFIX>.flowback with one durable queue per district → the sandbox district
sinks → a balanced reconciliation; the ministry re-sending the batch routes nothing twice."""
from __future__ import annotations

import json

import os
import uuid
from pathlib import Path

import pika
import pytest
import yaml

from sandbox.district_sinks import DistrictSinkWorld
from sandbox.ministry import DEFAULT_PASSWORD, PASSWORD_ENV, USERNAME, USERNAME_ENV, MinistrySoapService, make_batch
from sandbox.runner import Server
from tongban.audit import ledger
from tongban.bus.rabbit import RabbitBus
from tongban.bus.select import rabbitmq_answers
from tongban.flowback import flowback_topology, reconcile, run_flowback_source
from tongban.store import open_store

AMQP = os.environ.get("TONGBAN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROUTING = Path(__file__).resolve().parents[2] / "mappings" / "flowback" / "routing.yaml"

pytestmark = pytest.mark.skipif(not rabbitmq_answers(AMQP), reason="RabbitMQ is not running at " + AMQP)


SOURCE = Path(__file__).resolve().parents[2] / "mappings" / "flowback" / "sources" / "mps-soap.yaml"


@pytest.fixture
def prefix(monkeypatch):
    """TONGBAN_QUEUE_PREFIX of this test run's own: the flowback exchange and queues are <prefix>.flowback…,
    deleted afterwards."""
    env = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TONGBAN_QUEUE_PREFIX", env)
    name = f"{env}.flowback"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(AMQP))
    channel = connection.channel()
    for work in flowback_topology(name).values():
        for queue in work.own_queues:
            channel.queue_delete(queue)
    for queue in work.retry_queues:  # one set of retry tiers for all district queues (they share the exchange)
        channel.queue_delete(queue)
    channel.exchange_delete(work.retry_exchange)
    channel.exchange_delete(name)
    connection.close()


@pytest.fixture
def ministry(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, DEFAULT_PASSWORD)
    monkeypatch.setenv(USERNAME_ENV, USERNAME)
    service = MinistrySoapService([make_batch("MPS-20240401-0001", 400, seed=11)])
    server = Server(service.app, name="ministry").start()
    yield service, server
    server.stop()


@pytest.mark.timeout(120)  # a stuck consumer fails the test with a traceback instead of hanging the run
def test_soap_batch_flows_through_rabbitmq_to_every_district_and_balances(tmp_path, prefix, ministry, monkeypatch):
    service, server = ministry
    sinks = DistrictSinkWorld(tmp_path / "sinks").start()
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    bus = RabbitBus(AMQP)
    # The repository's SOAP source file, unchanged, pointed at this ministry and these sinks.
    sinks_file = tmp_path / "sinks.yaml"
    sinks_file.write_text(yaml.safe_dump(sinks.sinks_config(retry={"initial_delay": 0.05, "max_delay": 0.2})
                                         .model_dump(), allow_unicode=True), encoding="utf-8")
    config = tmp_path / "mps-soap.yaml"
    config.write_text(SOURCE.read_text(encoding="utf-8").replace("../routing.yaml", str(ROUTING))
                      .replace("../district-sinks.yaml", str(sinks_file)).replace("size: 500", "size: 150"),
                      encoding="utf-8")
    monkeypatch.setenv("TONGBAN_MINISTRY_URL", server.url)
    sinks.sink("500101").fail_next(1, 503)  # one transient failure on the way: retried through the delay queue
    try:
        report = run_flowback_source(config, store=store, bus=bus)  # the prefix comes from TONGBAN_QUEUE_PREFIX

        assert report.balanced, [r.gaps for r in report.reconciliations]
        (outcome,) = report.batches
        assert outcome.records_in == 400 and outcome.digest_ok
        batch = service.batches["MPS-20240401-0001"]
        received = sinks.received_by_rowguid()
        for guid, expected in batch.expected.items():
            if expected.startswith("quarantine:"):
                assert guid not in received
            else:
                assert received[guid] == expected, guid
        assert "city" in outcome.per_target and len(outcome.per_target) > 20
        assert "MPS-20240401-0001" in service.acked  # acknowledged to the ministry only after routing

        service.resend("MPS-20240401-0001")  # the ministry sends the batch again
        again = run_flowback_source(config, store=store, bus=bus)
        assert [b.duplicate for b in again.batches] == [True] and again.delivery.delivered == 0
        assert len(sinks.received_by_rowguid()) == len(received)
        (rec_,) = reconcile(store, "MPS-20240401-0001")
        assert rec_.balanced and rec_.times_received == 2
        assert ledger.verify(store).ok
        # Every message went through this environment's queues, none through the default `tongban.flowback.*`.
        channel = pika.BlockingConnection(pika.URLParameters(AMQP)).channel()
        assert channel.queue_declare(f"{prefix}.500101", passive=True).method.message_count == 0
        chunks = ledger.iter_events(store, ["routed_chunk"])
        assert chunks and sum(json.loads(e["detail"])["count"] for e in chunks) == outcome.routed
    finally:
        bus.close()
        sinks.stop()
