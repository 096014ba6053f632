"""RabbitMQ transport (pika): declared topology, publisher confirms, manual acks.

pika's BlockingConnection only services heartbeats while it is called, so the consumer keeps the
connection on its own thread and runs handlers on a worker thread, acking through
`add_callback_threadsafe`. Handlers publish onward on a second connection owned by the worker thread.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import zlib
from typing import Callable, Iterator, Sequence

import pika
import pika.exceptions as pex

from tongban.bus.envelope import Envelope

from .acks import Settler
from .base import Bus, Delivery, Handler, PublishError, RunHandler
from .confirms import AsyncConfirmPublisher
from .runs import handle_run, lane_runs
from .topology import RETRY_TIER_HEADER, WAIT_SECONDS, WorkQueue, delay_ms, retry_tier

log = logging.getLogger("tongban.bus.rabbit")

_CONNECTION_ERRORS = (pex.AMQPConnectionError, pex.ChannelClosed, pex.ConnectionClosed, pex.StreamLostError,
                      pex.ChannelWrongStateError, ConnectionError, OSError)


class _Publisher:
    """One connection + confirming channel, reopened on failure."""

    def __init__(self, url: str):
        self.url = url
        self.connection: pika.BlockingConnection | None = None
        self.channel = None

    def _open(self):
        if self.connection is None or self.connection.is_closed or self.channel is None or self.channel.is_closed:
            self.close()
            params = pika.URLParameters(self.url)
            params.heartbeat = 60
            self.connection = pika.BlockingConnection(params)
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
        return self.channel

    def publish(self, exchange: str, routing_key: str, bodies: Sequence[bytes], *, expiration_ms: int | None = None,
                message_ids: Sequence[str] | None = None, prepare: Callable | None = None,
                headers: dict | None = None) -> None:
        """Publish and wait for the confirms; `prepare(channel)` runs first on the same channel (declarations)."""
        for attempt in range(2):  # one reconnect: a connection closed by the broker is not a lost message
            try:
                channel = self._open()
                if prepare is not None:
                    prepare(channel)
                for i, body in enumerate(bodies):
                    props = pika.BasicProperties(
                        delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json",
                        message_id=message_ids[i] if message_ids else None, headers=headers,
                        expiration=str(expiration_ms) if expiration_ms is not None else None)
                    channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
                return
            except pex.UnroutableError as exc:
                raise PublishError(f"unroutable: no queue bound to {exchange}/{routing_key}", unroutable=True) from exc
            except pex.NackError as exc:
                raise PublishError(f"broker refused the message on {exchange}/{routing_key}") from exc
            except _CONNECTION_ERRORS as exc:
                self.close()
                if attempt == 1:
                    raise PublishError(f"connection to RabbitMQ lost while publishing: {exc!r}") from exc
                # Messages published before the failure may be re-sent: the idempotency key absorbs that.
                bodies = list(bodies)

    def close(self) -> None:
        try:
            if self.connection is not None and self.connection.is_open:
                self.connection.close()
        except Exception:
            pass
        self.connection = self.channel = None


# A quorum queue that keeps an expired message until the work exchange's queue has confirmed it (a classic queue's
# dead-lettering is at most once, and a broker restart lost messages on that hop). At-least-once needs reject-publish
# overflow (RabbitMQ 3.10+); with no length limit, nothing is rejected for it.
_AT_LEAST_ONCE = {"x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


@contextlib.contextmanager
def _missing_queues_expected() -> Iterator[None]:
    """pika logs a warning for every channel the broker closes; a 404 for a queue not made yet (a retry tier no
    retry has used, the old wait queue) is the usual answer there, not news."""
    pika_channel_log = logging.getLogger("pika.channel")
    level = pika_channel_log.level
    pika_channel_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pika_channel_log.setLevel(level)


def _back_to_at_least_once(work: WorkQueue) -> dict:
    """The ordering gate's wait queue: its messages come in by its own name, so it names the way back."""
    return {**_AT_LEAST_ONCE, "x-dead-letter-exchange": work.exchange, "x-dead-letter-routing-key": work.routing_key}


def _tier_arguments(work: WorkQueue) -> dict:
    """A retry tier: shared by the exchange's work queues, so no x-dead-letter-routing-key — an expired retry goes
    back with the routing key it was published with, its own work queue's (tongban.bus.topology)."""
    return {**_AT_LEAST_ONCE, "x-dead-letter-exchange": work.exchange}


class RabbitBus(Bus):
    name = "rabbitmq"

    def __init__(self, url: str):
        self.url = url
        self._publisher = _Publisher(url)  # single messages (delays, retries)
        self._batches: AsyncConfirmPublisher | None = None  # batches, confirmed asynchronously
        self._local = threading.local()
        # Work queues with retries this process sent: work → monotonic time by which its last one is back.
        self._delays: dict[WorkQueue, float] = {}
        self._delays_lock = threading.Lock()
        self._tiers_declared: set[tuple[str, int]] = set()  # (exchange, tier) this object declared: made on use
        self._work_known: set[str] = set()  # work queues seen declared (a retry towards them can come back)

    # --- topology -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self) -> Iterator[pika.BlockingConnection]:
        """A connection of its own for one administrative call (declare, depth, peek, purge, delete), closed after."""
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            yield connection
        finally:
            if connection.is_open:
                connection.close()

    def declare(self, work: WorkQueue) -> None:
        with self._connection() as connection:
            ch = connection.channel()
            ch.exchange_declare(work.exchange, "direct", durable=True)
            ch.queue_declare(work.queue, durable=True, arguments={"x-queue-type": "quorum"})
            ch.queue_bind(work.queue, work.exchange, work.routing_key)
            ch.queue_declare(work.wait_queue, durable=True,
                             arguments={**_back_to_at_least_once(work), "x-message-ttl": delay_ms(WAIT_SECONDS)})
            self._retire_legacy_wait(connection, work)
        self._work_known.add(work.queue)

    def _declare_retry_tier(self, channel, work: WorkQueue, tier: int) -> None:
        """The exchange's retry exchange and the one tier a retry is about to wait in (tongban.bus.topology), once
        per tier and bus object. Tiers are made on first use, not by `declare`: all 58 quorum queues took about a
        second to create per exchange (most of it for tiers a run never uses), this is one queue and one binding."""
        if (work.exchange, tier) in self._tiers_declared:
            return
        channel.exchange_declare(work.retry_exchange, "headers", durable=True)
        name = work.retry_queue(tier)
        channel.queue_declare(name, durable=True, arguments=_tier_arguments(work))
        channel.queue_bind(name, work.retry_exchange, arguments={"x-match": "all", RETRY_TIER_HEADER: str(tier)})
        self._tiers_declared.add((work.exchange, tier))

    def _forget_tiers(self, work: WorkQueue) -> None:
        self._tiers_declared = {key for key in self._tiers_declared if key[0] != work.exchange}

    def _retire_legacy_wait(self, connection: pika.BlockingConnection, work: WorkQueue) -> None:
        """The classic wait queue of earlier versions gets no new messages (tongban.bus.topology: migration); what
        it holds dead-letters back to the work queue by its TTL. Delete it only when empty, never with messages."""
        name = work.legacy_wait_queue
        channel = connection.channel()
        try:
            with _missing_queues_expected():
                held = channel.queue_declare(name, passive=True).method.message_count
        except pex.ChannelClosedByBroker:
            return  # 404: never there, or gone already
        if held:
            log.warning("the old classic wait queue %s still holds %d messages; they return to %s by their TTL, "
                        "and the queue is deleted by a later declare once empty", name, held, work.queue)
            return
        try:
            channel.queue_delete(name, if_empty=True)
            log.info("deleted the old classic wait queue %s (empty; replaced by %s)", name, work.wait_queue)
        except pex.ChannelClosedByBroker:
            pass  # 406: a message arrived meanwhile; it drains by its TTL, a later declare deletes the queue

    def _thread_publisher(self) -> _Publisher:
        # pika connections are not thread-safe: one publisher per thread.
        if threading.current_thread() is threading.main_thread():
            return self._publisher
        pub = getattr(self._local, "publisher", None)
        if pub is None:
            pub = self._local.publisher = _Publisher(self.url)
        return pub

    def publish(self, work: WorkQueue, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        if self._batches is None:
            self._batches = AsyncConfirmPublisher(self.url)
        bodies, ids = [e.to_bytes() for e in envelopes], [e.message_id for e in envelopes]
        try:
            self._batches.publish_batch(work.exchange, work.routing_key, bodies, ids)
        except PublishError as exc:
            if exc.unroutable:
                raise
            # One more try on a fresh connection (a broker restart, a forced close): the idempotency keys
            # make a message that went through twice harmless.
            log.warning("publishing again after: %s", exc)
            self._batches.publish_batch(work.exchange, work.routing_key, bodies, ids)

    def publish_delayed(self, work: WorkQueue, envelope: Envelope, seconds: float) -> None:
        """The message returns to the work queue after `seconds` (to DELAY_RESOLUTION_MS): its own TTL, in the
        retry tier of that delay (tongban.bus.topology: at least the delay, at most a quarter more)."""
        ms = delay_ms(seconds)
        body, ids = [envelope.to_bytes()], [envelope.message_id]
        publisher = self._thread_publisher()
        if ms == delay_ms(WAIT_SECONDS):  # the ordering gate's wait: its queue is declared with the work queue
            publisher.publish("", work.wait_queue, body, message_ids=ids)
            return
        if ms == 0:
            publisher.publish(work.exchange, work.routing_key, body, message_ids=ids)
            return

        tier = retry_tier(ms)

        def prepare(channel) -> None:
            # A dead-letter towards a work queue nobody declared would sit in its tier for ever: refuse instead.
            if work.queue not in self._work_known:
                try:
                    channel.queue_declare(work.queue, passive=True)
                except pex.ChannelClosedByBroker as exc:
                    if exc.reply_code == 404:
                        raise PublishError(f"unroutable: work queue {work.queue} is not declared, so a retry "
                                           f"would have nowhere to return", unroutable=True) from exc
                    raise
                self._work_known.add(work.queue)
            self._declare_retry_tier(channel, work, tier)

        headers = {RETRY_TIER_HEADER: str(tier)}
        try:
            publisher.publish(work.retry_exchange, work.routing_key, body, message_ids=ids, prepare=prepare,
                              expiration_ms=ms, headers=headers)
        except PublishError as exc:
            if exc.unroutable and work.queue not in self._work_known:
                raise  # refused by `prepare`: the work queue is not there, a retry would never come back
            # Perhaps the tier this object declared was deleted since (a sandbox torn down and made again: the
            # retry exchange gone, or there but without this tier, unroutable): declare again and send once more.
            self._forget_tiers(work)
            self._work_known.discard(work.queue)
            publisher.publish(work.retry_exchange, work.routing_key, body, message_ids=ids, prepare=prepare,
                              expiration_ms=ms, headers=headers)
        with self._delays_lock:
            until = time.monotonic() + seconds * 1.25 + 1.0  # + the tier's most + the dead-letter hop back
            self._delays[work] = max(until, self._delays.get(work, 0.0))

    def _live_delays(self, work: WorkQueue) -> bool:
        """Whether a retry this process sent for `work` may still be on its way back."""
        with self._delays_lock:
            until = self._delays.get(work)
            if until is not None and until < time.monotonic():
                del self._delays[work]
                return False
            return until is not None

    def queues(self, work: WorkQueue) -> list[str]:
        """The work and gate queues and the exchange's retry tiers (shared with its other work queues). A tier is
        made by the first retry that waits in it, so some of these may not exist: `depths` counts them 0, deleting
        or purging one that is not there is no error."""
        return list(work.fixed_queues)

    def depths(self, names: Sequence[str]) -> dict[str, int]:
        """Depth of each queue over one connection (a queue that does not exist holds 0)."""
        result: dict[str, int] = {}
        with self._connection() as connection, _missing_queues_expected():
            channel = connection.channel()
            for name in names:
                try:
                    result[name] = channel.queue_declare(name, passive=True).method.message_count
                except pex.ChannelClosedByBroker:
                    result[name] = 0
                    channel = connection.channel()
        return result

    # --- consuming ------------------------------------------------------------------------------
    def consume(self, work: WorkQueue, handler: Handler, *, stop: threading.Event, prefetch: int = 20,
                idle_exit: float | None = None, lanes: int = 1, run_handler: RunHandler | None = None) -> None:
        backoff = 0.5
        while not stop.is_set():
            attempt_started = time.monotonic()
            try:
                self._consume_once(work, handler, stop=stop, prefetch=prefetch, idle_exit=idle_exit, lanes=max(1, lanes),
                                   run_handler=run_handler)
                return
            except _CONNECTION_ERRORS as exc:
                if time.monotonic() - attempt_started > 30:
                    backoff = 0.5  # it was up for a while: a new outage starts from the short wait again
                # Unacked messages go back to the queue on the broker's side; reconnect and go on.
                log.warning("consumer connection lost (%r); reconnecting in %.1fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10)

    def _consume_once(self, work, handler, *, stop, prefetch, idle_exit, lanes, run_handler=None) -> None:
        params = pika.URLParameters(self.url)
        params.heartbeat = 30
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=prefetch)
        # Handler lanes: messages with the same correlation (one case) always take the same lane, so a
        # worker never handles two events of one case at once; different cases go in parallel.
        inboxes: list[queue.Queue] = [queue.Queue() for _ in range(lanes)]
        in_flight = [0]
        in_flight_lock = threading.Lock()
        settler = Settler(connection, channel)  # acks sent in bunches from this thread (tongban.bus.acks)

        def on_message(ch, method, properties, body):
            # Read once, here (the lane is chosen by the case); a body that is not an envelope fails in its lane.
            try:
                envelope = Envelope.from_bytes(body)
                key = envelope.correlation or properties.message_id or ""
            except Exception:
                envelope, key = None, ""
            with in_flight_lock:
                in_flight[0] += 1
            settler.delivered(method.delivery_tag)
            inboxes[zlib.crc32(key.encode("utf-8")) % lanes].put(
                (method.delivery_tag, method.redelivered, envelope, body))

        def deliver(item) -> Delivery:
            _tag, redelivered, envelope, body = item
            return Delivery(envelope if envelope is not None else Envelope.from_bytes(body), work.queue, redelivered)

        def lane_loop(inbox: queue.Queue):
            for run in lane_runs(inbox, lambda item: item[2].correlation if item[2] is not None else None,
                                 run_handler is not None):
                oks = handle_run(run, deliver, handler, run_handler)
                with in_flight_lock:
                    in_flight[0] -= len(run)
                try:
                    for item, ok in zip(run, oks):
                        settler.settle(item[0], ok)
                except Exception:
                    return  # connection gone: the broker requeues what we did not ack

        threads = [threading.Thread(target=lane_loop, args=(inbox,), name=f"tongban-lane-{i}", daemon=True)
                   for i, inbox in enumerate(inboxes)]
        for thread in threads:
            thread.start()
        channel.basic_consume(work.queue, on_message)
        last_activity = time.monotonic()
        try:
            while not stop.is_set():
                connection.process_data_events(time_limit=0.2)
                if in_flight[0]:
                    last_activity = time.monotonic()
                elif idle_exit is not None and time.monotonic() - last_activity > idle_exit:
                    if self._quiet(channel, work):
                        break
                    last_activity = time.monotonic()
                if not all(t.is_alive() for t in threads):
                    break
        finally:
            # Stop taking messages; what waits in the lanes unhandled goes back to the queue when the
            # connection closes. The message in hand in each lane is finished (SIGTERM: finish, then exit),
            # servicing the connection meanwhile so its ack can go out.
            for inbox in inboxes:
                while True:
                    try:
                        inbox.get_nowait()
                    except queue.Empty:
                        break
                inbox.put(None)
            deadline = time.monotonic() + 30
            while any(t.is_alive() for t in threads) and time.monotonic() < deadline and connection.is_open:
                connection.process_data_events(time_limit=0.1)
            try:
                connection.close()
            except Exception:
                pass

    def _quiet(self, channel, work: WorkQueue) -> bool:
        """No message anywhere in the work queue's family: none due back from a retry this process sent, none in
        the work or gate queue. (The retry tiers are shared by the exchange's work queues: their depth says
        nothing about this one.)"""
        if self._live_delays(work):
            return False
        return all(channel.queue_declare(name, passive=True).method.message_count == 0 for name in work.own_queues)

    def depth(self, queue_name: str) -> int:
        with self._connection() as connection:
            try:
                return connection.channel().queue_declare(queue_name, passive=True).method.message_count
            except pex.ChannelClosedByBroker:
                return 0

    def oldest_created_at(self, queue_name: str) -> str | None:
        """Peek at the head message (get, then return it unacked). AMQP has no peek; the message goes back to
        the queue marked redelivered, which the workers' idempotency check makes harmless."""
        with self._connection() as connection:
            try:
                channel = connection.channel()
                method, _props, body = channel.basic_get(queue_name, auto_ack=False)
                if method is None:
                    return None
                channel.basic_nack(method.delivery_tag, requeue=True)
                return Envelope.from_bytes(body).created_at
            except pex.ChannelClosedByBroker:
                return None

    def purge(self, work: WorkQueue) -> None:
        with self._connection() as connection, _missing_queues_expected():
            ch = connection.channel()
            for name in self.queues(work):
                try:
                    ch.queue_purge(name)
                except pex.ChannelClosedByBroker:
                    ch = connection.channel()

    def delete(self, work: WorkQueue) -> None:
        """Remove the work queue, its gate, its exchange and the exchange's retry tiers (tests, benchmarks, retired
        sandboxes). Deleting a tier never made is no error (RabbitMQ answers delete-ok)."""
        with self._connection() as connection:
            channel = connection.channel()
            for name in self.queues(work):
                channel.queue_delete(name)
            channel.exchange_delete(work.retry_exchange)
            channel.exchange_delete(work.exchange)
        self._forget_tiers(work)
        self._work_known.discard(work.queue)

    def close(self) -> None:
        self._publisher.close()
        if self._batches is not None:
            self._batches.close()
        pub = getattr(self._local, "publisher", None)
        if pub is not None:
            pub.close()
