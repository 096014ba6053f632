"""The embedded-default bus: a durable queue in the tongban store (SQLite by default).

It keeps the RabbitMQ transport's promises on one machine: messages survive process exits (so
`tongban ingest` and `tongban worker` can run as separate commands), a message is removed only after
its handler returned, and one that was claimed by a process that died is claimed again after a lease.

With `lanes` > 1 (the delivery worker's default) handlers run on lane threads as on RabbitMQ: messages of one
case (one correlation) always take the same lane, in the order they were claimed, so a case is never handled twice
at once and its events keep their order; different cases are handled in parallel (their pushes overlap, and the
worker's committer writes their receipts in one transaction). A row is deleted only after its handler returned;
the rows the lanes finished are deleted together, one statement per turn of the loop.

Queued bodies hold whole case events (names, 证件号码): they are stored encrypted like quarantine
(tongban.store.at_rest), so the database file shows no personal data while messages wait.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
import zlib
from datetime import datetime, timedelta, timezone
from typing import Sequence

from sqlalchemy import delete, func, or_, select, update

from tongban.bus.envelope import Envelope
from tongban.store import Store
from tongban.store.at_rest import protect, reveal
from tongban.store.tables import local_queue

from .base import Bus, Delivery, Handler, RunHandler
from .runs import handle_run, lane_runs
from .topology import WorkQueue

log = logging.getLogger("tongban.bus.local")

LEASE_SECONDS = 60


def _sealed_body(envelope: Envelope) -> str:
    return protect(envelope.to_bytes().decode("utf-8"))


def _envelope(body: str) -> Envelope:
    return Envelope.from_bytes(reveal(body).encode("utf-8"))


def _at(offset: float = 0.0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset)).isoformat(timespec="microseconds")


class LocalBus(Bus):
    name = "inprocess"

    def __init__(self, store: Store):
        self.store = store
        self.consumer_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def declare(self, work: WorkQueue) -> None:
        """Nothing to declare: the table is the queue."""

    def publish(self, work: WorkQueue, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        now = _at()
        with self.store.write() as conn:
            conn.execute(local_queue.insert(), [
                {"queue": work.queue, "body": _sealed_body(e), "available_at": now, "claims": 0}
                for e in envelopes])

    def publish_delayed(self, work: WorkQueue, envelope: Envelope, seconds: float) -> None:
        with self.store.write() as conn:
            conn.execute(local_queue.insert().values(queue=work.queue, body=_sealed_body(envelope),
                                                     available_at=_at(seconds), claims=0))

    def _claim(self, work: WorkQueue, limit: int) -> list[tuple[int, str, bool]]:
        now = _at()
        stale = _at(-LEASE_SECONDS)
        with self.store.write() as conn:
            rows = conn.execute(
                select(local_queue.c.id, local_queue.c.body, local_queue.c.claims)
                .where(local_queue.c.queue == work.queue, local_queue.c.available_at <= now,
                       or_(local_queue.c.claimed_by.is_(None), local_queue.c.claimed_at < stale))
                .order_by(local_queue.c.available_at, local_queue.c.id).limit(limit)
                # PostgreSQL: rows another consumer is claiming are skipped, not claimed twice (no global lock);
                # SQLite's writers take turns anyway and the clause is not rendered there.
                .with_for_update(skip_locked=True)).all()
            if rows:
                conn.execute(update(local_queue).where(local_queue.c.id.in_([r.id for r in rows]))
                             .values(claimed_by=self.consumer_id, claimed_at=now, claims=local_queue.c.claims + 1))
        return [(r.id, r.body, (r.claims or 0) > 0) for r in rows]

    def consume(self, work: WorkQueue, handler: Handler, *, stop: threading.Event, prefetch: int = 20,
                idle_exit: float | None = None, lanes: int = 1, run_handler: RunHandler | None = None) -> None:
        if lanes > 1:
            self._consume_lanes(work, handler, stop=stop, prefetch=prefetch, idle_exit=idle_exit, lanes=lanes,
                                run_handler=run_handler)
            return
        idle_since = time.monotonic()
        while not stop.is_set():
            batch = self._claim(work, prefetch)
            if not batch:
                if idle_exit is not None and time.monotonic() - idle_since > idle_exit and self.depth(work.queue) == 0:
                    return
                stop.wait(0.05)
                continue
            idle_since = time.monotonic()
            for index, (row_id, body, redelivered) in enumerate(batch):
                if stop.is_set():
                    self._release([r[0] for r in batch[index:]])
                    return
                try:
                    handler(Delivery(_envelope(body), work.queue, redelivered))
                except Exception:
                    # Back to the queue, as a broker would on a nack with requeue.
                    self._release([row_id])
                    continue
                with self.store.write() as conn:
                    conn.execute(delete(local_queue).where(local_queue.c.id == row_id))

    def _consume_lanes(self, work: WorkQueue, handler: Handler, *, stop: threading.Event, prefetch: int,
                       idle_exit: float | None, lanes: int, run_handler: RunHandler | None = None) -> None:
        """`lanes` handler threads (see the module docstring); at most `prefetch` rows claimed and not yet settled."""
        inboxes: list[queue.Queue] = [queue.Queue() for _ in range(lanes)]
        settled: queue.Queue[tuple[int, bool]] = queue.Queue()  # (row id, handler returned)

        def lane_loop(inbox: queue.Queue) -> None:
            # Several messages of one case queued one behind the other go to run_handler together (tongban.bus.runs).
            for run in lane_runs(inbox, lambda item: item[1].correlation, run_handler is not None):
                oks = handle_run(run, lambda item: Delivery(item[1], work.queue, item[2]), handler, run_handler)
                for (row_id, _, _), ok in zip(run, oks):
                    settled.put((row_id, ok))

        def settle(block: bool) -> int:
            """Delete the rows whose handler returned, release the others; how many were settled."""
            done: list[int] = []
            failed: list[int] = []
            try:
                while True:
                    row_id, ok = settled.get(timeout=0.05) if block and not (done or failed) else settled.get_nowait()
                    (done if ok else failed).append(row_id)
            except queue.Empty:
                pass
            if done:
                with self.store.write() as conn:
                    conn.execute(delete(local_queue).where(local_queue.c.id.in_(done)))
            if failed:
                self._release(failed)
            return len(done) + len(failed)

        threads = [threading.Thread(target=lane_loop, args=(inbox,), name=f"tongban-local-lane-{i}", daemon=True)
                   for i, inbox in enumerate(inboxes)]
        for thread in threads:
            thread.start()
        in_hand = 0  # claimed, handed to a lane, not yet settled
        idle_since = time.monotonic()
        try:
            while not stop.is_set() and all(t.is_alive() for t in threads):
                in_hand -= settle(block=False)
                batch = self._claim(work, prefetch - in_hand) if in_hand < prefetch else []
                if batch:
                    idle_since = time.monotonic()
                    for row_id, body, redelivered in batch:
                        envelope = _envelope(body)
                        lane = zlib.crc32((envelope.correlation or "").encode("utf-8")) % lanes
                        inboxes[lane].put((row_id, envelope, redelivered))
                    in_hand += len(batch)
                    continue
                if in_hand:
                    in_hand -= settle(block=True)
                    idle_since = time.monotonic()
                elif idle_exit is not None and time.monotonic() - idle_since > idle_exit and self.depth(work.queue) == 0:
                    return
                else:
                    stop.wait(0.05)
        finally:
            # What waits in the lanes unhandled goes back to the queue at once; the message in hand in each lane is
            # finished (stop: finish, then exit) and settled.
            unhandled: list[int] = []
            for inbox in inboxes:
                while True:
                    try:
                        unhandled.append(inbox.get_nowait()[0])
                    except queue.Empty:
                        break
                inbox.put(None)
            if unhandled:
                self._release(unhandled)
            for thread in threads:
                thread.join(30)
            settle(block=False)

    def _release(self, ids: list[int]) -> None:
        with self.store.write() as conn:
            conn.execute(update(local_queue).where(local_queue.c.id.in_(ids)).values(claimed_by=None, claimed_at=None))

    def depth(self, queue_name: str) -> int:
        with self.store.read() as conn:
            return conn.execute(select(func.count()).select_from(local_queue)
                                .where(local_queue.c.queue == queue_name)).scalar() or 0

    def oldest_created_at(self, queue_name: str) -> str | None:
        with self.store.read() as conn:
            body = conn.execute(select(local_queue.c.body).where(local_queue.c.queue == queue_name)
                                .order_by(local_queue.c.id).limit(1)).scalar()
        return _envelope(body).created_at if body else None

    def purge(self, work: WorkQueue) -> None:
        with self.store.write() as conn:
            conn.execute(delete(local_queue).where(local_queue.c.queue == work.queue))
