"""The delivery worker: consume case events, push each to the platform, ack after the receipt is recorded.

For each message, in this order (steps 1–3 read with one statement, tongban.delivery.lookup):
0. one copy at a time — a second copy of a message this worker is handling (a redelivery after a lost connection)
   waits for the first (tongban.delivery.inflight), then meets step 1;
1. idempotent consumer — a key already delivered is recorded as a duplicate and acked, never re-pushed; the record
   itself is made by the deliveries table's unique key in the committer's transaction, so a copy that passed this
   check while another worker's copy was committing is recorded as a duplicate, not a second delivery;
2. blocked case — if an earlier event of the case is parked or was rejected, this one is parked behind
   it (order holds; replaying the parked events releases the case);
3. ordering gate — if the previous event of the case has no receipt yet, the message waits briefly on
   the wait queue; competing workers therefore never deliver two events of one case out of order;
4. push — transient failures go to a delay queue with backoff (attempt + 1), then to parking;
   a 4xx rejection is quarantined with the platform's reason; a receipt is verified and recorded.

When the platform offers batch push (批量推送, its capabilities answer) and the settings do not force single pushes
(TONGBAN_PUSH_BATCH=0), step 4 hands the push to a PushBatcher (tongban/delivery/batching.py), which sends what the
lanes have ready in one call and gives each lane its own event's outcome: steps 1–3, the per-event handling of that
outcome, the receipt check (made by the pusher over the whole reply, so the lanes of one call reach the committer
together) and the ack after the receipt is recorded stay exactly as above. The worker then runs
more lanes (up to the prefetch, the batch limit or 16 — about what the PostgreSQL pool serves at once — whichever
is smallest), so that a batch can fill. With batch push a lane also hands over, together, the messages of one case
it holds one behind the other (`handle_run`): the ones that continue the case's delivered sequence go in one call,
in order, their receipts recorded in one transaction — not one round trip and one group commit per event, each
waiting for the last (tongban.delivery.chains says how each promise above holds for a chain).
"""
from __future__ import annotations

import contextlib
import logging
from collections import deque
import threading
import time
from dataclasses import dataclass, field

from tongban.audit import ledger
from tongban.operator import quarantine as q
from tongban.bus import Bus, Delivery
from tongban.bus.topology import CASES, WAIT_SECONDS, WorkQueue
from tongban.bus.envelope import Envelope
from tongban.audit.ledger import LedgerEvent
from tongban.audit.receipts import REASON as RECEIPT_REASON, ReceiptSignatureInvalid
from tongban.platform.client import PlatformClient, PlatformRejected, PlatformTransient, ReceiptInvalid
from tongban.store import Store
from tongban.store.batcher import WriteBatcher

from . import chains, lookup, recording
from .batching import PushBatcher
from .inflight import InFlight
from .retry import RedeliveryPolicy, delay_or_park

log = logging.getLogger("tongban.worker")


LATENCY_WINDOW = 10_000


@dataclass
class WorkerStats:
    delivered: int = 0
    # Seconds from push to receipt of the latest deliveries (bounded: a worker that runs for weeks keeps the last
    # LATENCY_WINDOW, not one float per event it ever delivered — that grew the worker's memory in the soak).
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    duplicates: int = 0
    retried: int = 0
    parked: int = 0
    rejected: int = 0
    waited: int = 0


MAX_WAITS = 3000  # ~10 minutes of waiting for a predecessor before the message is parked
_FROM_SETTINGS = object()  # receipts=: the platform receipt verifier the settings' trust configuration gives


class DeliveryWorker:
    def __init__(self, *, store: Store, bus: Bus, platform: PlatformClient, policy: RedeliveryPolicy | None = None,
                 metrics=None, work: WorkQueue = CASES, receipts=_FROM_SETTINGS):
        self.store, self.bus, self.platform = store, bus, platform
        self._receipts = receipts  # tongban.audit.receipts.ReceiptVerifier, None (unchecked), or from the settings
        self.work = work
        self.policy = policy or RedeliveryPolicy()
        self.stats = WorkerStats()
        self.writes = WriteBatcher(store)  # group commit across handler lanes
        self._stats_lock = threading.Lock()  # handler lanes run in parallel
        self.metrics = metrics
        self.pusher: PushBatcher | None = None  # set by run() when the platform offers batch push
        self._in_flight = InFlight()

    def _count(self, name: str, seconds: float | None = None) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)
        if self.metrics is not None:
            self.metrics.count(name, seconds)

    # --- outcomes ---------------------------------------------------------------------------------
    def _ledger(self, hop: str, env: Envelope, detail: dict) -> LedgerEvent:
        payload = env.payload
        return LedgerEvent(hop, detail, system=env.source, message_id=env.message_id,
                           idempotency_key=env.idempotency_key, case_number=env.correlation,
                           source_key=payload.get("source_key"))

    def _park(self, env: Envelope, reason: str) -> None:
        def write(conn):
            q.park(conn, message_id=env.message_id, idempotency_key=env.idempotency_key, system=env.source,
                   case_number=env.correlation, reason=reason, envelope_json=env.to_bytes().decode("utf-8"))
            ledger.append(conn, [self._ledger("parked", env, {"reason": reason, "attempts": env.attempt})],
                          at_commit=True)

        self.writes.write(write)
        self._count("parked")

    def _reject(self, env: Envelope, exc: PlatformRejected) -> None:
        payload = env.payload

        def write(conn):
            q.add(conn, q.QuarantineEntry(env.source, payload.get("source_key"), "platform", exc.reason,
                                          field=payload.get("event"), position=f"event {payload.get('sequence')}",
                                          record={"envelope": env.__dict__}))
            ledger.append(conn, [self._ledger("rejected", env, {"status": exc.status, "reason": exc.reason})],
                          at_commit=True)

        self.writes.write(write)
        self._count("rejected")

    def _retry(self, env: Envelope, reason: str, retry_after: float | None) -> None:
        detail = self.policy.redeliver(env, reason, retry_after, bus=self.bus, work=self.work, park=self._park)
        if detail is not None:
            event = self._ledger("retried", env, detail)
            self.writes.write(lambda conn: ledger.append(conn, [event], at_commit=True))
            self._count("retried")

    def _attempt(self, env: Envelope, push):
        """Call `push()`; a rejection is quarantined, a transient failure retried later, a receipt that does not
        hold up parked. Returns the receipt, or None when the message was routed elsewhere."""
        try:
            return push()
        except PlatformRejected as exc:
            self._reject(env, exc)
        except PlatformTransient as exc:
            self._retry(env, str(exc), exc.retry_after)
        except ReceiptInvalid as exc:
            self._park(env, f"receipt not accepted: {exc}")
        except ReceiptSignatureInvalid as exc:  # the batch pusher checked the signature (PushBatcher.check)
            self._park(env, f"{RECEIPT_REASON}: {exc}")
        return None

    def _duplicate(self, delivery: Delivery, receipt_detail: dict) -> None:
        """Idempotent consumer: a message already delivered is recorded as a duplicate, never pushed again."""
        env = delivery.envelope
        event = self._ledger("duplicate", env, {**receipt_detail, "redelivered": delivery.redelivered,
                                                "replay": env.replay_of is not None})
        self.writes.write(lambda conn: ledger.append(conn, [event], at_commit=True))
        self._count("duplicates")

    def _delay(self, env: Envelope, seconds: float) -> bool:
        """Send the message round a delay queue (False: parked, the delay queue was never declared)."""
        return delay_or_park(self.bus, self.work, env, seconds, self._park)

    # --- the handler ------------------------------------------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        # A second copy of a message this worker is handling now (a redelivery after a lost connection, taken by
        # another lane) waits for the first copy, then finds it delivered: the platform gets it once.
        with self._in_flight.hold(delivery.envelope.idempotency_key):
            self._handle(delivery)

    def _handle(self, delivery: Delivery) -> None:
        env = delivery.envelope
        payload = env.payload
        now = self.store.read_once(lambda conn: lookup.standing(conn, env.idempotency_key, env.correlation,
                                                                env.source, payload.get("source_key")))
        receipt, blocked, last = now.receipt, now.blocked, now.last_sequence
        if receipt is not None:
            self._duplicate(delivery, {"receipt_id": receipt.get("receipt_id")})
            return
        if blocked:
            self._park(env, blocked)
            return
        sequence = payload.get("sequence")
        if sequence is not None and env.correlation and sequence > last + 1:
            env.waits += 1
            if env.waits > MAX_WAITS:
                self._park(env, f"event {last + 1} of case {env.correlation} never arrived")
                return
            if self._delay(env, WAIT_SECONDS):
                self._count("waited")
            return
        started = time.monotonic()
        push = self.pusher.push if self.pusher is not None else self.platform.push_event
        receipt = self._attempt(env, lambda: push(payload, env.idempotency_key))
        if receipt is None or (self.pusher is None and not self._receipt_signed(env, receipt)):
            return
        elapsed = time.monotonic() - started
        self._count_recorded(self.writes.write(lambda conn: self._record(conn, env, receipt)), elapsed)

    def _count_recorded(self, outcome: recording.Recorded, elapsed: float) -> None:
        """A recorded copy counted: delivered (with its push's latency) or a duplicate."""
        if outcome.fresh:
            self._count("delivered", elapsed)
            with self._stats_lock:
                self.stats.latencies.append(elapsed)
        else:
            self._count("duplicates")

    # --- runs of one case (batch push) ------------------------------------------------------------
    def handle_run(self, deliveries: list[Delivery]) -> list[bool]:
        """Several messages of one case, queued one behind the other in a lane (tongban.bus.runs): the events that
        continue the case's delivered sequence go to the platform in one batch call, in order, and their receipts
        are recorded in one transaction (tongban.delivery.chains); every other message is handled as `handle` does.
        One flag per message: True acks it, False returns it to the queue."""
        oks: list[bool] = []
        rest = list(deliveries)
        while rest:
            chain = chains.consecutive(rest, self.pusher.max_events if self.pusher is not None else 1)
            try:
                settled = self._push_chain(chain) if len(chain) > 1 else 0
            except Exception:  # e.g. the receipts' transaction failed: these and the rest go back to the queue
                log.exception("a chain of case %s failed; its messages returned to the queue",
                              rest[0].envelope.correlation)
                return oks + [False] * len(rest)
            if settled:
                oks.extend([True] * settled)
                rest = rest[settled:]
                continue
            try:
                self.handle(rest[0])
                oks.append(True)
            except Exception:
                log.exception("handler failed; message returned to the queue")
                oks.append(False)
            rest = rest[1:]
        return oks

    def _push_chain(self, chain: list[Delivery]) -> int:
        """Push the chain in one call when its first event is the case's next one; how many of its messages were
        settled: 0 (not the next one: handled singly instead), all of them, or those up to and including the first
        event that got no receipt (the ones behind it are then handled afresh)."""
        with contextlib.ExitStack() as holding:
            for key in sorted(d.envelope.idempotency_key for d in chain):  # one order: two lanes never deadlock
                holding.enter_context(self._in_flight.hold(key))
            head = chain[0].envelope
            now = self.store.read_once(lambda conn: lookup.standing(conn, head.idempotency_key, head.correlation,
                                                                    head.source, head.payload.get("source_key")))
            if now.receipt is not None or now.blocked or head.payload["sequence"] != now.last_sequence + 1:
                return 0
            started = time.monotonic()
            outcomes = self.pusher.push_run([(d.envelope.payload, d.envelope.idempotency_key) for d in chain])
            elapsed = time.monotonic() - started
            received = 0
            while received < len(chain) and not isinstance(outcomes[received], Exception):
                received += 1
            if received:
                envs = [d.envelope for d in chain[:received]]
                recorded = self.writes.write(lambda conn: [self._record(conn, env, receipt)
                                                           for env, receipt in zip(envs, outcomes)])
                for outcome in recorded:
                    self._count_recorded(outcome, elapsed)
            if received == len(chain):
                return received
            failure = outcomes[received]
            self._attempt(chain[received].envelope, lambda: _raise(failure))
            return received + 1

    def _batch_limit(self) -> int:
        """Events per batch push: the platform's limit, or 0 (one push per event) when the settings force single
        pushes, the platform offers no batch, or this worker's handler is not the case-event one (a subclass)."""
        settings = getattr(self.platform, "settings", None)
        if type(self).handle is not DeliveryWorker.handle or settings is None or not settings.push_batch:
            return 0
        try:
            limit = self.platform.batch_limit()
        except (PlatformTransient, PlatformRejected) as exc:
            log.warning("cannot learn whether the platform offers batch push (%s); pushing one event at a time", exc)
            return 0
        if limit:
            log.info("the platform offers batch push (批量推送) of up to %d events; using it", limit)
        return limit

    def _verifier(self):
        """The receipt verifier (loaded once: the trust configuration and its certificates)."""
        if self._receipts is _FROM_SETTINGS:
            from tongban.audit.receipts import ReceiptVerifier
            from tongban.settings import current

            self._receipts = ReceiptVerifier.from_settings(getattr(self.platform, "settings", None) or current())
        return self._receipts

    def _receipt_signed(self, env: Envelope, receipt: dict) -> bool:
        """The platform's signature on the receipt (tongban.audit.receipts); one that does not verify is parked."""
        verifier = self._verifier()
        if verifier is None:
            return True
        try:
            verifier.check(receipt, env.payload, env.idempotency_key)
        except ReceiptSignatureInvalid as exc:
            self._park(env, f"{RECEIPT_REASON}: {exc}")
            return False
        return True

    def _record(self, conn, env: Envelope, receipt: dict) -> recording.Recorded:
        """The delivery and its receipt, in the ledger, in the committer's transaction: queued for its end, where
        the group's deliveries rows go in with one insert (tongban.delivery.recording)."""
        payload = env.payload
        sequence = payload.get("sequence")

        def events(fresh: bool) -> list[LedgerEvent]:
            if not fresh:  # the key was recorded meanwhile (another worker's copy, or one earlier in this group)
                return [self._ledger("duplicate", env, {"receipt_id": receipt.get("receipt_id"), "concurrent": True})]
            return [
                self._ledger("delivered", env, {"event": payload.get("event"), "sequence": sequence,
                                                "attempts": env.attempt + 1,
                                                "duplicate_at_platform": receipt.get("duplicate", False),
                                                **({"replay_of": env.replay_of} if env.replay_of else {})}),
                self._ledger("receipt", env, {"receipt_id": receipt.get("receipt_id"), "digest": receipt.get("digest"),
                                              "received_at": receipt.get("received_at"),
                                              "signature": receipt.get("signature"),
                                              **({"jws": receipt["jws"]} if receipt.get("jws") else {})}),
            ]

        return recording.record(conn, idempotency_key=env.idempotency_key, message_id=env.message_id,
                                case_number=env.correlation, sequence=sequence, receipt=receipt, events=events)

    def run(self, *, stop: threading.Event | None = None, idle_exit: float | None = None, prefetch: int = 50,
            lanes: int = 8) -> WorkerStats:
        stop = stop or threading.Event()
        if type(self).handle is DeliveryWorker.handle:
            self._verifier()  # before the first message: a trust configuration that cannot load fails here
        self.bus.declare(self.work)
        limit = self._batch_limit()
        if limit > 1 and self.pusher is None:
            verifier = self._verifier()
            self.pusher = PushBatcher(self.platform, limit, check=verifier.check if verifier is not None else None)
            lanes = max(lanes, min(prefetch, limit, 16))
        self.bus.consume(self.work, self.handle, stop=stop, prefetch=prefetch, idle_exit=idle_exit, lanes=lanes,
                         run_handler=self.handle_run if self.pusher is not None else None)
        return self.stats


def _raise(exc: Exception):
    raise exc
