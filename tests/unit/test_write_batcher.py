"""The committer (group commit): a caller hears its write is done only once the transaction holding it committed,
also when a failed batch is retried one write at a time; and the committer keeps serving afterwards."""
from __future__ import annotations

import contextlib
import threading
import time
import types

from tongban.store.batcher import WriteBatcher


class FlakyStore:
    """A store whose commit fails for a transaction holding the write named 'commit fails'."""

    def __init__(self):
        self.committed: list[str] = []

    @contextlib.contextmanager
    def write(self):
        conn = types.SimpleNamespace(writes=[])
        yield conn
        if "commit fails" in conn.writes:
            raise RuntimeError("the commit failed")
        self.committed.extend(conn.writes)


def _write(name: str):
    def fn(conn):
        if name == "bad":
            raise ValueError("a bad write")
        conn.writes.append(name)
        return name
    return fn


def _in_thread(batcher: WriteBatcher, fn, outcomes: dict, name: str) -> threading.Thread:
    def run():
        try:
            outcomes[name] = batcher.write(fn)
        except Exception as exc:  # the caller's view of its write
            outcomes[name] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_write_whose_commit_fails_is_not_reported_done():
    store = FlakyStore()
    batcher = WriteBatcher(store)
    hold, taken = threading.Event(), threading.Event()
    outcomes: dict = {}
    first = _in_thread(batcher, lambda conn: taken.set() or hold.wait(10), outcomes, "first")
    assert taken.wait(10)  # the committer is busy: the next three queue up and make one batch
    threads = [_in_thread(batcher, _write(name), outcomes, name) for name in ("bad", "commit fails", "good")]
    deadline = time.monotonic() + 10
    while batcher._pending.qsize() < 3 and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.01)
    hold.set()
    for thread in [first, *threads]:
        thread.join(10)
    # The batch failed (the bad write), so each write was tried alone.
    assert isinstance(outcomes["bad"], ValueError)
    assert isinstance(outcomes["commit fails"], RuntimeError), outcomes["commit fails"]
    assert outcomes["good"] == "good"
    assert store.committed == ["good"]
    # The committer still serves.
    done: dict = {}
    _in_thread(batcher, _write("later"), done, "later").join(10)
    assert done == {"later": "later"}
