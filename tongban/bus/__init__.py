"""The bus: messages between the stages, on RabbitMQ (pika) or, for the embedded default, on a durable
local queue in the tongban store. Both speak the same small interface (tongban.bus.base.Bus)."""
from .base import Bus, BusError, Delivery, PublishError  # noqa: F401
from .select import open_bus  # noqa: F401
