"""The consumer's acks and nacks, given by the handler lanes and sent from the connection's thread in one go.

pika's connection is not thread-safe: a lane cannot ack itself, it asks the connection's thread to
(`add_callback_threadsafe`: a wake-up through a pipe, then a poll and a write per ack). With batch push and group
commits, lanes finish in bunches; here the first lane of a bunch asks for one flush and the others only add their
tags, so a bunch costs one wake-up. In the flush the oldest tags still unsettled that are now all settled are
acked with ONE `basic_ack(multiple=True)` naming the newest of them; a tag settled beyond one still in hand is
acked alone at once (waiting for the gap would hold a finished message for as long as a slow one takes, and
count it against the prefetch). A nack (requeue) is always sent alone.

A multiple ack must name a tag that is itself still unacked (RabbitMQ closes the channel with "unknown delivery
tag" otherwise): the tag named is always one acked by this very call, and the tags before it are either acked by
it too or were acked/nacked alone already (no longer outstanding, so the ack does not touch them)."""
from __future__ import annotations

import collections
import threading


class Settler:
    def __init__(self, connection, channel):
        self._connection, self._channel = connection, channel
        self._lock = threading.Lock()
        self._given: list[tuple[int, bool]] = []  # (tag, ok) from the lanes, not sent yet
        self._flush_asked = False
        self._outstanding: collections.deque[int] = collections.deque()  # delivered, not yet in a multiple ack
        self._alone: set[int] = set()  # outstanding tags acked or nacked alone already

    def delivered(self, tag: int) -> None:
        """A message arrived (the connection's thread, in delivery order: tags ascend)."""
        self._outstanding.append(tag)

    def settle(self, tag: int, ok: bool) -> None:
        """Ack (`ok`) or nack with requeue, from any thread. Raises when the connection is gone (the broker
        requeues what was not acked)."""
        with self._lock:
            self._given.append((tag, ok))
            if self._flush_asked:
                return
            self._flush_asked = True
        try:
            self._connection.add_callback_threadsafe(self._flush)
        except BaseException:
            with self._lock:
                self._flush_asked = False
            raise

    def _flush(self) -> None:
        """Send what the lanes gave (the connection's thread)."""
        with self._lock:
            given, self._given, self._flush_asked = self._given, [], False
        channel = self._channel
        if not channel.is_open:
            return  # the broker requeues every unacked message of a closed channel
        ready: set[int] = set()
        for tag, ok in given:
            if ok:
                ready.add(tag)
            else:
                channel.basic_nack(tag, requeue=True)
                self._alone.add(tag)
        newest = None
        outstanding = self._outstanding
        while outstanding:
            head = outstanding[0]
            if head in ready:
                ready.discard(head)
                newest = head
            elif head in self._alone:
                self._alone.discard(head)
            else:
                break  # still in a lane
            outstanding.popleft()
        acks = ([(newest, True)] if newest is not None else []) + [(tag, False) for tag in sorted(ready)]
        for tag in ready:  # beyond a tag still in hand: acked alone
            self._alone.add(tag)
        if not acks:
            return
        # pika's BlockingChannel.basic_ack writes its frame and then polls the socket until it is sent: per ack. The
        # frames but the last go to the channel underneath (pika's own, which BlockingChannel.basic_ack calls too),
        # so the last ack's poll sends them all, in order.
        underneath = getattr(channel, "_impl", None)
        for tag, multiple in acks[:-1]:
            (underneath or channel).basic_ack(tag, multiple=multiple)
        channel.basic_ack(acks[-1][0], multiple=acks[-1][1])
