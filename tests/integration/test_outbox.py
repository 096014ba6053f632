"""The transactional outbox (issue 20 item 5): nothing is delivered without its "published" ledger event.

A crash between the commit and the broker's confirm leaves the messages in the outbox, and the next relay pass
delivers them; a crash after the confirm sends them twice, and the idempotent consumer delivers them once.
`tongban audit verify` stays clean in both, and names a delivery that has no publication.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongban.audit import ledger
from tongban.bus import outbox
from tongban.bus.base import PublishError
from tongban.bus.local import LocalBus
from tongban.bus.topology import cases_work
from tongban.delivery.worker import DeliveryWorker
from tongban.pipeline.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.platform.client import PlatformClient
from tongban.settings import load
from tongban.store import open_store
from tongban.store import state as st

pytestmark = pytest.mark.timeout(120)

SAMR = Path(__file__).resolve().parents[2] / "mappings" / "cq-samr-rest.yaml"
WORK = cases_work("ob")


class CrashBeforeConfirm(LocalBus):
    """The broker went away after the outbox commit: nothing reached the queue."""

    def publish(self, work, envelopes):
        raise PublishError("broker connection lost (injected)")


class CrashAfterConfirm(LocalBus):
    """The broker confirmed, then the connection died before the outbox rows were removed."""

    def publish(self, work, envelopes):
        super().publish(work, envelopes)
        raise PublishError("connection lost after the confirm (injected)")


@pytest.fixture
def store(sandbox_env, monkeypatch):
    monkeypatch.setenv("TONGBAN_BUS", "inprocess")  # the CLI's relay uses the same embedded bus
    return open_store(load().db_url)


def _ingest(store, bus):
    return run_ingest(load_mapping(SAMR), store=store, bus=bus, platform=PlatformClient(load()), work=WORK)


def _deliver(store):
    return DeliveryWorker(store=store, bus=LocalBus(store), platform=PlatformClient(load()), work=WORK).run(
        stop=threading.Event(), idle_exit=0.5)


def _cli(*args):
    from tongban.cli import app

    return CliRunner().invoke(app, list(args))


def test_a_publish_crash_after_the_commit_is_repaired_by_the_next_relay(store, sandbox_env):
    with pytest.raises(PublishError, match="wait in the outbox"):
        _ingest(store, CrashBeforeConfirm(store))
    published = ledger.count_by_hop(store)["published"]
    assert published > 0 and outbox.pending(store) == {"cq-samr-rest": published}
    assert LocalBus(store).depth(WORK.queue) == 0
    with store.read() as conn:
        assert st.get_watermark(conn, "cq-samr-rest") is None  # the source did not move on
    status = json.loads(_cli("outbox", "status", "--json").output)
    assert status == {"pending": {"cq-samr-rest": published}, "total": published}

    report = _ingest(store, LocalBus(store))  # relays what waits before it fetches
    assert outbox.pending(store) == {}
    stats = _deliver(store)
    assert stats.delivered == published + report.events_published and stats.duplicates == 0
    assert PlatformClient(load()).get("/api/v1/stats")["events"] == stats.delivered
    with store.read() as conn:
        assert st.get_watermark(conn, "cq-samr-rest") is not None
    verified = _cli("audit", "verify", "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["unpublished_deliveries"] == 0


def test_a_crash_after_the_confirm_redelivers_and_the_consumer_delivers_once(store):
    with pytest.raises(PublishError):
        _ingest(store, CrashAfterConfirm(store))
    published = ledger.count_by_hop(store)["published"]
    assert LocalBus(store).depth(WORK.queue) == published == outbox.pending(store)["cq-samr-rest"]
    relayed = _cli("outbox", "relay")
    assert relayed.exit_code == 0 and f"relayed {published} messages" in relayed.output
    stats = _deliver(store)
    assert stats.delivered == published and stats.duplicates == published  # sent twice, delivered once
    assert ledger.unpublished_deliveries(store).ok and ledger.verify(store).ok


def test_relay_keeps_the_rows_when_the_bus_refuses(store):
    with pytest.raises(PublishError):
        _ingest(store, CrashBeforeConfirm(store))
    waiting = outbox.pending(store)
    with pytest.raises(PublishError):
        outbox.relay(store, CrashBeforeConfirm(store))
    assert outbox.pending(store) == waiting
