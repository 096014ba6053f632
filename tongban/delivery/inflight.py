"""The idempotency keys a worker is handling right now, so that two copies of one message never run at once in it.

RabbitMQ gives a message again when the connection it went out on is lost before the ack (a broker restart, a
network blip): the copy can reach another lane of the same worker while the first copy is still being pushed. Both
would pass the already-delivered look-up (neither has committed) and push; the database's unique key still records
one delivery, but the platform would be called twice. A lane holding a key makes the other lane wait for it; the
second copy then finds the delivery recorded and is counted a duplicate. Across workers the platform's own
idempotency (Idempotency-Key) and the unique key cover the same case."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator


class InFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, threading.Event] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Run the block as the only holder of `key` in this worker (waits while another lane holds it)."""
        while True:
            with self._lock:
                other = self._held.get(key)
                if other is None:
                    done = self._held[key] = threading.Event()
                    break
            other.wait()
        try:
            yield
        finally:
            with self._lock:
                del self._held[key]
            done.set()
