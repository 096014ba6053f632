"""Both bus transports keep the same promises: confirmed publish, ack after the handler, requeue on failure,
delayed redelivery."""
from __future__ import annotations

import threading
import time

import pytest

from tongban.bus.base import PublishError
from tongban.bus.local import LocalBus
from tongban.bus.topology import WorkQueue
from tongban.bus.envelope import KIND_CASE_EVENT, Envelope


def _env(i: int) -> Envelope:
    return Envelope(kind=KIND_CASE_EVENT, source="s", idempotency_key=f"s:{i}:x", payload={"i": i})


def _drain(bus, work, handler, idle=0.8):
    stop = threading.Event()
    bus.consume(work, handler, stop=stop, prefetch=10, idle_exit=idle)


@pytest.fixture(params=["rabbitmq", "inprocess"])
def bus_and_work(request, sqlite_store):
    if request.param == "rabbitmq":
        return request.getfixturevalue("rabbit_bus"), request.getfixturevalue("rabbit_work")
    from tongban.bus.topology import cases_work

    return LocalBus(sqlite_store), cases_work("local")


def test_everything_published_is_consumed_once_in_order(bus_and_work):
    bus, work = bus_and_work
    bus.declare(work)
    bus.publish(work, [_env(i) for i in range(50)])
    seen = []
    _drain(bus, work, lambda d: seen.append(d.envelope.payload["i"]))
    assert seen == list(range(50))
    assert bus.depth(work.queue) == 0


def test_a_failing_handler_returns_the_message(bus_and_work):
    bus, work = bus_and_work
    bus.declare(work)
    bus.publish(work, [_env(1)])
    calls = []

    def flaky(delivery):
        calls.append(delivery.redelivered)
        if len(calls) == 1:
            raise RuntimeError("worker crashed mid-message")

    _drain(bus, work, flaky)
    assert calls == [False, True]  # returned to the queue, then delivered again, marked redelivered


def test_delayed_publish_arrives_later(bus_and_work):
    bus, work = bus_and_work
    bus.declare(work)
    started = time.monotonic()
    bus.publish_delayed(work, _env(7), 1.0)
    arrived = []
    _drain(bus, work, lambda d: arrived.append(time.monotonic() - started), idle=2.5)
    assert len(arrived) == 1 and arrived[0] >= 0.9


def test_a_shorter_delay_published_later_arrives_first(bus_and_work):
    """Each retry keeps the delay the policy computed: a 0.3 s retry is not held behind a 0.9 s one sent before it
    (on RabbitMQ they wait in different tiers, each message with its own TTL)."""
    bus, work = bus_and_work
    bus.declare(work)
    bus.publish_delayed(work, _env(1), 0.9)
    bus.publish_delayed(work, _env(2), 0.3)
    seen = []
    _drain(bus, work, lambda d: seen.append(d.envelope.payload["i"]))
    assert seen == [2, 1]


def test_a_rabbitmq_retry_waits_in_its_tier_with_the_policys_delay_as_its_own_ttl(rabbit_bus, rabbit_work):
    import random

    from tongban.bus.topology import delay_ms, retry_tier
    from tongban.delivery.retry import RedeliveryPolicy

    rabbit_bus.declare(rabbit_work)
    delay = RedeliveryPolicy(rng=random.Random(7)).delay(3)  # 4 s doubled from 1 s, plus jitter
    assert delay_ms(delay) % 1000  # jittered: not a whole step
    rabbit_bus.publish_delayed(rabbit_work, _env(3), delay)
    tier = rabbit_work.retry_queue(retry_tier(delay_ms(delay)))
    assert tier in rabbit_bus.queues(rabbit_work)
    with rabbit_bus._connection() as connection:  # the broker holds the message in that tier, with that TTL
        channel = connection.channel()
        method, props, _body = channel.basic_get(tier, auto_ack=False)
        assert method is not None and abs(int(props.expiration) - delay * 1000) <= 5
        channel.basic_nack(method.delivery_tag, requeue=True)
        assert sum(rabbit_bus.depths(rabbit_work.retry_queues).values()) == 1


def test_retries_of_two_work_queues_on_one_exchange_share_the_tiers_and_go_back_to_their_own(rabbit_bus):
    """The flowback's district queues share one exchange, hence one set of retry tiers: a retry returns to the
    queue it came from, not to its neighbour's."""
    import uuid

    prefix = f"test-shared-{uuid.uuid4().hex[:8]}"
    north, south = WorkQueue(prefix, f"{prefix}.north", "north"), WorkQueue(prefix, f"{prefix}.south", "south")
    try:
        rabbit_bus.declare(north)
        rabbit_bus.declare(south)
        assert north.retry_queues == south.retry_queues
        rabbit_bus.publish_delayed(north, _env(1), 0.3)
        rabbit_bus.publish_delayed(south, _env(2), 0.3)
        rabbit_bus.publish_delayed(north, _env(3), 0.5)
        seen: dict[str, list[int]] = {"north": [], "south": []}
        _drain(rabbit_bus, north, lambda d: seen["north"].append(d.envelope.payload["i"]))
        _drain(rabbit_bus, south, lambda d: seen["south"].append(d.envelope.payload["i"]))
        assert seen == {"north": [1, 3], "south": [2]}
    finally:
        rabbit_bus.delete(north)
        rabbit_bus.delete(south)


def test_a_retry_tier_is_made_by_its_first_retry_and_made_again_if_it_was_deleted(rabbit_bus, rabbit_work):
    """`declare` makes none of the 58 tiers (a second per exchange); the first retry towards a tier makes it. A tier
    deleted behind this process's back (a sandbox torn down and made again) is made again: the retry comes back,
    neither refused as unroutable nor lost."""
    import pika

    from tests.conftest import AMQP_URL
    from tongban.bus.topology import delay_ms, retry_tier

    rabbit_bus.declare(rabbit_work)
    assert not any(_exists(rabbit_bus, name) for name in rabbit_work.retry_queues)
    assert sum(rabbit_bus.depths(rabbit_bus.queues(rabbit_work)).values()) == 0  # tiers never made count 0
    rabbit_bus.publish_delayed(rabbit_work, _env(1), 0.3)
    used = rabbit_work.retry_queue(retry_tier(delay_ms(0.3)))
    assert [name for name in rabbit_work.retry_queues if _exists(rabbit_bus, name)] == [used]
    seen = []
    _drain(rabbit_bus, rabbit_work, lambda d: seen.append(d.envelope.payload["i"]))
    for deleted in ("tier", "tier and retry exchange"):
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))  # someone else's teardown
        connection.channel().queue_delete(used)
        if deleted != "tier":
            connection.channel().exchange_delete(rabbit_work.retry_exchange)
        connection.close()
        rabbit_bus.publish_delayed(rabbit_work, _env(len(seen) + 1), 0.3)
        _drain(rabbit_bus, rabbit_work, lambda d: seen.append(d.envelope.payload["i"]))
    assert seen == [1, 2, 3]


def test_a_delay_towards_an_undeclared_work_queue_is_refused_not_dropped(rabbit_bus):
    from tongban.bus.topology import cases_work, retry_tier
    import uuid

    nowhere = cases_work(f"test-undeclared-{uuid.uuid4().hex[:8]}")
    with pytest.raises(PublishError, match="unroutable: work queue .* is not declared"):
        rabbit_bus.publish_delayed(nowhere, _env(4), 2.5)
    assert not _exists(rabbit_bus, nowhere.retry_queue(retry_tier(2500)))


def test_unroutable_publish_is_an_error_not_a_loss(rabbit_bus, rabbit_work):
    unbound = WorkQueue(rabbit_work.exchange, rabbit_work.queue, "nobody-listens-here")
    rabbit_bus.declare(rabbit_work)
    with pytest.raises(PublishError, match="unroutable"):
        rabbit_bus.publish(unbound, [_env(1)])


def test_local_queue_survives_a_new_process_handle(sqlite_store):
    from tongban.bus.topology import cases_work
    from tongban.store import Store

    work = cases_work("durable")
    LocalBus(sqlite_store).publish(work, [_env(1), _env(2)])
    reopened = LocalBus(Store(sqlite_store.url))  # as `tongban worker` would, in another process
    seen = []
    _drain(reopened, work, lambda d: seen.append(d.envelope.payload["i"]))
    assert seen == [1, 2]


def test_status_can_see_the_oldest_waiting_message(bus_and_work):
    bus, work = bus_and_work
    bus.declare(work)
    assert bus.oldest_created_at(work.queue) is None
    first, second = _env(1), _env(2)
    bus.publish(work, [first, second])
    assert bus.oldest_created_at(work.queue) == first.created_at
    assert bus.depth(work.queue) == 2  # looking did not take anything away
    seen = []
    _drain(bus, work, lambda d: seen.append(d.envelope.payload["i"]))
    assert sorted(seen) == [1, 2]


def test_batches_survive_the_broker_closing_every_connection():
    from tests.support import close_vhost_connections, rabbit_vhost
    from tongban.bus.rabbit import RabbitBus
    from tongban.bus.topology import cases_work

    with rabbit_vhost() as url:  # only this vhost's connections are closed: tests running beside keep theirs
        bus, work = RabbitBus(url), cases_work("test-closed")  # the vhost, deleted afterwards, takes its queues
        try:
            bus.declare(work)
            bus.publish(work, [_env(i) for i in range(300)])
            assert close_vhost_connections(url, "test: broker restart") >= 1
            bus.publish(work, [_env(i) for i in range(300, 600)])  # reconnects, then confirms
            seen = set()
            _drain(bus, work, lambda d: seen.add(d.envelope.payload["i"]))
        finally:
            bus.close()
    assert seen == set(range(600))


def _old_classic_wait_queue(url: str, work: WorkQueue, messages: int) -> None:
    """The topology of earlier versions: a classic wait queue dead-lettering (at most once) to the work queue."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.exchange_declare(work.exchange, "direct", durable=True)
        channel.queue_declare(work.queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(work.queue, work.exchange, work.routing_key)
        channel.queue_declare(work.legacy_wait_queue, durable=True, arguments={
            "x-dead-letter-exchange": work.exchange, "x-dead-letter-routing-key": work.routing_key,
            "x-message-ttl": 300})
        for i in range(messages):
            channel.basic_publish("", work.legacy_wait_queue, _env(i).to_bytes())
    finally:
        connection.close()


def _exists(bus, name: str) -> bool:
    import pika.exceptions as pex

    with bus._connection() as connection:
        try:
            connection.channel().queue_declare(name, passive=True)
            return True
        except pex.ChannelClosedByBroker:
            return False


def test_upgrading_a_deployment_keeps_what_the_old_wait_queue_holds_then_retires_it(rabbit_bus, rabbit_work):
    """The ordering gate's wait queue is now a quorum queue under a new name (at-least-once dead-lettering); an old
    classic one is never deleted with messages in it: they return to the work queue, then the queue goes."""
    _old_classic_wait_queue(rabbit_bus.url, rabbit_work, messages=3)
    rabbit_bus.declare(rabbit_work)  # the upgrade: the old queue still holds its messages, so it stays
    assert _exists(rabbit_bus, rabbit_work.legacy_wait_queue)
    time.sleep(1.0)  # their TTL runs out: back to the work queue
    rabbit_bus.declare(rabbit_work)
    assert not _exists(rabbit_bus, rabbit_work.legacy_wait_queue)
    seen = []
    _drain(rabbit_bus, rabbit_work, lambda d: seen.append(d.envelope.payload["i"]))
    assert sorted(seen) == [0, 1, 2]
    rabbit_bus.publish_delayed(rabbit_work, _env(7), 0.2)  # the gate's wait goes round the new queue
    _drain(rabbit_bus, rabbit_work, lambda d: seen.append(d.envelope.payload["i"]))
    assert seen[-1] == 7 and _exists(rabbit_bus, rabbit_work.wait_queue)
