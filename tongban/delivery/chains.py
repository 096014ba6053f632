"""Chains: consecutive events of one case that a delivery worker sends in one batch push (批量推送), in order.

A lane of the worker often holds several events of one case at once (an ingest publishes a case's new events one
after another). Handled one by one, each event waits for its predecessor's push and then its recorded receipt (the
ordering gate reads the case's last delivered sequence): five events, five round trips to the platform and five
group commits, one after another. The platform takes a batch's events in order (sandbox/platform_batch.py: n and
n + 1 of one case may share a call), so the events that continue the case's delivered sequence can travel together:
the chain is pushed in one call, its receipts recorded in one transaction, in sequence order.

What each promise becomes (tongban.delivery.worker.DeliveryWorker.handle_run):
- order per case: the chain starts at the case's last delivered sequence + 1 (looked up as for one event, the
  chain's keys held in this worker meanwhile), its sequences follow one another, and the call keeps them in order;
- exactly once: every event still carries its own idempotency key; a chain pushed again after a crash before its
  receipts were recorded gets the platform's original receipts (marked duplicate), recorded once (unique key);
- an event without a receipt (refused, transient, receipt not accepted) is handled as its single push would be;
  the events behind it in the chain are handled afresh one by one, as if they had arrived after it: they find the
  case blocked (parked behind it) or its predecessor missing (the ordering gate's wait). What the platform made of
  them in that call does not count: it refused them for the gap, or — when only our check of the predecessor's
  receipt failed — stored them, and their later push is then a duplicate.
"""
from __future__ import annotations

from typing import Sequence

from tongban.bus import Delivery


def consecutive(deliveries: Sequence[Delivery], most: int) -> list[Delivery]:
    """The leading deliveries whose events follow one another: one case, sequences s, s + 1, …, each key once, at
    most `most` of them (one delivery when the second does not follow)."""
    chain: list[Delivery] = []
    keys: set[str] = set()
    for delivery in deliveries[:most]:
        env = delivery.envelope
        sequence = env.payload.get("sequence")
        if not isinstance(sequence, int) or not env.correlation or env.idempotency_key in keys:
            break
        if chain:
            last = chain[-1].envelope
            if env.correlation != last.correlation or sequence != last.payload["sequence"] + 1:
                break
        chain.append(delivery)
        keys.add(env.idempotency_key)
    return chain
