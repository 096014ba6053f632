"""The bus interface both transports implement."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from tongban.bus.envelope import Envelope

from .topology import WorkQueue


class BusError(Exception):
    pass


class PublishError(BusError):
    """The broker did not confirm a publish (nacked, unroutable, or the connection died)."""

    def __init__(self, message: str, *, unroutable: bool = False):
        super().__init__(message)
        self.unroutable = unroutable  # no queue is bound: retrying will not help until the topology is fixed


@dataclass
class Delivery:
    envelope: Envelope
    queue: str
    redelivered: bool = False


Handler = Callable[[Delivery], None]
# Several messages of one case, in the order the bus holds them; one flag per message: True acks it, False returns it
# to the queue (raising returns them all).
RunHandler = Callable[[list[Delivery]], list[bool]]


class Bus:
    """Publish with confirmation; consume with ack after the handler returns.

    A handler that returns normally has its message acked; one that raises has it returned to the
    queue (nothing is lost). Handlers route onward (retry, wait, park) by publishing before they return.
    """

    name = "abstract"

    def declare(self, work: WorkQueue) -> None:
        raise NotImplementedError

    def publish(self, work: WorkQueue, envelopes: Sequence[Envelope]) -> None:
        """Publish to the work queue; returns only when every message is confirmed, else raises PublishError."""
        raise NotImplementedError

    def publish_delayed(self, work: WorkQueue, envelope: Envelope, seconds: float) -> None:
        """Publish so that the message reaches the work queue again after `seconds`."""
        raise NotImplementedError

    def consume(self, work: WorkQueue, handler: Handler, *, stop: threading.Event, prefetch: int = 20,
                idle_exit: float | None = None, lanes: int = 1, run_handler: RunHandler | None = None) -> None:
        """Run until `stop` is set (or, with idle_exit, until the queue has been empty that long).
        `lanes` handler threads share the work; messages with the same correlation keep to one lane. With
        `run_handler`, a lane that finds several messages of one case queued one behind the other hands them to it
        together (tongban.bus.runs); a message alone still goes to `handler`."""
        raise NotImplementedError

    def depth(self, queue: str) -> int:
        raise NotImplementedError

    def queues(self, work: WorkQueue) -> list[str]:
        """The queues where the work queue's messages may be waiting right now (for depths and status)."""
        return [work.queue]

    def depths(self, names: Sequence[str]) -> dict[str, int]:
        """`depth` of each queue (the RabbitMQ bus asks over one connection)."""
        return {name: self.depth(name) for name in names}

    def oldest_created_at(self, queue: str) -> str | None:
        """The created_at of the message at the head of the queue (None when empty)."""
        raise NotImplementedError

    def purge(self, work: WorkQueue) -> None:
        """Empty the work queue and its delay queues (tests and the sandbox only)."""
        raise NotImplementedError

    def close(self) -> None:
        pass
