"""A lane's runs (tongban.bus.runs), the chains a worker pushes together (tongban.delivery.chains), and the batch
pusher keeping each run whole and in order in one call (tongban.delivery.batching)."""
from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace

from tongban.bus import Delivery
from tongban.bus.envelope import KIND_CASE_EVENT, Envelope
from tongban.bus.runs import handle_run, lane_runs
from tongban.delivery.batching import PushBatcher
from tongban.delivery.chains import consecutive


def _inbox(*items) -> queue.Queue:
    inbox: queue.Queue = queue.Queue()
    for item in items:
        inbox.put(item)
    return inbox


def test_a_run_is_the_head_and_the_items_of_its_key_right_behind_it():
    inbox = _inbox("a1", "a2", "a3", "b1", "a4", "", "", "b2", None, "c1")
    runs = list(lane_runs(inbox, lambda item: item[:1] or None, grouped=True))
    # a4 does not join a1–a3 (b1 stands between); items without a key stay alone; None ends the lane.
    assert runs == [["a1", "a2", "a3"], ["b1"], ["a4"], [""], [""], ["b2"]]


def test_without_grouping_every_item_is_alone():
    runs = list(lane_runs(_inbox("a1", "a2", "b1", None), lambda item: item[:1], grouped=False))
    assert runs == [["a1"], ["a2"], ["b1"]]


def test_a_run_handler_gets_several_items_and_a_failure_returns_them_all():
    singles, many = [], []
    assert handle_run(["x"], str.upper, singles.append, many.append) == [True] and singles == ["X"]

    def settle(deliveries):
        many.append(deliveries)
        return [True, False]

    assert handle_run(["x", "y"], str.upper, singles.append, settle) == [True, False] and many == [["X", "Y"]]

    def broken(deliveries):
        raise RuntimeError("down")

    assert handle_run(["x", "y"], str.upper, singles.append, broken) == [False, False]
    assert handle_run(["x", "y"], str.upper, singles.append, lambda ds: [True]) == [False, False]  # one flag short


def _delivery(case: str, sequence, key: str | None = None) -> Delivery:
    env = Envelope(kind=KIND_CASE_EVENT, source="s", correlation=case, payload={"sequence": sequence},
                   idempotency_key=key or f"{case}#{sequence}")
    return Delivery(env, "q")


def test_a_chain_is_the_leading_events_that_follow_one_another():
    a2, a3, a4, a6 = (_delivery("A", n) for n in (2, 3, 4, 6))
    assert consecutive([a2, a3, a4, a6], 10) == [a2, a3, a4]
    assert consecutive([a2, a3, a4], 2) == [a2, a3]
    assert consecutive([a2, _delivery("B", 3), a3], 10) == [a2]
    assert consecutive([a2, _delivery("A", 3, key="A#2")], 10) == [a2]  # a key twice: a redelivered copy
    assert consecutive([_delivery("A", None), a2], 10) == []
    assert consecutive([_delivery("", 1), a2], 10) == []


class _RecordingPlatform:
    """push_batch answers a receipt per event and keeps each call's keys; the first call waits until released, so
    that the runs submitted meanwhile queue up behind it."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def push_batch(self, events):
        self.entered.set()
        self.release.wait(10)
        self.calls.append([key for _, key in events])
        return [SimpleNamespace(error=None, receipt={"key": key}) for _, key in events]


def test_the_pusher_keeps_each_run_whole_and_in_order_in_one_call():
    platform = _RecordingPlatform()
    pusher = PushBatcher(platform, 5, pushers=1)
    runs = [[(f"{case}{n}", f"{case}{n}") for n in range(1, size + 1)] for case, size in
            (("a", 1), ("b", 3), ("c", 3), ("d", 2))]
    results: dict[str, list] = {}
    threads = [threading.Thread(target=lambda run=run: results.update({run[0][1][0]: pusher.push_run(run)}))
               for run in runs]
    threads[0].start()
    platform.entered.wait(10)  # the pusher holds run a in its first call
    for queued, thread in enumerate(threads[1:], start=1):
        thread.start()
        while pusher._pending.qsize() < queued:  # b, c, d queue up in this order
            time.sleep(0.001)
    platform.release.set()
    for thread in threads:
        thread.join(10)
    # b (3) and c (3) do not fit one call of 5: c is carried whole into the next call, d joins it.
    assert platform.calls == [["a1"], ["b1", "b2", "b3"], ["c1", "c2", "c3", "d1", "d2"]]
    assert results["c"] == [{"key": "c1"}, {"key": "c2"}, {"key": "c3"}]
