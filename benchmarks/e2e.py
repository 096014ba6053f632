"""End-to-end throughput: legacy REST sandbox → tongban → mock 渝快办, on the embedded default (in-process bus,
SQLite) and on RabbitMQ, next to raw pika publish-and-consume of the same number of messages measured in the
same run. Prints ratios: these machines are noisy, an absolute time alone means little.

    .venv/bin/python benchmarks/e2e.py [--cases 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AMQP = os.environ.get("TONGBAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

from benchmarks.baseline import raw_pika  # noqa: E402  (after the path set-up above)


def tongban_run(cases: int, bus_kind: str, home: Path) -> dict:
    from sandbox.legacy_rest import create_app as legacy_app
    from sandbox.legacy_world import LegacyWorld
    from sandbox.platform import create_app as platform_app
    from sandbox.runner import Server
    from tongban.bus.topology import cases_work
    from tongban.delivery.worker import DeliveryWorker
    from tongban.pipeline.ingest import run_ingest
    from tongban.mapping import load_mapping
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings
    from tongban.store import Store
    from tongban.store.schema import migrated

    home.mkdir(parents=True)
    world = LegacyWorld(seed=3, cases=cases, bad_share=0.0)
    world.advance(world.settled_tick)  # every case has its whole lifecycle: several events each
    platform_server = Server(platform_app(str(home / "platform.db"))).start()
    legacy_server = Server(legacy_app(world, token="bench")).start()
    os.environ.update({"CQ_SAMR_URL": legacy_server.url, "CQ_SAMR_TOKEN": "bench",
                       "TONGBAN_PLATFORM_URL": platform_server.url})
    settings = Settings()
    store = Store(migrated(f"sqlite:///{home / 'tongban.db'}"))
    work = cases_work(f"bench-{uuid.uuid4().hex[:8]}")
    if bus_kind == "rabbitmq":
        from tongban.bus.rabbit import RabbitBus

        bus = RabbitBus(AMQP)
    else:
        from tongban.bus.local import LocalBus

        bus = LocalBus(store)
    platform = PlatformClient(settings)
    started = time.perf_counter()
    report = run_ingest(load_mapping(REPO / "mappings" / "cq-samr-rest.yaml"), store=store, bus=bus,
                        platform=platform, work=work)
    ingest_done = time.perf_counter()
    stats = DeliveryWorker(store=store, bus=bus, platform=platform, work=work).run(stop=threading.Event(), idle_exit=0.5)
    elapsed = time.perf_counter() - started - 0.5  # the idle wait is not work
    platform_server.stop()
    legacy_server.stop()
    if bus_kind == "rabbitmq":
        bus.delete(work)
    assert stats.delivered == report.events_published, (stats, report)
    return {"cases": report.cases_changed, "events": stats.delivered, "seconds": elapsed,
            "ingest_seconds": ingest_done - started, "cases_per_s": report.cases_changed / elapsed,
            "events_per_s": stats.delivered / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = tongban_run(args.cases, "inprocess", Path(tmp) / "local")
        rabbit = tongban_run(args.cases, "rabbitmq", Path(tmp) / "rabbit")
    sample = json.dumps({"payload": "x" * 900}).encode()  # about the size of one case-event envelope
    raw = raw_pika(rabbit["events"], sample)
    print(f"raw pika publish(confirm)+consume(ack): {raw:,.0f} msg/s  (baseline, same run, {rabbit['events']} messages)")
    for name, r in (("embedded (in-process bus, SQLite)", local), ("RabbitMQ bus, SQLite ledger", rabbit)):
        print(f"tongban {name}: {r['cases']} cases, {r['events']} events in {r['seconds']:.1f}s "
              f"(ingest {r['ingest_seconds']:.1f}s) → {r['cases_per_s']:,.0f} cases/s, {r['events_per_s']:,.0f} events/s; "
              f"ratio events/s ÷ raw pika msg/s = {r['events_per_s'] / raw:.3f}")


if __name__ == "__main__":
    main()
