"""Publishing with asynchronous publisher confirms (pika SelectConnection on a thread of its own).

A blocking channel in confirm mode waits for each message's confirm before sending the next: about 1.6k
messages a second here. This publisher sends a whole batch, then waits once for the broker's acks (which
RabbitMQ sends with `multiple` set, covering many messages at a time). `publish_batch` still returns only when
every message of the batch is confirmed, and raises PublishError naming what was nacked, returned
(unroutable: mandatory flag) or left unconfirmed when the connection died — the caller's promise is unchanged.
"""
from __future__ import annotations

import logging
import threading
from typing import Sequence

import pika
from pika.adapters.select_connection import SelectConnection

from .base import PublishError

log = logging.getLogger("tongban.bus.confirms")


class _Batch:
    def __init__(self, first_tag: int, count: int):
        self.pending = set(range(first_tag, first_tag + count))
        self.nacked: list[int] = []
        self.returned: list[str] = []
        self.failure: str | None = None
        self.done = threading.Event()

    def settle(self, tag: int, multiple: bool, ok: bool) -> None:
        tags = [t for t in self.pending if t <= tag] if multiple else ([tag] if tag in self.pending else [])
        for t in tags:
            self.pending.discard(t)
            if not ok:
                self.nacked.append(t)
        if not self.pending:
            self.done.set()

    def fail(self, reason: str) -> None:
        self.failure = reason
        self.done.set()


class AsyncConfirmPublisher:
    """One connection and channel in confirm mode, driven by its own I/O loop thread. Thread-safe: batches from
    several threads are serialised by a lock (the broker numbers confirms per channel)."""

    def __init__(self, url: str, timeout: float = 120.0):
        self.url, self.timeout = url, timeout
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._connection: SelectConnection | None = None
        self._channel = None
        self._thread: threading.Thread | None = None
        self._next_tag = 1
        self._batch: _Batch | None = None
        self._open_error: str | None = None

    # --- connection lifecycle (I/O loop thread) ------------------------------------------------------
    def _start(self) -> None:
        self._ready.clear()
        self._open_error = None
        params = pika.URLParameters(self.url)
        params.heartbeat = 60
        self._connection = SelectConnection(params, on_open_callback=self._on_open,
                                            on_open_error_callback=self._on_open_error,
                                            on_close_callback=self._on_closed)
        self._thread = threading.Thread(target=self._connection.ioloop.start, name="tongban-confirms", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._open_error:
            raise PublishError(f"cannot open a publishing channel on RabbitMQ: {self._open_error or 'timed out'}")

    def _on_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, connection, error) -> None:
        self._open_error = repr(error)
        self._ready.set()
        connection.ioloop.stop()

    def _on_channel(self, channel) -> None:
        self._channel = channel
        self._next_tag = 1
        channel.add_on_return_callback(self._on_return)
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _frame: self._ready.set())

    def _on_confirm(self, frame) -> None:
        method = frame.method
        if self._batch is not None:
            self._batch.settle(method.delivery_tag, method.multiple, isinstance(method, pika.spec.Basic.Ack))

    def _on_return(self, channel, method, properties, body) -> None:
        # A returned message is then acked by the broker: remember it as unroutable.
        if self._batch is not None:
            self._batch.returned.append(properties.message_id or "?")

    def _on_channel_closed(self, channel, reason) -> None:
        self._channel = None
        if self._batch is not None:
            self._batch.fail(f"channel closed: {reason}")
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _on_closed(self, connection, reason) -> None:
        self._channel = None
        if self._batch is not None:
            self._batch.fail(f"connection closed: {reason}")
        connection.ioloop.stop()

    # --- publishing (caller threads) -----------------------------------------------------------------
    def publish_batch(self, exchange: str, routing_key: str, bodies: Sequence[bytes], message_ids: Sequence[str]) -> None:
        if not bodies:
            return
        with self._lock:
            if self._channel is None or self._connection is None or not self._connection.is_open:
                self.close()
                self._start()
            batch = self._batch = _Batch(self._next_tag, len(bodies))
            self._next_tag += len(bodies)

            def send() -> None:
                try:
                    for body, message_id in zip(bodies, message_ids):
                        props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                                     content_type="application/json", message_id=message_id)
                        self._channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
                except Exception as exc:  # the channel went away mid-batch
                    batch.fail(f"publishing failed: {exc!r}")

            self._connection.ioloop.add_callback_threadsafe(send)
            finished = batch.done.wait(self.timeout)
            self._batch = None
            if batch.failure or not finished:
                self.close()  # unknown state: start afresh next time (resent messages are deduplicated)
                raise PublishError(f"broker did not confirm the batch: {batch.failure or 'timed out'}")
            if batch.returned:
                raise PublishError(f"unroutable: no queue bound to {exchange}/{routing_key} "
                                   f"({len(batch.returned)} of {len(bodies)} messages returned)", unroutable=True)
            if batch.nacked:
                raise PublishError(f"broker refused {len(batch.nacked)} of {len(bodies)} messages on "
                                   f"{exchange}/{routing_key}")

    def close(self) -> None:
        connection, thread = self._connection, self._thread
        self._connection = self._channel = self._thread = None
        if connection is None:
            return
        try:
            if connection.is_open:
                connection.ioloop.add_callback_threadsafe(connection.close)
            else:
                connection.ioloop.add_callback_threadsafe(connection.ioloop.stop)
        except Exception:
            pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
