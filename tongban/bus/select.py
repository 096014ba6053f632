"""Choosing the transport: RabbitMQ when one answers (or when asked for), the local queue otherwise."""
from __future__ import annotations

import logging

from tongban.settings import Settings, load

from .base import Bus, BusError

log = logging.getLogger("tongban.bus")


def rabbitmq_answers(url: str, timeout: float = 2.0) -> bool:
    import pika

    params = pika.URLParameters(url)
    params.socket_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
        return True
    except Exception:  # any failure means "not usable now"; the caller says what it chose
        return False


def open_bus(settings: Settings | None = None, *, announce=print) -> Bus:
    settings = settings or load()
    choice = settings.bus
    if choice not in ("auto", "rabbitmq", "inprocess"):
        raise BusError(f"TONGBAN_BUS must be auto, rabbitmq or inprocess, not {choice!r}")
    if choice in ("auto", "rabbitmq") and rabbitmq_answers(settings.amqp_url):
        from .rabbit import RabbitBus

        return RabbitBus(settings.amqp_url)
    if choice == "rabbitmq":
        raise BusError(f"RabbitMQ does not answer at {_safe(settings.amqp_url)} and TONGBAN_BUS=rabbitmq")
    from tongban.store import open_store

    from .local import LocalBus

    if announce:
        announce(f"notice: no RabbitMQ answers at {_safe(settings.amqp_url)}; using the in-process bus "
                 f"(durable queue in {settings.db_url.split('///')[-1]})")
    return LocalBus(open_store(settings.db_url))


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url
