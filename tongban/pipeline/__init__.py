"""The flow from a legacy system to the bus: fetch, map, detect changes, number, publish (through the outbox)."""
