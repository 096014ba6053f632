"""Batch push (批量推送) for the delivery worker: the handler lanes' pushes grouped into the platform's batch calls.

Each lane still handles one message at a time exactly as with single pushes (idempotent consumer, blocked case,
ordering gate, then the push, then the receipt recorded, then the ack); only the push itself is handed here. A pusher
thread takes every push that has queued up (at most the platform's `max_events`), sends them in one
`PlatformClient.push_batch` call, and gives each lane its own event's outcome: its receipt, or the very exception the
single push would have raised for it (PlatformRejected, PlatformTransient, ReceiptInvalid), so rejection, retry and
parking stay per event. A transient failure of the whole call (after the client's quick retry) is each event's
transient failure. Per-case order is untouched: one case keeps to one lane, so two events of one case are never in
one batch of a worker, and the ordering gate runs before the push as before. Like the committer (WriteBatcher): no
waiting to fill a batch; what queued while the previous call was in flight goes in the next one.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from tongban.platform.client import PlatformClient
from tongban.store.batcher import next_batch

log = logging.getLogger("tongban.worker")


class PushBatcher:
    def __init__(self, platform: PlatformClient, max_events: int, *, pushers: int = 2, check=None):
        self.platform = platform
        # check(receipt, event, idempotency_key): the receipt's platform signature (the worker's ReceiptVerifier),
        # raising ReceiptSignatureInvalid; run here over a whole reply before any lane wakes, so the lanes of one
        # call reach the committer together (one group commit, not several) and each is handed a checked receipt.
        self.check = check
        self.max_events = max(1, max_events)
        self._pending: queue.Queue[tuple[dict, str, Future]] = queue.Queue()
        self.calls = 0
        self.events = 0
        self._threads = [threading.Thread(target=self._run, name=f"tongban-pusher-{i}", daemon=True)
                         for i in range(max(1, pushers))]
        for thread in self._threads:
            thread.start()

    def push(self, event: dict, idempotency_key: str) -> dict:
        """The verified receipt of `event` (its signature too, given `check`), or the exception the single push
        would raise for it (or `check`'s)."""
        future: Future = Future()
        self._pending.put((event, idempotency_key, future))
        return future.result()

    def _run(self) -> None:
        while True:
            batch = next_batch(self._pending, self.max_events)
            self.calls += 1
            self.events += len(batch)
            try:
                outcomes = self.platform.push_batch([(event, key) for event, key, _ in batch])
            except Exception as exc:  # the whole call failed: each event fails the same way
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            results = []
            for (event, key, _), outcome in zip(batch, outcomes):
                if outcome.error is None and self.check is not None:
                    try:
                        self.check(outcome.receipt, event, key)
                    except Exception as exc:  # ReceiptSignatureInvalid: that event's outcome
                        results.append(exc)
                        continue
                results.append(outcome.error if outcome.error is not None else outcome.receipt)
            for (_, _, future), result in zip(batch, results):
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
