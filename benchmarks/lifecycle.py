"""Case lifecycles with numbering and per-case ordering (issue 9): events per second through the real path, next to
plain delivery of the very same events measured in the same run. Prints ratios: these machines are noisy, an
absolute rate alone means little.

The real path ("numbered and ordered"): a legacy REST sandbox world advanced until every case has its whole
lifecycle (`LegacyWorld(...).advance(world.settled_tick)`: application, acceptance, handling, maybe suspension,
conclusion, evaluation — several events per case); `run_ingest` fetches, maps, detects the changes, has every
case numbered by the platform (统一赋码) and publishes with confirms on RabbitMQ; a `DeliveryWorker` (8 lanes,
ordering gate, idempotent consumer, receipts recorded in the PostgreSQL ledger) delivers them to the mock
渝快办 platform. The worker is consuming before the ingest starts, as a `tongban worker` runs all along beside the
scheduled ingests, so it delivers each chunk while the ingest reads the next (`--after-ingest`: the worker starts
once the ingest has finished, as this benchmark measured before). Timed from the start of ingest to the last
recorded receipt.

The baseline ("plain delivery"): the same event payloads, captured as ingest published them, pushed straight
through `PlatformClient.push_event` to a fresh mock platform — no bus, no ledger, no numbering call in the timed
part, no ordering gate. The fresh platform must know the case numbers, so each case is numbered there first,
untimed, and the captured events carry that number instead. Two baselines:
- sequential: one event after another in publish order (one HTTP client, nothing in parallel);
- 8-way: eight threads, every case pinned to one thread so its events still go in order — the same concurrency
  as the worker's 8 lanes, which is the fairer comparison for what numbering + ordering + the ledger cost.

    .venv/bin/python benchmarks/lifecycle.py [--cases 300] [--single] [--after-ingest]

The worker uses the platform's batch push (批量推送) as `tongban worker` does; `--single` forces one push per event
(TONGBAN_PUSH_BATCH=0), the "before" of issue 16. The baselines push one event per call either way.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.waiting import delivered_all  # noqa: E402  (after the path set-up above)
AMQP = os.environ.get("TONGBAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_BASE = os.environ.get("TONGBAN_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")
LANES = 8


def _capturing_bus():
    """RabbitBus that keeps a copy of every envelope it published (ingest's output, for the baseline)."""
    from tongban.bus.rabbit import RabbitBus

    class CapturingBus(RabbitBus):
        def __init__(self, url: str):
            super().__init__(url)
            self.captured = []

        def publish(self, work, envelopes):
            super().publish(work, envelopes)  # returns after the broker confirmed them
            self.captured.extend(envelopes)

    return CapturingBus(AMQP)


def real_path(cases: int, home: Path, *, after_ingest: bool = False) -> dict:
    """World → run_ingest (numbering, change detection) → RabbitMQ → DeliveryWorker (ordering gate) → platform."""

    import sqlalchemy as sa

    from sandbox.legacy_rest import create_app as legacy_app
    from sandbox.legacy_world import LegacyWorld
    from sandbox.platform import create_app as platform_app
    from sandbox.runner import Server
    from tongban.bus.rabbit import RabbitBus
    from tongban.bus.topology import cases_work
    from tongban.delivery.worker import DeliveryWorker
    from tongban.pipeline.ingest import run_ingest
    from tongban.mapping import load_mapping
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings
    from tongban.store import Store
    from tongban.store.schema import migrated

    world = LegacyWorld(seed=3, cases=cases, bad_share=0.0)
    world.advance(world.settled_tick)  # every case has its whole lifecycle: several events each
    platform_server = Server(platform_app(str(home / "platform-real.db")), name="bench-platform").start()
    legacy_server = Server(legacy_app(world, token="bench"), name="bench-legacy").start()
    os.environ.update({"CQ_SAMR_URL": legacy_server.url, "CQ_SAMR_TOKEN": "bench",
                       "TONGBAN_PLATFORM_URL": platform_server.url})
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    store = Store(migrated(f"{PG_BASE}?options=-csearch_path%3D{schema}"))
    work = cases_work(f"bench-{uuid.uuid4().hex[:8]}")
    ingest_bus, worker_bus = _capturing_bus(), RabbitBus(AMQP)
    platform = PlatformClient(Settings())
    # The worker has a client of its own, as a `tongban worker` process beside the ingest would.
    worker_platform = PlatformClient(Settings())
    worker = DeliveryWorker(store=store, bus=worker_bus, platform=worker_platform, work=work)
    stop, worker_thread = threading.Event(), None

    def start_worker() -> threading.Thread:
        thread = threading.Thread(target=worker.run, kwargs={"stop": stop, "lanes": LANES}, name="bench-worker")
        thread.start()
        return thread

    try:
        if not after_ingest:  # untimed: the worker attaches (declares, consumes) before the run starts
            worker_bus.declare(work)
            worker_thread = start_worker()
            time.sleep(1.0)
        started, cpu_started = time.perf_counter(), time.process_time()
        report = run_ingest(load_mapping(REPO / "mappings" / "cq-samr-rest.yaml"), store=store, bus=ingest_bus,
                            platform=platform, work=work)
        ingest_done = time.perf_counter()
        if after_ingest:
            worker_thread = start_worker()
        finished = delivered_all(worker, report.events_published)
        elapsed, cpu = finished - started, time.process_time() - cpu_started
        stop.set()
        worker_thread.join(60)
        stats = worker.stats
        assert stats.delivered == report.events_published == len(ingest_bus.captured), (stats, report)
        assert stats.parked == stats.rejected == 0, stats
    finally:
        stop.set()
        if worker_thread is not None:
            worker_thread.join(60)
        ingest_bus.close()
        worker_bus.close()
        platform.close()
        worker_platform.close()
        platform_server.stop()
        legacy_server.stop()
        RabbitBus(AMQP).delete(work)
        store.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
    return {"cases": report.cases_changed, "events": stats.delivered, "seconds": elapsed,
            "ingest_seconds": ingest_done - started, "delivery_seconds": elapsed - (ingest_done - started),
            "waited": stats.waited, "per_s": stats.delivered / elapsed, "cpu_ms": 1000 * cpu / stats.delivered,
            "envelopes": ingest_bus.captured}


def plain_delivery(envelopes: list, home: Path, threads: int) -> dict:
    """The captured events pushed straight to a fresh mock platform: no bus, no ledger, no gate."""
    from sandbox.platform import create_app as platform_app
    from sandbox.runner import Server
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings

    server = Server(platform_app(str(home / f"platform-plain-{threads}.db")), name="bench-plain").start()
    settings = Settings(platform_url=server.url)
    try:
        # Untimed: the fresh platform numbers each case once, and the events carry its number.
        numbering = PlatformClient(settings)
        renumbered: dict[str, str] = {}
        for env in envelopes:
            event = env.payload
            if env.correlation not in renumbered:
                renumbered[env.correlation] = numbering.case_number(event["source_system"], event["source_key"],
                                                                    event["item_code"])
        numbering.close()
        events = [({**env.payload, "case_number": renumbered[env.correlation]}, env.idempotency_key)
                  for env in envelopes]
        # Each case keeps to one thread, in publish order: the platform refuses an event out of sequence.
        shares: list[list[tuple[dict, str]]] = [[] for _ in range(threads)]
        for event, key in events:
            shares[zlib.crc32(event["case_number"].encode()) % threads].append((event, key))
        clients = [PlatformClient(settings) for _ in range(threads)]

        def push_all(i: int) -> int:
            for event, key in shares[i]:
                clients[i].push_event(event, key)
            return len(shares[i])

        started, cpu_started = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            pushed = sum(pool.map(push_all, range(threads)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        for client in clients:
            client.close()
    finally:
        server.stop()
    assert pushed == len(envelopes)
    return {"threads": threads, "events": pushed, "seconds": elapsed, "per_s": pushed / elapsed,
            "cpu_ms": 1000 * cpu / pushed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--single", action="store_true", help="the worker pushes one event per call (no batch push)")
    parser.add_argument("--after-ingest", action="store_true",
                        help="start the worker only once the ingest has finished (ingest, then delivery)")
    args = parser.parse_args()
    os.environ["TONGBAN_PUSH_BATCH"] = "0" if args.single else "1"
    with tempfile.TemporaryDirectory() as tmp:
        real = real_path(args.cases, Path(tmp), after_ingest=args.after_ingest)
        sequential = plain_delivery(real["envelopes"], Path(tmp), threads=1)
        parallel = plain_delivery(real["envelopes"], Path(tmp), threads=LANES)
    print(f"baseline, same run: the same {sequential['events']} events pushed straight to a fresh mock platform "
          f"(PlatformClient.push_event; no bus, no ledger, no numbering, no ordering gate)")
    print(f"  plain delivery, sequential: {sequential['per_s']:,.0f} events/s ({sequential['seconds']:.1f}s)")
    print(f"  plain delivery, {LANES} threads, cases pinned: {parallel['per_s']:,.0f} events/s ({parallel['seconds']:.1f}s)")
    print(f"tongban numbered + ordered (legacy REST → run_ingest → RabbitMQ → DeliveryWorker ×{LANES} lanes, "
          f"{'single' if args.single else 'batch'} push, "
          f"{'worker started after the ingest' if args.after_ingest else 'worker running during the ingest'}, "
          f"PostgreSQL ledger): {real['cases']} cases, {real['events']} events "
          f"({real['events'] / max(real['cases'], 1):.1f} per case) in {real['seconds']:.1f}s "
          f"(ingest {real['ingest_seconds']:.1f}s, then {real['delivery_seconds']:.1f}s to the last receipt, "
          f"ordering-gate waits {real['waited']}) → {real['per_s']:,.0f} events/s")
    print(f"  ratio ÷ sequential plain delivery = {real['per_s'] / sequential['per_s']:.3f}")
    print(f"  ratio ÷ {LANES}-thread plain delivery = {real['per_s'] / parallel['per_s']:.3f}")
    # This process's CPU per event (every thread: the mock platform and legacy system serve from here too; the
    # broker's and PostgreSQL's CPU is not in it): steadier than the wall-time ratio when the load changes between
    # the baseline and the real path.
    print(f"  CPU of this process per event: plain {LANES}-thread {parallel['cpu_ms']:.2f} ms, numbered + ordered "
          f"{real['cpu_ms']:.2f} ms → CPU ratio {parallel['cpu_ms'] / real['cpu_ms']:.3f}")


if __name__ == "__main__":
    main()
