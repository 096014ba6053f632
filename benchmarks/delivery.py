"""Delivery throughput and latency (issue 5): `tongban worker` processes on RabbitMQ with the PostgreSQL ledger,
delivering case events to the mock 渝快办 platform (no faults), next to raw pika publish-and-consume of the same
number of messages measured in the same run. Prints ratios: these machines are noisy, an absolute rate alone
means little.

What is measured, in one run:
1. baseline — raw pika: publish N messages of an envelope's size with confirms, consume them with acks.
2. throughput — N one-event cases (each event is the case's application, sequence 1, so the ordering gate
   never holds anything back: this measures delivery, not waiting) are published first; then one, and in a
   second round two, `tongban worker` processes (as production runs them) drain the queue. The rate counts
   deliveries recorded after every worker had attached to the queue (process start-up is not delivery), up to
   the last recorded receipt, from the deliveries table's delivered_at.
3. platform ceiling — the same number of events pushed straight to the mock platform from 16 threads (two
   workers × 8 lanes), no bus and no ledger: what the platform itself sustains here, shared by every worker.
   Beside each rate, the workers' CPU per event: their processes' user + system CPU (from /proc) between the
   moment every worker had attached and the last receipt, divided by the events — what a machine's cores must
   give per event, whatever else runs on it (the rates move with the load of a shared machine; this moves less).
4. latency — one worker; events published one by one at a steady rate (half the measured one-worker
   throughput) for --latency-seconds; latency = deliveries.delivered_at (the receipt recorded in the ledger's
   transaction) minus the envelope's created_at (set just before its publish). Prints p50/p99.

Everything runs on 127.0.0.1: the mock platform in a process of its own, the workers as subprocesses with a
PostgreSQL schema of their own (dropped at the end) and queues under a prefix of their own (deleted at the end).
The mock platform signs every receipt (JWS, ES256, with a sandbox CA made for the run) and the workers trust that CA,
so each receipt's signature and certificate check is part of the CPU measured, as in production.

    .venv/bin/python benchmarks/delivery.py [--events 1500] [--latency-seconds 20] [--mode both|single|batch]
                                            [--compare TREE] [--repeats N] [--ceiling-each] [--profile FILE]

`--mode both` (the default) runs the worker rounds twice: with one push per event (TONGBAN_PUSH_BATCH=0, "before")
and with the platform's batch push (批量推送, "after"); the platform ceiling is measured both ways too (16 threads
pushing single events; 16 threads pushing batch calls of the platform's limit), and each worker round is printed
against both ceilings. The latency round uses the last mode.

`--compare TREE` runs every worker round twice, interleaved: with the workers of TREE (another commit's source,
`git archive COMMIT | tar -x -C TREE`; the workers get PYTHONPATH=TREE) and with this tree's, against the same
platform and database, so a before/after pair meets the same load. `--repeats N` repeats the rounds; `--ceiling-each`
measures the platform ceiling right after every round and prints each round against it (on a shared machine the
ceiling moves with the load as much as the workers do). The latency round runs for each tree too (after the
throughput rounds, at the same offered rate, `--repeats` times, interleaved) and prints the worker's CPU per event.

`--profile FILE` instead profiles a worker's handler: the same events handled in this process, one after another
in one thread (cProfile sees one thread; a worker's lanes are threads), against the same platform and PostgreSQL,
with the CPU per event of that loop printed and the profile left in FILE (`python -m pstats FILE`, `sort tottime`);
the profile's clock is the thread's CPU time, so it shows where CPU goes, not where the handler waits.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AMQP = os.environ.get("TONGBAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_BASE = os.environ.get("TONGBAN_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")
TONGBAN = str(Path(sys.executable).with_name("tongban"))

from benchmarks.baseline import raw_pika  # noqa: E402  (after the path set-up above)
from benchmarks.platform_ceiling import platform_ceiling, platform_process  # noqa: E402
from tests.support import stop_processes  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (/proc/PID/stat fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _when(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Bench:
    """The shared pieces of one run: platform, PostgreSQL schema, queue prefixes; cleaned up by close()."""

    def __init__(self, home: Path):
        import sqlalchemy as sa

        from tongban.platform.client import PlatformClient
        from tongban.settings import Settings
        from tongban.store import Store
        from tongban.store.schema import upgrade

        from tongban.seal.ca import init_sandbox_ca

        self.home = home
        self.run_id = uuid.uuid4().hex[:8]
        # A sandbox CA where the workers' TONGBAN_HOME looks for it: the platform signs every receipt (JWS) and the
        # workers verify each one (certificate chain and signature), as in production.
        certs = home / "home" / "certs"
        init_sandbox_ca(certs)
        self.platform_proc, self.platform_url = platform_process(home / "platform.db", certs)
        self.platform = PlatformClient(Settings(platform_url=self.platform_url, home=home / "home"))
        self.schema = f"bench_{self.run_id}"
        self.admin = sa.create_engine(PG_BASE)
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {self.schema}")
        self.db_url = f"{PG_BASE}?options=-csearch_path%3D{self.schema}"
        upgrade(self.db_url)  # the schema's migrations, once, before any worker opens the store
        self.store = Store(self.db_url)
        self.prefixes: list[str] = []
        self.worker_logs: list[Path] = []

    # --- cases ------------------------------------------------------------------------------------
    def cases(self, system: str, count: int) -> list[tuple[dict, str]]:
        """`count` cases numbered by the platform, each with its application event: (event, idempotency key)."""
        from tongban.cases.changes import events_between
        from tongban.cases.samples import sample_snapshot
        from tongban.bus.envelope import idempotency_key

        snapshot = sample_snapshot("applied")
        (event_type, data, occurred_at), = events_between(None, snapshot)

        def one(i: int) -> tuple[dict, str]:
            key = f"L{i:06d}"
            number = self.platform.case_number(system, key, snapshot["item_code"])
            event = {"case_number": number, "event": event_type, "sequence": 1, "source_system": system,
                     "source_key": key, "item_code": snapshot["item_code"], "local_item_code": None,
                     "region": snapshot["region"], "occurred_at": occurred_at, "data": data}
            return event, idempotency_key(system, f"{key}#1", event)

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(count)))

    @staticmethod
    def envelope(event: dict, key: str):
        from tongban.bus.envelope import KIND_CASE_EVENT, Envelope

        return Envelope(kind=KIND_CASE_EVENT, source=event["source_system"], region=event["region"],
                        correlation=event["case_number"], payload=event, idempotency_key=key)

    # --- queues and workers -----------------------------------------------------------------------
    def work(self, label: str):
        from tongban.bus.topology import cases_work

        prefix = f"bench-{self.run_id}-{label}"
        self.prefixes.append(prefix)
        return prefix, cases_work(prefix)

    def start_workers(self, prefix: str, count: int, *, batch: bool = True,
                      tree: Path | None = None) -> list[subprocess.Popen]:
        """`tree`: a source tree (a checkout of another commit) whose tongban the workers run instead of this one's."""
        env = {**os.environ, "TONGBAN_PUSH_BATCH": "1" if batch else "0", "TONGBAN_DB_URL": self.db_url, "TONGBAN_BUS": "rabbitmq", "TONGBAN_AMQP_URL": AMQP,
               "TONGBAN_QUEUE_PREFIX": prefix, "TONGBAN_PLATFORM_URL": self.platform_url,
               "TONGBAN_HOME": str(self.home / "home")}
        if tree is not None:
            env["PYTHONPATH"] = str(tree)  # ahead of the editable install: that tree's tongban and adapters
        procs = []
        for _ in range(count):
            # stderr to a file, not a pipe nobody reads while the worker runs: a full pipe would stall it.
            log = self.home / f"worker-{len(self.worker_logs)}.log"
            self.worker_logs.append(log)
            with log.open("wb") as stderr:
                proc = subprocess.Popen([TONGBAN, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                        start_new_session=True)
            proc.log = log
            procs.append(proc)
        return procs

    @staticmethod
    def wait_for_consumers(work, count: int, workers: list[subprocess.Popen], timeout: float = 60) -> None:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(AMQP))
        try:
            channel = connection.channel()
            deadline = time.monotonic() + timeout
            while channel.queue_declare(work.queue, passive=True).method.consumer_count < count:
                for proc in workers:
                    if proc.poll() is not None:
                        raise RuntimeError(f"tongban worker exited early: {proc.log.read_text(errors='replace')[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{count} workers did not attach to {work.queue} within {timeout}s")
                time.sleep(0.02)
        finally:
            connection.close()

    def delivered(self, system: str) -> list[tuple[str, str]]:
        """(idempotency key, delivered_at) of the system's recorded deliveries."""
        from sqlalchemy import select

        from tongban.store.tables import deliveries

        with self.store.read() as conn:
            return [tuple(r) for r in conn.execute(
                select(deliveries.c.idempotency_key, deliveries.c.delivered_at)
                .where(deliveries.c.idempotency_key.like(f"{system}:%")))]

    def wait_delivered(self, system: str, count: int, workers: list[subprocess.Popen],
                       timeout: float = 600) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.delivered(system)
            if len(rows) >= count:
                return rows
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(rows)} of {count} events of {system} delivered within {timeout}s")
            if all(proc.poll() is not None for proc in workers):
                raise RuntimeError(f"every worker exited: {workers[0].log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def close(self) -> None:
        import pika

        from tongban.bus.topology import cases_work

        try:
            connection = pika.BlockingConnection(pika.URLParameters(AMQP))
            channel = connection.channel()
            for prefix in self.prefixes:
                work = cases_work(prefix)
                for name in work.fixed_queues:  # the work queue, its gate and the exchange's retry tiers
                    channel.queue_delete(name)
                channel.exchange_delete(work.retry_exchange)
                channel.exchange_delete(work.exchange)
            connection.close()
        finally:
            self.platform.close()
            self.platform_proc.terminate()
            self.platform_proc.wait(timeout=30)
            self.store.dispose()
            with self.admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {self.schema} CASCADE")
            self.admin.dispose()


def throughput(bench: Bench, events: int, workers: int, *, batch: bool = True, tree: Path | None = None,
               label: str = "") -> dict:
    """Events per second delivered by `workers` worker processes draining a queue of `events` ready events
    (`batch`: the workers use the platform's batch push; else TONGBAN_PUSH_BATCH=0, one push per event;
    `tree`: the workers run that source tree's tongban, `label` names it in the output)."""
    from tongban.bus.rabbit import RabbitBus

    tag = f"{workers}w{'b' if batch else 's'}{label}{len(bench.prefixes)}"
    system = f"bench-{tag}-{bench.run_id}"
    cases = bench.cases(system, events)
    prefix, work = bench.work(tag)
    bus = RabbitBus(AMQP)
    bus.declare(work)
    envelopes = [bench.envelope(event, key) for event, key in cases]
    for start in range(0, len(envelopes), 500):
        bus.publish(work, envelopes[start:start + 500])
    bus.close()
    procs = bench.start_workers(prefix, workers, batch=batch, tree=tree)
    try:
        bench.wait_for_consumers(work, workers, procs)
        attached = time.time()  # from here every worker is consuming: start-up is behind us
        cpu_start = sum(_cpu_seconds(p.pid) for p in procs)
        rows = bench.wait_delivered(system, events, procs)
        cpu = sum(_cpu_seconds(p.pid) for p in procs) - cpu_start
    finally:
        stop_processes(procs)
    stamps = sorted(_when(at) for _key, at in rows)
    counted = [s for s in stamps if s >= attached]
    seconds = stamps[-1] - attached
    return {"workers": workers, "batch": batch, "label": label, "events": len(rows), "counted": len(counted), "seconds": seconds,
            "cpu_ms": 1000 * cpu / max(1, len(counted)),
            "per_s": len(counted) / seconds if seconds > 0 else float("nan"), "sample": envelopes[0].to_bytes()}


def profile_handler(bench: Bench, events: int, out: Path) -> None:
    """A worker's handler over `events` ready events, in this thread, under cProfile: where its CPU goes."""
    import cProfile

    from tongban.bus.base import Delivery
    from tongban.bus.rabbit import RabbitBus
    from tongban.delivery.worker import DeliveryWorker

    system = f"bench-prof-{bench.run_id}"
    envelopes = [bench.envelope(event, key) for event, key in bench.cases(system, events)]
    prefix, work = bench.work("prof")
    bus = RabbitBus(AMQP)
    worker = DeliveryWorker(store=bench.store, bus=bus, platform=bench.platform, work=work)
    profiler = cProfile.Profile(time.thread_time)  # CPU of this thread: waiting for the platform or the database is not
    cpu, wall = time.process_time(), time.perf_counter()
    profiler.enable()
    for envelope in envelopes:
        worker.handle(Delivery(envelope, work.queue))
    profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    bus.close()
    profiler.dump_stats(str(out))
    print(f"handler, one thread, {events} events: {1000 * cpu / events:.2f} ms CPU per event (this process: the "
          f"handler, its client and its store; under cProfile), {events / wall:,.0f} events/s; profile in {out}")


def latency(bench: Bench, rate: float, seconds: float, *, batch: bool = True, tree: Path | None = None) -> dict:
    """One worker (of `tree`, given one); events published one at a time at `rate` per second; publish → recorded
    receipt, and the worker's CPU per event meanwhile."""
    from tongban.bus.rabbit import RabbitBus

    tag = f"lat{len(bench.prefixes)}"  # a system and queues of this round's own (one latency round per tree)
    system = f"bench-{tag}-{bench.run_id}"
    total = max(1, int(rate * seconds))
    cases = bench.cases(system, total)
    prefix, work = bench.work(tag)
    bus = RabbitBus(AMQP)
    bus.declare(work)
    procs = bench.start_workers(prefix, 1, batch=batch, tree=tree)
    created: dict[str, float] = {}
    try:
        bench.wait_for_consumers(work, 1, procs)
        cpu_start = sum(_cpu_seconds(p.pid) for p in procs)
        started = time.monotonic()
        for i, (event, key) in enumerate(cases):
            due = started + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            envelope = bench.envelope(event, key)  # created_at: now, just before the publish
            bus.publish(work, [envelope])
            created[key] = _when(envelope.created_at)
        offered = total / (time.monotonic() - started)
        rows = bench.wait_delivered(system, total, procs)
        cpu = sum(_cpu_seconds(p.pid) for p in procs) - cpu_start
    finally:
        stop_processes(procs)
        bus.close()
    latencies = sorted(_when(at) - created[key] for key, at in rows)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"events": total, "offered": offered, "p50": cuts[49], "p99": cuts[98], "max": latencies[-1],
            "cpu_ms": 1000 * cpu / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1500, help="events per throughput round")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-load", type=float, default=0.5, help="offered rate ÷ one-worker throughput")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="profile a worker's handler instead (see above)")
    parser.add_argument("--mode", choices=("both", "single", "batch"), default="both",
                        help="workers pushing one event per call (TONGBAN_PUSH_BATCH=0), in batches, or both rounds")
    parser.add_argument("--compare", type=Path, metavar="TREE", action="append", default=[],
                        help="a source tree of another commit (`git archive COMMIT | tar -x -C TREE`): its workers "
                             "run each round too, interleaved with this tree's, against the same platform (may be "
                             "given more than once: the first is labelled base, the others by their folder's name)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of each kind (interleaved with --compare)")
    parser.add_argument("--ceiling-each", action="store_true",
                        help="measure the platform ceiling (of the round's mode) right after every round, and print "
                             "each round against it: on a machine whose load moves, a ceiling measured minutes later "
                             "says little about a round")
    args = parser.parse_args()
    modes = {"both": (False, True), "single": (False,), "batch": (True,)}[args.mode]
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            if args.profile:
                profile_handler(bench, args.events, args.profile)
                return
            # The first --compare tree is "base"; further ones are named by their folder.
            trees = [(tree, "base" if i == 0 else tree.name) for i, tree in enumerate(args.compare)] + [(None, "")]
            for _ in range(args.repeats):
                for batch in modes:
                    for workers in (1, 2):
                        for tree, label in trees:
                            rounds.append(throughput(bench, args.events, workers, batch=batch, tree=tree, label=label))
                            r = rounds[-1]
                            if args.ceiling_each:  # the platform's ceiling right after this round, the same way
                                limit = bench.platform.batch_limit() if batch else 0
                                r["ceiling"] = platform_ceiling(bench, args.events, batch=limit if limit > 1 else 0)
                            print(f"  round: {label or 'this tree'} ×{workers} {'batch' if batch else 'single'}: "
                                  f"{r['per_s']:,.0f} events/s, {r['cpu_ms']:.2f} ms CPU per event"
                                  + (f"; the ceiling right after it {r['ceiling']:,.0f} events/s, ratio "
                                     f"{r['per_s'] / r['ceiling']:.3f}" if 'ceiling' in r else ""), flush=True)
            ceiling = platform_ceiling(bench, args.events)
            limit = bench.platform.batch_limit()
            batch_ceiling = platform_ceiling(bench, args.events, batch=limit) if True in modes and limit > 1 else None
            one = next(r for r in reversed(rounds) if r["workers"] == 1 and not r["label"])
            # With --compare, the latency round too runs for each tree, at the same offered rate, interleaved.
            lats = [(label, latency(bench, one["per_s"] * args.latency_load, args.latency_seconds, batch=modes[-1],
                                    tree=tree))
                    for _ in range(args.repeats) for tree, label in trees] if args.latency_seconds > 0 else []
        finally:
            bench.close()
    raw = raw_pika(args.events, one["sample"])
    print(f"raw pika publish(confirm)+consume(ack): {raw:,.0f} msg/s  "
          f"(baseline, same run, {args.events} messages of {len(one['sample'])} bytes)")
    print(f"platform ceiling, single push: the same number of events pushed straight to the mock platform from 16 "
          f"threads (no bus, no ledger): {ceiling:,.0f} events/s")
    if batch_ceiling is not None:
        print(f"platform ceiling, batch push: the same, in batch calls of {limit} events: {batch_ceiling:,.0f} events/s")
    for r in rounds:
        how = "batch push" if r["batch"] else "single push"
        line = (f"{'[' + r['label'] + '] ' if r['label'] else ''}tongban worker ×{r['workers']}, {how} (RabbitMQ, PostgreSQL ledger, mock platform): "
                f"{r['per_s']:,.0f} events/s ({r['counted']} of {r['events']} events counted, after every worker "
                f"attached, in {r['seconds']:.1f}s); ÷ raw pika = {r['per_s'] / raw:.3f}; "
                f"÷ single-push ceiling = {r['per_s'] / ceiling:.3f}")
        if batch_ceiling is not None:
            line += f"; ÷ batch ceiling = {r['per_s'] / batch_ceiling:.3f}"
        print(line + f"; worker CPU {r['cpu_ms']:.2f} ms per event")
    for batch in modes:
        for label in sorted({r["label"] for r in rounds}):
            mine = [r for r in rounds if r["batch"] == batch and r["label"] == label]
            if args.ceiling_each:
                ratio = {w: statistics.mean(r["per_s"] / r["ceiling"] for r in mine if r["workers"] == w) for w in (1, 2)}
                print(f"{'[' + label + '] ' if label else ''}{'batch' if batch else 'single'} push: ÷ the ceiling "
                      f"measured right after each round: {ratio[1]:.3f} / {ratio[2]:.3f} (1 / 2 workers, mean)")
            one_w = statistics.mean(r["per_s"] for r in mine if r["workers"] == 1)
            two_w = statistics.mean(r["per_s"] for r in mine if r["workers"] == 2)
            cpu = {w: statistics.mean(r["cpu_ms"] for r in mine if r["workers"] == w) for w in (1, 2)}
            print(f"{'[' + label + '] ' if label else ''}{'batch' if batch else 'single'} push: two workers ÷ one worker"
                  f" = {two_w / one_w:.2f}; mean CPU per event {cpu[1]:.2f} / {cpu[2]:.2f} ms (1 / 2 workers)"
                  f"  (on {os.cpu_count()} cores, the mock platform and PostgreSQL on the same machine)")
    for label, lat in lats:
        print(f"{'[' + label + '] ' if label else ''}latency publish → recorded receipt, one worker "
              f"({'batch' if modes[-1] else 'single'} push), {lat['events']} events offered at {lat['offered']:,.1f}/s "
              f"({args.latency_load:.0%} of one-worker throughput): p50 {lat['p50'] * 1000:,.1f} ms, "
              f"p99 {lat['p99'] * 1000:,.1f} ms, max {lat['max'] * 1000:,.1f} ms; worker CPU {lat['cpu_ms']:.2f} ms "
              f"per event")


if __name__ == "__main__":
    main()
