"""The consumer's acks in bunches (tongban.bus.acks): every message settled exactly once, a multiple ack never naming
a tag that is no longer outstanding (RabbitMQ would close the channel), nacks alone."""
from __future__ import annotations

from tongban.bus.acks import Settler


class Broker:
    """A channel that keeps RabbitMQ's books: a multiple ack settles every outstanding tag up to the one named,
    which must itself be outstanding."""

    def __init__(self):
        self.outstanding: set[int] = set()
        self.acked: list[int] = []
        self.nacked: list[int] = []
        self.frames = 0
        self.is_open = True

    def basic_ack(self, tag, multiple=False):
        assert tag in self.outstanding, f"unknown delivery tag {tag}"
        self.frames += 1
        done = {t for t in self.outstanding if t <= tag} if multiple else {tag}
        self.outstanding -= done
        self.acked += sorted(done)

    def basic_nack(self, tag, requeue=True):
        assert tag in self.outstanding and requeue
        self.frames += 1
        self.outstanding.discard(tag)
        self.nacked.append(tag)


class Connection:
    def __init__(self):
        self.callbacks = []

    def add_callback_threadsafe(self, callback):
        self.callbacks.append(callback)

    def run(self):
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


def _settler(tags):
    broker, connection = Broker(), Connection()
    settler = Settler(connection, broker)
    for tag in tags:
        broker.outstanding.add(tag)
        settler.delivered(tag)
    return settler, broker, connection


def test_a_bunch_settled_together_is_one_wake_up_and_one_multiple_ack():
    settler, broker, connection = _settler(range(1, 11))
    for tag in range(1, 11):
        settler.settle(tag, True)
    assert len(connection.callbacks) == 1
    connection.run()
    assert broker.acked == list(range(1, 11)) and broker.frames == 1 and not broker.outstanding


def test_tags_beyond_one_still_in_hand_are_acked_at_once_and_the_gap_closes_later():
    settler, broker, connection = _settler(range(1, 8))
    for tag in (1, 2, 4, 6):
        settler.settle(tag, True)
    connection.run()
    assert sorted(broker.acked) == [1, 2, 4, 6] and broker.outstanding == {3, 5, 7}
    settler.settle(3, False)  # a failed handler: back to the queue
    settler.settle(5, True)
    connection.run()
    assert broker.nacked == [3] and broker.outstanding == {7}
    settler.settle(7, True)
    connection.run()
    assert sorted(broker.acked) == [1, 2, 4, 5, 6, 7] and not broker.outstanding


def test_every_order_of_settling_settles_each_tag_once():
    import random

    rng = random.Random(7)
    for _ in range(200):
        tags = list(range(1, 30))
        settler, broker, connection = _settler(tags)
        order = tags[:]
        rng.shuffle(order)
        fails = set(rng.sample(tags, 3))
        for i, tag in enumerate(order):
            settler.settle(tag, tag not in fails)
            if rng.random() < 0.3:
                connection.run()
        connection.run()
        assert sorted(broker.acked + broker.nacked) == tags and sorted(broker.nacked) == sorted(fails)
        assert not broker.outstanding


def test_nothing_is_sent_on_a_closed_channel():
    settler, broker, connection = _settler([1, 2])
    broker.is_open = False
    settler.settle(1, True)
    connection.run()
    assert broker.frames == 0
