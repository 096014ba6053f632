"""Batch push (批量推送) for the delivery worker: the handler lanes' pushes grouped into the platform's batch calls.

Each lane handles its messages exactly as with single pushes (idempotent consumer, blocked case, ordering gate, then
the push, then the receipt recorded, then the ack); only the push itself is handed here. A lane hands over a run: one
event, or several consecutive events of one case (n, n + 1, …: tongban.delivery.chains), which go next to one
another, in order, in one call and are never split across calls — the platform takes a batch's events in order, so
n + 1 finds n stored (sandbox/platform_batch.py). A pusher thread takes every run that has queued up (at most the
platform's `max_events` events; a run that would not fit goes first in that thread's next call), sends them in one
`PlatformClient.push_batch` call, and gives each lane its own events' outcomes: a receipt, or the very exception the
single push would have raised for that event (PlatformRejected, PlatformTransient, ReceiptInvalid), so rejection,
retry and parking stay per event. A transient failure of the whole call (after the client's quick retry) is each
event's transient failure. Different cases' runs may share a call in any order: only a case's own events are
ordered, and a lane sends a case's next run only after this one's outcome. Like the committer (WriteBatcher): no
waiting to fill a batch; what queued while the previous call was in flight goes in the next one.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from tongban.platform.client import PlatformClient

log = logging.getLogger("tongban.worker")


class PushBatcher:
    def __init__(self, platform: PlatformClient, max_events: int, *, pushers: int = 2, check=None):
        self.platform = platform
        # check(receipt, event, idempotency_key): the receipt's platform signature (the worker's ReceiptVerifier),
        # raising ReceiptSignatureInvalid; run here over a whole reply before any lane wakes, so the lanes of one
        # call reach the committer together (one group commit, not several) and each is handed a checked receipt.
        self.check = check
        self.max_events = max(1, max_events)
        self._pending: queue.Queue[tuple[list[tuple[dict, str]], Future]] = queue.Queue()  # one run per item
        self.calls = 0
        self.events = 0
        self._threads = [threading.Thread(target=self._run, name=f"tongban-pusher-{i}", daemon=True)
                         for i in range(max(1, pushers))]
        for thread in self._threads:
            thread.start()

    def push(self, event: dict, idempotency_key: str) -> dict:
        """The verified receipt of `event` (its signature too, given `check`), or the exception the single push
        would raise for it (or `check`'s)."""
        outcome, = self.push_run([(event, idempotency_key)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def push_run(self, events: list[tuple[dict, str]]) -> list[dict | Exception]:
        """Several events, `(event, idempotency_key)` each, sent next to one another in one call in this order (at
        most `max_events`; the platform applies a batch in order, so n and n + 1 of one case may share it); one
        outcome per event: its verified receipt, or the exception the single push would raise for it."""
        if not 1 <= len(events) <= self.max_events:
            raise ValueError(f"{len(events)} events for one call; 1 to {self.max_events}")
        future: Future = Future()
        self._pending.put((events, future))
        return future.result()

    def _next_call(self, carry: list) -> tuple[list, list]:
        """The runs for the next call (the carried one first, then whatever queued up, at most `max_events` events
        in all: a run is never split, so its events stay next to one another and in order) and the run carried."""
        units = carry or [self._pending.get()]
        size = sum(len(events) for events, _ in units)
        while size < self.max_events:
            try:
                unit = self._pending.get_nowait()
            except queue.Empty:
                break
            if size + len(unit[0]) > self.max_events:
                return units, [unit]  # goes first in this thread's next call
            units.append(unit)
            size += len(unit[0])
        return units, []

    def _run(self) -> None:
        carry: list = []
        while True:
            units, carry = self._next_call(carry)
            batch = [(event, key) for events, _ in units for event, key in events]
            self.calls += 1
            self.events += len(batch)
            try:
                outcomes = self.platform.push_batch(batch)
            except Exception as exc:  # the whole call failed: each event fails the same way
                for events, future in units:
                    future.set_result([exc] * len(events))
                continue
            results: list = []
            for (event, key), outcome in zip(batch, outcomes):
                if outcome.error is None and self.check is not None:
                    try:
                        self.check(outcome.receipt, event, key)
                    except Exception as exc:  # ReceiptSignatureInvalid: that event's outcome
                        results.append(exc)
                        continue
                results.append(outcome.error if outcome.error is not None else outcome.receipt)
            start = 0
            for events, future in units:
                future.set_result(results[start:start + len(events)])
                start += len(events)
