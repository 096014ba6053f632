"""What the PostgreSQL writers' lock costs (issue 14): the global advisory lock every write used to take, next to
today's lock taken by ledger appends alone, measured in the same run on the same schema. Prints ratios.

Before issue 14, `Store.write()` took `pg_advisory_xact_lock(7351)` at the start of every write transaction, so a
worker claiming messages on the embedded bus, a relay emptying the outbox or an ingest saving snapshots queued
behind every ledger append (and behind each other). Now only `ledger.append` takes it. The workload, for a few
seconds per round, on one PostgreSQL schema:

- appenders: threads appending one ledger event per transaction (the hash chain: one writer at a time, always);
- other writers: threads doing writes that append nothing — a local-queue message inserted, claimed and removed
  (the embedded bus), a watermark upserted (the state) — each in its own transaction.

"global" runs it with a Store that takes the old global lock in every write; "ledger-only" with today's Store.
Rounds alternate (global, ledger-only, global, ledger-only …) so that drift in the machine's load hits both alike;
the ratio is ledger-only ÷ global, per kind of write. The chain is verified at the end of every round.

    .venv/bin/python benchmarks/store_locks.py [--seconds 4] [--rounds 2] [--appenders 4] [--writers 4]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PG_BASE = os.environ.get("TONGBAN_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")


def _global_lock_store(url: str):
    from tongban.store import Store

    class GlobalLockStore(Store):
        """The store as it was before issue 14: every write transaction serialised behind one advisory lock."""

        @contextlib.contextmanager
        def write(self):
            with self.engine.begin() as conn:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7351)")
                yield conn

    return GlobalLockStore(url)


def _round(store, seconds: float, appenders: int, writers: int) -> dict[str, float]:
    from sqlalchemy import delete, select, update

    from tongban.audit import ledger
    from tongban.audit.ledger import LedgerEvent
    from tongban.store import state
    from tongban.store.tables import local_queue

    stop = threading.Event()
    counts = {"appends": 0, "other writes": 0}
    lock = threading.Lock()

    def appender(n: int) -> None:
        done = 0
        while not stop.is_set():
            ledger.record(store, LedgerEvent("retried", {"thread": n, "i": done}, system="bench"))
            done += 1
        with lock:
            counts["appends"] += done

    def writer(n: int) -> None:
        done, queue = 0, f"bench-{n}"
        while not stop.is_set():
            with store.write() as conn:  # the embedded bus: publish
                conn.execute(local_queue.insert().values(queue=queue, body="{}", available_at="0", claims=0))
            with store.write() as conn:  # claim
                row = conn.execute(select(local_queue.c.id).where(local_queue.c.queue == queue)
                                   .limit(1).with_for_update(skip_locked=True)).scalar()
                conn.execute(update(local_queue).where(local_queue.c.id == row).values(claimed_by="b", claims=1))
            with store.write() as conn:  # ack
                conn.execute(delete(local_queue).where(local_queue.c.id == row))
            with store.write() as conn:  # state
                state.set_watermark(conn, f"bench-{n}", str(done))
            done += 4
        with lock:
            counts["other writes"] += done

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(appenders)] + \
              [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert ledger.verify(store).ok, "the hash chain broke under concurrent appenders"
    return {kind: n / elapsed for kind, n in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--appenders", type=int, default=4)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()

    import sqlalchemy as sa

    from tongban.store import Store
    from tongban.store.schema import migrated

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = migrated(f"{PG_BASE}?options=-csearch_path%3D{schema}")
    pool = {"pool_size": args.appenders + args.writers}
    stores = {"global": _global_lock_store(url), "ledger-only": Store(url)}
    for store in stores.values():  # one connection per thread: the pool is not what is measured
        store.engine.dispose()
        store.engine = sa.create_engine(url, pool_pre_ping=True, **pool)
    totals: dict[str, dict[str, list[float]]] = {name: {} for name in stores}
    try:
        for _ in range(args.rounds):
            for name, store in stores.items():
                for kind, rate in _round(store, args.seconds, args.appenders, args.writers).items():
                    totals[name].setdefault(kind, []).append(rate)
    finally:
        for store in stores.values():
            store.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    print(f"PostgreSQL writers, {args.appenders} appender and {args.writers} other-writer threads, "
          f"{args.rounds} × {args.seconds:g}s rounds per lock")
    print(f"{'writes per second':<22}{'global lock':>14}{'ledger-only':>14}{'ratio':>9}")
    for kind in ("appends", "other writes"):
        before = sum(totals["global"][kind]) / args.rounds
        after = sum(totals["ledger-only"][kind]) / args.rounds
        print(f"{kind:<22}{before:>14.0f}{after:>14.0f}{after / before:>8.2f}×")


if __name__ == "__main__":
    main()
