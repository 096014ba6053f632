"""The garbage collector during a batch: the router allocates a few objects per record, millions of them, and
CPython's cyclic collector counts those allocations. Every so often it runs a full collection, which walks every
object the process holds — SQLAlchemy's, Alembic's, lxml's modules and the router's caches, hundreds of thousands —
to find cycles the router never makes (its objects are freed by reference counting as each chunk ends). Measured on
the 50k benchmark: about a tenth of the route's CPU.

`quiet_collector()` moves what exists when the batch starts into the permanent generation (`gc.freeze`: never
walked until unfrozen). Collections still run as often, and cycles made during the batch are still collected; only
the walk over what was there before is gone. (A larger young generation as well was measured too: a little less
CPU, but the peak RSS then crept up by about 0.6 MB per 100k records, so it is not used.)"""
from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

_lock = threading.Lock()
_depth = 0


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """No full walk of the heap that existed before the block while it runs (nested or concurrent uses: the
    outermost one unfreezes)."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()
