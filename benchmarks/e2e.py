"""End-to-end throughput: legacy REST sandbox → tongban → mock 渝快办, on the embedded default (in-process bus,
SQLite) and on RabbitMQ, next to two ceilings measured in the same run:

- raw pika: publish (with confirms) and consume (with acks) of the same number of messages of an envelope's size;
- the platform ceiling: the same number of case events pushed straight to a mock platform run the same way as the
  one tongban delivers to, from 16 threads, no bus, no ledger, no mapping — what the platform itself answers here;
  in batch calls of the platform's limit when tongban's worker pushes in batches (TONGBAN_PUSH_BATCH=1), one event
  a call otherwise, so the ceiling is always the platform's rate for the way tongban talks to it;
- beside them, not as the bound: the platform's service ceiling — the same cases numbered (统一赋码), their
  applicants resolved (统一用户) and their events pushed, from 16 threads: everything an end-to-end run asks of the
  platform, which the push-only ceiling leaves out (numbering and the user service share the platform's cores).

The mock platform runs in a process of its own, as the real 渝快办 platform is another machine's: in this process
it would take the interpreter lock from the ingest and the worker for every request it serves, so the run would
measure the mock's CPU as tongban's (`--platform-in-process` keeps the old arrangement, a server thread here, for
comparison with earlier figures). The legacy REST sandbox stays a server thread here (its pages are cheap).

tongban's run: the delivery worker is consuming before the ingest starts, as a `tongban worker` runs all along beside
the scheduled ingests (with its own bus connection and platform client), so it delivers each published chunk while
the ingest reads on; timed from the start of the ingest to the last recorded receipt. `--after-ingest` starts the
worker only once the ingest has finished (ingest, then delivery: how this benchmark measured before).

Three runs: embedded (in-process bus, SQLite: `make demo`'s arrangement, the worker a thread of this process); RabbitMQ
with the SQLite ledger, the worker still a thread here; and as deployed — RabbitMQ, the PostgreSQL ledger and a
`tongban worker` process of its own beside the ingest (as a scheduled ingest and the worker service run), timed from
the start of the ingest to the moment every event's receipt is recorded (polled in PostgreSQL every 10 ms).

The ratio printed for each run is its events/s over the smaller of the two: end to end can never beat the slower of
the transport and the platform, so that is the ceiling it is measured against (aim ≥ 0.6). Prints ratios: these
machines are noisy, an absolute time alone means little.

    .venv/bin/python benchmarks/e2e.py [--cases 1000] [--after-ingest] [--platform-in-process]
    TONGBAN_PUSH_BATCH=1 .venv/bin/python benchmarks/e2e.py      # the worker pushes in batch calls (批量推送)
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
PG_BASE = os.environ.get("TONGBAN_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")

from benchmarks.baseline import raw_pika  # noqa: E402  (after the path set-up above)
from benchmarks.platform_ceiling import push_shares  # noqa: E402
from benchmarks.waiting import delivered_all  # noqa: E402


class MockPlatform:
    """The mock 渝快办 platform for one run: a process of its own (benchmarks.platform_ceiling.platform_process), or
    with `in_process` a server thread here, as this benchmark ran it before."""

    def __init__(self, db: Path, *, in_process: bool = False):
        if in_process:
            from sandbox.platform import create_app as platform_app
            from sandbox.runner import Server

            self._server, self._proc = Server(platform_app(str(db))).start(), None
            self.url = self._server.url
        else:
            from benchmarks.platform_ceiling import platform_process

            self._server, (self._proc, self.url) = None, platform_process(db)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        else:
            self._proc.terminate()
            self._proc.wait(timeout=30)


def sandbox_pair(cases: int, home: Path, *, platform_in_process: bool = False):
    """A run's mock platform and legacy REST system (cq-samr-rest.yaml's, `cases` cases each with its whole
    lifecycle: several events), with the environment the mapping and the worker read them from."""
    from sandbox.legacy_rest import create_app as legacy_app
    from sandbox.legacy_world import LegacyWorld
    from sandbox.runner import Server

    home.mkdir(parents=True)
    world = LegacyWorld(seed=3, cases=cases, bad_share=0.0)
    world.advance(world.settled_tick)
    platform_server = MockPlatform(home / "platform.db", in_process=platform_in_process)
    legacy_server = Server(legacy_app(world, token="bench")).start()
    os.environ.update({"CQ_SAMR_URL": legacy_server.url, "CQ_SAMR_TOKEN": "bench",
                       "TONGBAN_PLATFORM_URL": platform_server.url})
    return platform_server, legacy_server


def tongban_run(cases: int, bus_kind: str, home: Path, *, after_ingest: bool = False,
                platform_in_process: bool = False) -> dict:
    from tongban.bus.topology import cases_work
    from tongban.delivery.worker import DeliveryWorker
    from tongban.pipeline.ingest import run_ingest
    from tongban.mapping import load_mapping
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings
    from tongban.store import Store
    from tongban.store.schema import migrated

    platform_server, legacy_server = sandbox_pair(cases, home, platform_in_process=platform_in_process)
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
    batch = worker.pusher.max_events if worker.pusher is not None else 0
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
            "events_per_s": stats.delivered / elapsed, "batch": batch}


def deployed_run(cases: int, home: Path, *, platform_in_process: bool = False) -> dict:
    """The ingest here, a `tongban worker` process beside it, RabbitMQ and the PostgreSQL ledger (a schema of its
    own, dropped afterwards): how a department's scheduled ingest and the worker service run in production."""
    import subprocess

    import sqlalchemy as sa

    from benchmarks.delivery import Bench
    from tongban.bus.rabbit import RabbitBus
    from tongban.bus.topology import cases_work
    from tongban.pipeline.ingest import run_ingest
    from tongban.mapping import load_mapping
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings
    from tongban.store import Store
    from tongban.store.schema import upgrade
    from tongban.store.tables import deliveries

    platform_server, legacy_server = sandbox_pair(cases, home, platform_in_process=platform_in_process)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    db_url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    upgrade(db_url)
    store = Store(db_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    work = cases_work(prefix)
    bus = RabbitBus(AMQP)
    bus.declare(work)
    env = {**os.environ, "TONGBAN_DB_URL": db_url, "TONGBAN_BUS": "rabbitmq", "TONGBAN_AMQP_URL": AMQP,
           "TONGBAN_QUEUE_PREFIX": prefix, "TONGBAN_PLATFORM_URL": platform_server.url,
           "TONGBAN_HOME": str(home / "worker-home")}
    log = home / "worker.log"
    with log.open("wb") as stderr:  # a file, not a pipe: a full pipe would stall the worker
        worker = subprocess.Popen([str(Path(sys.executable).with_name("tongban")), "worker"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    worker.log = log
    platform = PlatformClient(Settings())
    try:
        Bench.wait_for_consumers(work, 1, [worker])  # untimed: the worker attaches before the run starts
        started = time.perf_counter()
        report = run_ingest(load_mapping(REPO / "mappings" / "cq-samr-rest.yaml"), store=store, bus=bus,
                            platform=platform, work=work)
        ingest_done = time.perf_counter()
        count = sa.select(sa.func.count()).select_from(deliveries)
        deadline = time.monotonic() + 900
        while True:
            with store.read() as conn:
                delivered = conn.execute(count).scalar()
            if delivered >= report.events_published:
                break
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{delivered} of {report.events_published} delivered; the worker's log: "
                                   f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        platform.close()
        platform_server.stop()
        legacy_server.stop()
        bus.delete(work)
        bus.close()
        store.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
    return {"cases": report.cases_changed, "events": delivered, "seconds": elapsed,
            "ingest_seconds": ingest_done - started, "cases_per_s": report.cases_changed / elapsed,
            "events_per_s": delivered / elapsed}


def platform_ceiling(events: int, home: Path, threads: int = 16, *, batch: int = 0,
                     in_process: bool = False) -> float:
    """Events per second pushed straight to a fresh mock platform (run as in tongban_run) from `threads` threads:
    each event the application of a case numbered beforehand (numbering is not timed); with `batch` > 1 each thread
    pushes its share in batch calls of that many events (批量推送), as tongban's worker then does."""
    from concurrent.futures import ThreadPoolExecutor

    from tongban.cases.changes import events_between
    from tongban.cases.samples import sample_snapshot
    from tongban.bus.envelope import idempotency_key
    from tongban.platform.client import PlatformClient
    from tongban.settings import Settings

    home.mkdir(parents=True)
    server = MockPlatform(home / "platform.db", in_process=in_process)
    settings = Settings(platform_url=server.url)
    snapshot = sample_snapshot("applied")
    (event_type, data, occurred_at), = events_between(None, snapshot)
    system = f"bench-ceiling-{uuid.uuid4().hex[:6]}"
    # A long timeout: on a loaded machine a batch call of 16 threads can take more than the default, and a timed-out
    # call would end the measurement, not slow it.
    clients = [PlatformClient(settings, timeout=120) for _ in range(threads)]
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

        return events / push_shares(clients, cases, batch)
    finally:
        for client in clients:
            client.close()
        server.stop()


def service_ceiling(cases: int, events_per_case: int, home: Path, threads: int = 16, *, batch: int = 0,
                    in_process: bool = False) -> float:
    """Events per second when a fresh mock platform is asked for everything end to end asks of it, straight from
    `threads` threads, no bus, no ledger, no mapping: for each case its number (统一赋码), its applicant's unified
    user (统一用户), then its `events_per_case` events pushed (in batch calls of `batch` when > 1). The push-only
    ceiling leaves the first two out; on a platform that serves all three from the same cores (the mock here, a
    provincial gateway's shared rate limit there) they are part of what caps an end-to-end run. Timed whole."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import date

    from tongban import codes
    from tongban.cases.changes import events_between
    from tongban.cases.samples import sample_snapshot
    from tongban.bus.envelope import idempotency_key
    from tongban.platform.client import PlatformClient, PlatformRejected
    from tongban.settings import Settings

    home.mkdir(parents=True)
    server = MockPlatform(home / "platform.db", in_process=in_process)
    snapshot = sample_snapshot("evaluated")
    lifecycle = events_between(None, snapshot)[:events_per_case]
    system = f"bench-service-{uuid.uuid4().hex[:6]}"
    clients = [PlatformClient(Settings(platform_url=server.url), timeout=120) for _ in range(threads)]

    def share(i: int) -> None:
        client, pending = clients[i], []
        for n in range(i, cases, threads):
            key = f"S{n:06d}"
            number = client.case_number(system, key, snapshot["item_code"])
            try:
                client.resolve_user("111", codes.make_id_number("500103", date(1980, 1, 1 + n % 28), n % 500, "MF"[n % 2]))
            except PlatformRejected:
                pass  # an unknown applicant is an answer too: the platform served the request
            for sequence, (event_type, data, occurred_at) in enumerate(lifecycle, start=1):
                event = {"case_number": number, "event": event_type, "sequence": sequence, "source_system": system,
                         "source_key": key, "item_code": snapshot["item_code"], "local_item_code": None,
                         "region": snapshot["region"], "occurred_at": occurred_at, "data": data}
                pending.append((event, idempotency_key(system, f"{key}#{sequence}", event)))
            if batch <= 1:
                for event, ikey in pending:
                    client.push_event(event, ikey)
                pending.clear()
            elif len(pending) >= batch:  # a case's events in order; later cases' after it, as the worker sends them
                client.push_batch(pending[:batch])
                del pending[:batch]
        while pending:
            client.push_batch(pending[:batch])
            del pending[:batch]

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(share, range(threads)))
        return cases * len(lifecycle) / (time.perf_counter() - started)
    finally:
        for client in clients:
            client.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--after-ingest", action="store_true",
                        help="start the worker only once the ingest has finished (ingest, then delivery)")
    parser.add_argument("--platform-in-process", action="store_true",
                        help="run the mock platform as a server thread in this process (how this benchmark ran "
                             "before), not in a process of its own")
    args = parser.parse_args()
    placement = {"platform_in_process": args.platform_in_process}
    with tempfile.TemporaryDirectory() as tmp:
        local = tongban_run(args.cases, "inprocess", Path(tmp) / "local", after_ingest=args.after_ingest, **placement)
        rabbit = tongban_run(args.cases, "rabbitmq", Path(tmp) / "rabbit", after_ingest=args.after_ingest, **placement)
        deployed = deployed_run(args.cases, Path(tmp) / "deployed", **placement)
        batch = rabbit["batch"]  # the ceiling is the platform's rate for the calls the worker made
        ceiling = platform_ceiling(rabbit["events"], Path(tmp) / "ceiling", batch=batch,
                                   in_process=args.platform_in_process)
        per_case = max(1, round(rabbit["events"] / max(1, rabbit["cases"])))
        service = service_ceiling(rabbit["cases"], per_case, Path(tmp) / "service", batch=batch,
                                  in_process=args.platform_in_process)
    sample = json.dumps({"payload": "x" * 900}).encode()  # about the size of one case-event envelope
    raw = raw_pika(rabbit["events"], sample)
    bound, which = min((raw, "raw pika"), (ceiling, "platform ceiling"))
    print(f"raw pika publish(confirm)+consume(ack): {raw:,.0f} msg/s  (same run, {rabbit['events']} messages)")
    calls = f"in batch calls of {batch} events" if batch > 1 else "one event a call"
    where = "a server thread in this process" if args.platform_in_process else "a process of its own"
    print(f"platform ceiling: {rabbit['events']} events pushed straight to the mock platform ({where}) from 16 "
          f"threads, {calls}, as the worker pushed (no bus, no ledger): {ceiling:,.0f} events/s")
    print(f"the smaller of the two, the ceiling end to end is measured against: {which}, {bound:,.0f}/s")
    print(f"platform service ceiling: the same {rabbit['cases']} cases numbered, their applicants resolved and "
          f"{per_case} events each pushed ({calls}), straight from 16 threads: {service:,.0f} events/s")
    print(f"the worker {'started after the ingest' if args.after_ingest else 'ran during the ingest'}")
    for name, r in (("embedded (in-process bus, SQLite)", local), ("RabbitMQ bus, SQLite ledger", rabbit),
                    ("as deployed (RabbitMQ, PostgreSQL ledger, a `tongban worker` process)", deployed)):
        print(f"tongban {name}: {r['cases']} cases, {r['events']} events in {r['seconds']:.1f}s "
              f"(ingest {r['ingest_seconds']:.1f}s) → {r['cases_per_s']:,.0f} cases/s, {r['events_per_s']:,.0f} events/s; "
              f"ratio ÷ {which} = {r['events_per_s'] / bound:.3f} (aim ≥ 0.6); ÷ raw pika = {r['events_per_s'] / raw:.3f}; "
              f"÷ service ceiling = {r['events_per_s'] / service:.3f}")


if __name__ == "__main__":
    main()
