"""End-to-end throughput: legacy REST sandbox → tongban → mock 渝快办, on the embedded default (in-process bus,
SQLite) and on RabbitMQ, next to two ceilings measured in the same run:

- raw pika: publish (with confirms) and consume (with acks) of the same number of messages of an envelope's size;
- the platform ceiling: the same number of case events pushed straight to a mock platform run the same way as the
  one tongban delivers to (a server thread in this process), from 16 threads, no bus, no ledger, no mapping — what
  the platform itself answers here.

tongban's run: the delivery worker is consuming before the ingest starts, as a `tongban worker` runs all along beside
the scheduled ingests (with its own bus connection and platform client), so it delivers each published chunk while
the ingest reads on; timed from the start of the ingest to the last recorded receipt. `--after-ingest` starts the
worker only once the ingest has finished (ingest, then delivery: how this benchmark measured before).

The ratio printed for each run is its events/s over the smaller of the two: end to end can never beat the slower of
the transport and the platform, so that is the ceiling it is measured against (aim ≥ 0.6). Prints ratios: these
machines are noisy, an absolute time alone means little.

    .venv/bin/python benchmarks/e2e.py [--cases 1000] [--after-ingest]
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
from benchmarks.waiting import delivered_all  # noqa: E402


def tongban_run(cases: int, bus_kind: str, home: Path, *, after_ingest: bool = False) -> dict:
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

        bus, worker_bus = RabbitBus(AMQP), RabbitBus(AMQP)
    else:
        from tongban.bus.local import LocalBus

        bus, worker_bus = LocalBus(store), LocalBus(store)
    platform, worker_platform = PlatformClient(settings), PlatformClient(settings)
    worker = DeliveryWorker(store=store, bus=worker_bus, platform=worker_platform, work=work)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop}, name="bench-worker")
    if not after_ingest:  # untimed: the worker attaches (declares, consumes) before the run starts
        worker_bus.declare(work)
        thread.start()
        time.sleep(1.0)
    started = time.perf_counter()
    report = run_ingest(load_mapping(REPO / "mappings" / "cq-samr-rest.yaml"), store=store, bus=bus,
                        platform=platform, work=work)
    ingest_done = time.perf_counter()
    if after_ingest:
        thread.start()
    elapsed = delivered_all(worker, report.events_published) - started
    stop.set()
    thread.join(60)
    stats = worker.stats
    platform_server.stop()
    legacy_server.stop()
    for client in (platform, worker_platform):
        client.close()
    if bus_kind == "rabbitmq":
        bus.delete(work)
        worker_bus.close()
    assert stats.delivered == report.events_published, (stats, report)
    return {"cases": report.cases_changed, "events": stats.delivered, "seconds": elapsed,
            "ingest_seconds": ingest_done - started, "cases_per_s": report.cases_changed / elapsed,
            "events_per_s": stats.delivered / elapsed}


def platform_ceiling(events: int, home: Path, threads: int = 16) -> float:
    """Events per second pushed straight to a fresh mock platform (a server thread, as in tongban_run) from
    `threads` threads: each event the application of a case numbered beforehand (numbering is not timed)."""
    from concurrent.futures import ThreadPoolExecutor

    from sandbox.platform import create_app as platform_app
    from sandbox.runner import Server
    from tongban.cases.changes import events_between
    from tongban.cases.samples import sample_snapshot
    from tongban.bus.envelope import idempotency_key
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings

    home.mkdir(parents=True)
    server = Server(platform_app(str(home / "platform.db"))).start()
    settings = Settings(platform_url=server.url)
    snapshot = sample_snapshot("applied")
    (event_type, data, occurred_at), = events_between(None, snapshot)
    system = f"bench-ceiling-{uuid.uuid4().hex[:6]}"
    clients = [PlatformClient(settings) for _ in range(threads)]
    try:
        def one(i: int) -> tuple[dict, str]:
            key = f"C{i:06d}"
            number = clients[i % threads].case_number(system, key, snapshot["item_code"])
            event = {"case_number": number, "event": event_type, "sequence": 1, "source_system": system,
                     "source_key": key, "item_code": snapshot["item_code"], "local_item_code": None,
                     "region": snapshot["region"], "occurred_at": occurred_at, "data": data}
            return event, idempotency_key(system, f"{key}#1", event)

        with ThreadPoolExecutor(8) as pool:
            cases = list(pool.map(one, range(events)))

        def push_share(i: int) -> None:
            for event, key in cases[i::threads]:
                clients[i].push_event(event, key)

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(push_share, range(threads)))
        return events / (time.perf_counter() - started)
    finally:
        for client in clients:
            client.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--after-ingest", action="store_true",
                        help="start the worker only once the ingest has finished (ingest, then delivery)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = tongban_run(args.cases, "inprocess", Path(tmp) / "local", after_ingest=args.after_ingest)
        rabbit = tongban_run(args.cases, "rabbitmq", Path(tmp) / "rabbit", after_ingest=args.after_ingest)
        ceiling = platform_ceiling(rabbit["events"], Path(tmp) / "ceiling")
    sample = json.dumps({"payload": "x" * 900}).encode()  # about the size of one case-event envelope
    raw = raw_pika(rabbit["events"], sample)
    bound, which = min((raw, "raw pika"), (ceiling, "platform ceiling"))
    print(f"raw pika publish(confirm)+consume(ack): {raw:,.0f} msg/s  (same run, {rabbit['events']} messages)")
    print(f"platform ceiling: {rabbit['events']} events pushed straight to the mock platform from 16 threads "
          f"(no bus, no ledger): {ceiling:,.0f} events/s")
    print(f"the smaller of the two, the ceiling end to end is measured against: {which}, {bound:,.0f}/s")
    print(f"the worker {'started after the ingest' if args.after_ingest else 'ran during the ingest'}")
    for name, r in (("embedded (in-process bus, SQLite)", local), ("RabbitMQ bus, SQLite ledger", rabbit)):
        print(f"tongban {name}: {r['cases']} cases, {r['events']} events in {r['seconds']:.1f}s "
              f"(ingest {r['ingest_seconds']:.1f}s) → {r['cases_per_s']:,.0f} cases/s, {r['events_per_s']:,.0f} events/s; "
              f"ratio ÷ {which} = {r['events_per_s'] / bound:.3f} (aim ≥ 0.6); ÷ raw pika = {r['events_per_s'] / raw:.3f}")


if __name__ == "__main__":
    main()
