"""The baseline every bus benchmark divides by: raw pika publish (with confirms) and consume (with acks) of the
same number of messages of the same size, on the same broker, in the same run."""
from __future__ import annotations

import os
import time
import uuid

AMQP = os.environ.get("TONGBAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def raw_pika(messages: int, body: bytes, url: str = AMQP) -> float:
    """Messages per second: publish with confirms, then consume with acks, nothing else."""
    import pika

    queue = f"bench-raw-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    started = time.perf_counter()
    props = pika.BasicProperties(delivery_mode=2)
    for _ in range(messages):
        channel.basic_publish("", queue, body, props, mandatory=True)
    channel.basic_qos(prefetch_count=50)
    got = 0
    for method, _props, _body in channel.consume(queue, inactivity_timeout=5):
        if method is None:
            break
        channel.basic_ack(method.delivery_tag)
        got += 1
        if got == messages:
            break
    elapsed = time.perf_counter() - started
    channel.cancel()
    channel.queue_delete(queue)
    connection.close()
    return messages / elapsed
