"""Flowback topology: exchange `tongban.flowback`, one durable queue per county-level unit
(`tongban.flowback.<6-digit code>`) and one for the city (`tongban.flowback.city`); the routing key is the code
(500000 for the city). The prefix is `<TONGBAN_QUEUE_PREFIX>.flowback` (`flowback_prefix()`), so that two
environments on one broker keep apart; tests pass a prefix of their own."""
from __future__ import annotations

from tongban.bus import Bus
from tongban.bus.topology import WorkQueue
from tongban.codes import CHONGQING_CODE

from .config import CITY, TARGETS

DEFAULT_PREFIX = "tongban.flowback"


def flowback_prefix(settings=None) -> str:
    """The flowback topology's prefix under the settings' TONGBAN_QUEUE_PREFIX (default `tongban.flowback`)."""
    if settings is None:
        from tongban.settings import load

        settings = load()
    return f"{settings.queue_prefix}.flowback"


def work_queue(target: str, prefix: str = DEFAULT_PREFIX) -> WorkQueue:
    key = CHONGQING_CODE if target == CITY else target
    return WorkQueue(prefix, f"{prefix}.{target}", key)


def flowback_topology(prefix: str = DEFAULT_PREFIX) -> dict[str, WorkQueue]:
    """Target ("500101" … or "city") → its work queue."""
    return {target: work_queue(target, prefix) for target in TARGETS}


_declared: dict[int, set[str]] = {}


def declare(bus: Bus, work: WorkQueue) -> None:
    """Declare once per bus object (declaring is idempotent, but costs a broker round trip)."""
    done = _declared.setdefault(id(bus), set())
    if work.queue not in done:
        bus.declare(work)
        done.add(work.queue)


def family_depth(bus: Bus, work: WorkQueue) -> int:
    """Messages waiting in a work queue and its gate (the local bus keeps delayed ones in the queue too). The retry
    tiers are left out: all district queues share them (tongban.bus.topology), so their depth names no district;
    a consumer stays while a retry it sent is due back (RabbitBus._quiet)."""
    return sum(bus.depths([name for name in bus.queues(work) if name in work.own_queues]).values())
