"""Reading ahead: the next page of a source is fetched while the current one is mapped.

`prefetched(pages, ahead)` runs the `pages` iterator in a thread of its own and hands its items over in order,
at most `ahead` items waiting beyond the one the thread is producing (memory stays bounded by that, not by the run).

What it keeps exactly as a plain loop over `pages` would:
- order: items arrive in the order produced; an error the producer raised (a failed call, a pagination loop, a
  total that does not match) is raised to the consumer at the same point — after every item produced before it,
  never instead of them — so a run that stopped early fails as it did, and never looks finished;
- the end: the consumer returns only when the producer has finished without error;
- stopping: when the consumer stops early (its generator is closed, or it raises), the producer is told to stop,
  its iterator is closed in its own thread (its `finally` blocks run there), and the consumer waits for it, so no
  thread outlives the fetch and nothing is left using a connection the adapter is about to close.
The producer may have asked for one page more than the consumer used when it stopped; nothing of it is yielded.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = "item", "end", "error"
_POLL = 0.1  # seconds between the producer's looks at the stop flag while the consumer is behind


def prefetched(items: Iterator[T], ahead: int = 1, name: str = "prefetch") -> Iterator[T]:
    handover: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def offer(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                handover.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((_ITEM, item)):
                    return
            offer((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            offer((_ERROR, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = handover.get()
            if kind == _ITEM:
                yield value
            elif kind == _END:
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()
