"""A handler lane's messages, taken one at a time or as runs of one case (for a handler that can take a run).

A lane's inbox holds the messages of the cases that hash to it, in the order the bus handed them over. A run is the
message at the head and those queued right behind it with the same key (the case, its correlation): what a handler
given a run (`Bus.consume(run_handler=...)`, the delivery worker's batch push) can send in one call, in order.
Nothing is waited for to fill a run: it is what has queued up already. The first message of another key (or the
lane's stop mark) ends the run and is the head of the next one, so the lane's order is kept exactly."""
from __future__ import annotations

import logging
import queue
from typing import Any, Callable, Iterator

log = logging.getLogger("tongban.bus")
_NOTHING = object()


def lane_runs(inbox: queue.Queue, key_of: Callable[[Any], str | None], grouped: bool) -> Iterator[list]:
    """Yield the inbox's items in order, each time a list: one item, or (grouped) the head and the items queued
    right behind it whose key is the head's (an item whose key is None or empty is always alone). Ends at None."""
    carry = _NOTHING
    while True:
        item = inbox.get() if carry is _NOTHING else carry
        carry = _NOTHING
        if item is None:
            return
        run = [item]
        key = key_of(item) if grouped else None
        while key:
            try:
                following = inbox.get_nowait()
            except queue.Empty:
                break
            if following is not None and key_of(following) == key:
                run.append(following)
            else:
                carry = following
                break
        yield run


def handle_run(run: list, deliver: Callable[[Any], Any], handler: Callable[[Any], None],
               run_handler: Callable[[list], list[bool]] | None) -> list[bool]:
    """Handle one run of a lane: a single message by `handler`, several by `run_handler`; one flag per item, True
    when handled (ack), False when it failed (back to the queue, as a broker does on a nack with requeue)."""
    try:
        deliveries = [deliver(item) for item in run]  # a body that is not an envelope fails here, in its lane
        if len(deliveries) == 1 or run_handler is None:
            for delivery in deliveries:
                handler(delivery)
            return [True] * len(deliveries)
        oks = run_handler(deliveries)
        if len(oks) != len(deliveries):
            raise RuntimeError(f"the run handler settled {len(oks)} of {len(deliveries)} messages")
        return oks
    except Exception:
        log.exception("handler failed; message returned to the queue")
        return [False] * len(run)
