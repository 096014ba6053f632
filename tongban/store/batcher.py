"""Group commit for concurrent writers.

The ledger's hash chain admits one writer at a time, and every commit waits for the disk. Handler lanes
therefore hand their writes to one committer thread, which runs whatever has queued up in a single
transaction and then wakes the callers: the same durability (a caller returns only after its commit), many
writes per disk flush. A batch that fails is retried one write at a time, so one bad write fails alone; a caller is
told its result only once the transaction that holds its write has committed. Rows the writes leave for the end of
the transaction (`db.before_commit`: the ledger's) go in with one statement per group commit."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

from sqlalchemy import Connection

from .db import Store

Write = Callable[[Connection], Any]
T = TypeVar("T")


def next_batch(pending: queue.Queue[T], most: int) -> list[T]:
    """The next item to arrive and whatever else has queued up meanwhile, `most` at the most: no waiting to fill a
    batch (what queues while this one is handled goes in the next)."""
    batch = [pending.get()]
    while len(batch) < most:
        try:
            batch.append(pending.get_nowait())
        except queue.Empty:
            break
    return batch


class WriteBatcher:
    def __init__(self, store: Store, max_batch: int = 200):
        # Unpinged: a failed group is run again write by write, each in a transaction of its own on a connection
        # checked out afresh, which is what recovers from a connection the database dropped (Store.unpinged).
        self.store = store.unpinged() if isinstance(store, Store) else store
        self.max_batch = max_batch
        self._pending: queue.Queue[tuple[Write, Future]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tongban-committer", daemon=True)
        self._thread.start()

    def write(self, fn: Write) -> Any:
        """Run `fn(conn)` in a write transaction; returns its result once committed."""
        future: Future = Future()
        self._pending.put((fn, future))
        return future.result()

    def _run(self) -> None:
        while True:
            batch = next_batch(self._pending, self.max_batch)
            try:
                with self.store.write() as conn:
                    results = [fn(conn) for fn, _ in batch]
            except Exception:
                for fn, future in batch:
                    # The result is given only after the `with` has committed: a write whose commit fails is that
                    # write's failure, never reported done (and its future is resolved once, so the committer lives).
                    try:
                        with self.store.write() as conn:
                            result = fn(conn)
                    except Exception as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)
