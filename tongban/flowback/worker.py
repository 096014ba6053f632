"""The district delivery worker: consume each district's flowback queue and hand every record to that district's
sink, with the platform delivery's guarantees:

1. idempotent consumer — a message already settled (delivered, held or parked) is acked and nothing more;
   an idempotency key already delivered (the shared `deliveries` table, the one idempotency store: the same
   record in another batch, a replay) is recorded as held by the sink and not sent again; a sink that answers
   that it holds the key already (409, the file exists) is recorded the same way;
2. transient failures go back to the queue through the bus's delay queues with backoff (the one retry ladder,
   tongban.delivery.retry.RedeliveryPolicy), and are parked (the shared `parked` table) when the policy gives up;
   a district's 4xx rejection is parked at once with its reason;
3. the message is acked only after its outcome is in the store and the ledger.
"""
from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import delete, select

from tongban.audit import ledger
from tongban.operator import quarantine as q
from tongban.bus import Bus, Delivery
from tongban.delivery.retry import RedeliveryPolicy
from tongban.bus.envelope import KIND_FLOWBACK, Envelope, utcnow
from tongban.store.at_rest import reveal
from tongban.audit.ledger import LedgerEvent
from tongban.store import Store
from tongban.store.tables import deliveries

from .config import TARGETS, SinksConfig
from .sinks import Sink, SinkRejected, SinkTransient, build_sink
from .tables import flowback_deliveries
from .topology import declare, family_depth, flowback_prefix, work_queue

log = logging.getLogger("tongban.flowback.worker")


@dataclass
class DeliverStats:
    delivered: int = 0
    held: int = 0  # the district already had it (same idempotency key delivered before)
    retried: int = 0
    parked: int = 0
    already_settled: int = 0


class DistrictDeliverer:
    def __init__(self, *, store: Store, bus: Bus, sinks: SinksConfig | dict[str, Sink],
                 policy: RedeliveryPolicy | None = None, prefix: str | None = None):
        self.store, self.bus, self.prefix = store, bus, prefix or flowback_prefix()
        if isinstance(sinks, SinksConfig):
            self.policy = policy or sinks.retry.policy()
            self._sink_config: SinksConfig | None = sinks
            self.sinks: dict[str, Sink] = {}
        else:
            self.policy = policy or RedeliveryPolicy()
            self._sink_config = None
            self.sinks = dict(sinks)
        self.stats = DeliverStats()
        self._lock = threading.Lock()

    def sink(self, target: str) -> Sink:
        with self._lock:
            if target not in self.sinks:
                if self._sink_config is None:
                    raise KeyError(f"no sink for {target}")
                self.sinks[target] = build_sink(self._sink_config.for_target(target), target)
            return self.sinks[target]

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    # --- outcomes ------------------------------------------------------------------------------------
    @staticmethod
    def _event(hop: str, env: Envelope, detail: dict) -> LedgerEvent:
        record = env.payload.get("record", {})
        return LedgerEvent(hop, {"batch_id": env.payload.get("batch_id"), "target": env.payload.get("target"), **detail},
                           system=env.source, message_id=env.message_id, idempotency_key=env.idempotency_key,
                           case_number=env.correlation, source_key=record.get("ROWGUID"))

    @staticmethod
    def _row(env: Envelope, status: str, sink: str | None, receipt: dict | None) -> dict:
        p = env.payload
        return {"message_id": env.message_id, "idempotency_key": env.idempotency_key, "batch_id": p["batch_id"],
                "run_id": p["run_id"], "target": p["target"], "status": status, "sink": sink,
                "receipt": json.dumps(receipt, ensure_ascii=False) if receipt is not None else None, "at": utcnow()}

    def _settle(self, conn, env: Envelope, status: str, sink: str | None, receipt: dict | None) -> None:
        # One row per message: a replayed parked message replaces its "parked" row with its new outcome.
        conn.execute(delete(flowback_deliveries).where(flowback_deliveries.c.message_id == env.message_id))
        conn.execute(flowback_deliveries.insert().values(**self._row(env, status, sink, receipt)))
        if status in ("delivered", "held") and self._delivered_as(conn, env) is None:
            # The one idempotency store: the district has this key now (held: the sink said it had it already).
            conn.execute(deliveries.insert().values(
                # No case_number: the platform reconciliation (tongban.audit.reconcile) counts cases by it.
                idempotency_key=env.idempotency_key, message_id=env.message_id, case_number=None, sequence=None, receipt=json.dumps(receipt or {}, ensure_ascii=False), delivered_at=utcnow()))

    @staticmethod
    def _delivered_as(conn, env: Envelope) -> str | None:
        """The message id under which this idempotency key was delivered already, if it was."""
        return conn.execute(select(deliveries.c.message_id).where(
            deliveries.c.idempotency_key == env.idempotency_key)).scalar()

    def _park(self, env: Envelope, reason: str, sink: str | None) -> None:
        with self.store.write() as conn:
            q.park(conn, message_id=env.message_id, idempotency_key=env.idempotency_key, system=env.source,
                   case_number=env.correlation, reason=reason, envelope_json=env.to_bytes().decode("utf-8"))
            self._settle(conn, env, "parked", sink, {"reason": reason})
            ledger.append(conn, [self._event("parked", env, {"reason": reason, "attempts": env.attempt})])
        self._count("parked")

    def _retry(self, env: Envelope, reason: str, retry_after: float | None, sink: str) -> None:
        # The one redelivery step (tongban.delivery.retry): parked once the attempts are spent or when no delay
        # queue takes it, else sent round the district queue's delay queue; only the ledger event is this worker's.
        detail = self.policy.redeliver(env, reason, retry_after, bus=self.bus,
                                       work=work_queue(env.payload["target"], self.prefix),
                                       park=lambda parked, why: self._park(parked, why, sink))
        if detail is None:
            return
        ledger.record(self.store, self._event("retried", env, detail))
        self._count("retried")

    # --- the handler ---------------------------------------------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        env = delivery.envelope
        with self.store.read() as conn:
            settled = conn.execute(select(flowback_deliveries.c.status)
                                   .where(flowback_deliveries.c.message_id == env.message_id)).scalar()
            earlier = None if settled and settled != "parked" else self._delivered_as(conn, env)
        if settled and not (settled == "parked" and env.replay_of):
            self._count("already_settled")  # redelivered after a crash between settling and ack
            return
        if earlier:
            self._settle_duplicate(env, earlier)
            return
        target = env.payload["target"]
        sink = self.sink(target)
        try:
            receipt = sink.deliver(env)
        except SinkTransient as exc:
            self._retry(env, str(exc), exc.retry_after, sink.describe)
            return
        except SinkRejected as exc:
            self._park(env, f"rejected by the district sink: {exc.reason}", sink.describe)
            return
        with self.store.write() as conn:
            # Checked again inside the write transaction: a competing consumer may have delivered the same key.
            earlier = self._delivered_as(conn, env)
            held = bool(earlier) or bool(receipt.get("duplicate_at_sink"))
            self._settle(conn, env, "held" if held else "delivered", sink.describe, receipt)
            hop = "duplicate" if held else "flowback_delivered"
            ledger.append(conn, [self._event(hop, env, {"sink": sink.describe, "attempts": env.attempt + 1,
                                                        "duplicate_at_sink": bool(receipt.get("duplicate_at_sink"))})])
        self._count("held" if held else "delivered")

    def _settle_duplicate(self, env: Envelope, earlier: str) -> None:
        with self.store.write() as conn:
            self._settle(conn, env, "held", None, {"delivered_as": earlier})
            ledger.append(conn, [self._event("duplicate", env, {"delivered_as": earlier,
                                                                "replay": env.replay_of is not None})])
        self._count("held")

    # --- running -------------------------------------------------------------------------------------
    def run(self, *, targets: list[str] | None = None, idle_exit: float = 0.5, workers: int = 8,
            stop: threading.Event | None = None, prefetch: int = 50) -> DeliverStats:
        """Deliver until every district queue (and its delay queues) is empty, consuming the busy queues
        in parallel; with `stop`, return when it is set."""
        stop = stop or threading.Event()
        targets = targets or list(TARGETS)
        for target in targets:
            declare(self.bus, work_queue(target, self.prefix))
        while not stop.is_set():
            busy = [t for t in targets if family_depth(self.bus, work_queue(t, self.prefix)) > 0]
            if not busy:
                break
            with ThreadPoolExecutor(max_workers=min(workers, len(busy)), thread_name_prefix="flowback") as pool:
                futures = [pool.submit(self.bus.consume, work_queue(t, self.prefix), self.handle, stop=stop,
                                       prefetch=prefetch, idle_exit=idle_exit) for t in busy]
                for future in futures:
                    future.result()
        return self.stats

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()


def replay_parked_flowback(store: Store, bus: Bus, *, prefix: str | None = None, system: str | None = None,
                           ids: list[int] | None = None) -> str:
    """Re-publish parked flowback messages to their own district queues: `tongban parked replay` (the one replay,
    tongban.operator.actions.replay_parked) restricted to flowback records."""
    from tongban.operator.actions import replay_parked
    from tongban.store.tables import parked

    query = select(parked.c.id, parked.c.envelope).where(parked.c.status == q.OPEN)
    if system:
        query = query.where(parked.c.system == system)
    if ids:
        query = query.where(parked.c.id.in_(ids))
    with store.read() as conn:
        flowback_ids = [row.id for row in conn.execute(query)
                        if Envelope.from_bytes(reveal(row.envelope).encode("utf-8")).kind == KIND_FLOWBACK]
    if not flowback_ids:
        return "nothing to replay"
    return replay_parked(store, bus, ids=flowback_ids, flowback_prefix=prefix)
