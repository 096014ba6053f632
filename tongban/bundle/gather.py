"""Scatter-gather of bundled applications (一件事一次办) on the bus: one consumer, idempotent, ordered per bundle.

Messages on the bundle queue (kind `bundle_step`, correlation = the platform's application id, so the bus keeps one
bundle's steps on one lane) are of two steps: `receive` (a new application from the platform) and `evaluate` (look at
the bundle again). Handling a message, in this order:

1. receive — the application and its members are stored (once: a second receive of the same id adds nothing);
2. gather — each submitted member is linked to the case its department reported through the ordinary ingest
   (case_numbers / case_snapshots of the member's system and legacy key) and follows it: accepted (受理), granted or
   refused (办结, result 1 or 2);
3. conclude early — a refused member whose refusal ends the bundle (`conclude.refusal_ends`) concludes it refused;
   members not submitted yet are cancelled;
4. scatter — every waiting member whose dependencies (`after:`) are all granted is submitted to its department
   (adapters/submit.py) under a reference that stays the same on every retry; a member depending on a refused one is
   cancelled. A transient failure sends the message round a delay queue (attempt + 1, then parking); a permanent one
   fails the member (its department's refusal to take it), which counts as a refusal;
5. status — 受理 goes to the platform when every member has been accepted, 办结 with the result (granted, refused,
   partly_granted) when every member is final; a transient platform failure is retried like a submission;
6. deadlines — a member past its 承诺时限 and not concluded gets one `member_late` event (预警) and a metric.

Every move is a conditional UPDATE (tongban.bundle.tables), and only the writer that made it records its ledger event.
Ledger events carry the application id as `source_key` and the member's 办件编号 as `case_number`, so
`tongban trace APPLICATION_ID` shows the bundle, its members and every member case's events and receipts.
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable

import jmespath
from sqlalchemy import select, update

from adapters.base import SourceError, TransientSourceError
from adapters.submit import Submission
from tongban.audit import ledger
from tongban.codes import mask_text
from tongban.operator import quarantine as q
from tongban.bus import Bus, Delivery
from tongban.delivery.retry import RedeliveryPolicy
from tongban.bus.envelope import Envelope, utcnow
from tongban.audit.ledger import LedgerEvent
from tongban.platform.client import PlatformRejected, PlatformTransient
from tongban.store import Store
from tongban.store import state as st
from tongban.store.at_rest import protect, reveal

from . import tables as t
from .definition import BundleDefinition, member_mapping_path
from .platform_api import push_status
from .submit import SubmitTarget, load_submit_target
from .topology import bundles_work

log = logging.getLogger("tongban.bundle")
KIND = "bundle_step"


def step_envelope(application_id: str, step: str, payload: dict | None = None, bundle: str = "") -> Envelope:
    key = f"bundle:{application_id}:{step}" + ("" if step == "receive" else f":{utcnow()}")
    return Envelope(KIND, f"bundle:{bundle}", key, {"step": step, "application_id": application_id, **(payload or {})},
                    correlation=application_id)


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class BundleWorker:
    def __init__(self, *, store: Store, bus: Bus, platform, definitions: dict[str, BundleDefinition], work=None,
                 policy: RedeliveryPolicy | None = None, clock: Callable[[], datetime] | None = None,
                 metrics=None, submit_seams: dict | None = None):
        self.store, self.bus, self.platform, self.definitions = store, bus, platform, definitions
        self.work = work or bundles_work()
        self.policy = policy or RedeliveryPolicy(max_attempts=8, initial_delay=1.0, max_delay=30.0)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.metrics, self.submit_seams = metrics, submit_seams or {}
        self._targets: dict[str, SubmitTarget] = {}
        self.stats = {"received": 0, "submitted": 0, "retried": 0, "parked": 0, "late": 0, "concluded": 0}
        self._lock = threading.Lock()

    # --- bookkeeping -----------------------------------------------------------------------------------------
    def _count(self, name: str, department: str | None = None) -> None:
        with self._lock:
            self.stats[name] = self.stats.get(name, 0) + 1
        if self.metrics is not None:
            self.metrics.count(f"bundle_{name}", department)

    def _event(self, env: Envelope, hop: str, detail: dict, case_number: str | None = None) -> LedgerEvent:
        return LedgerEvent(hop, detail, system=env.source, message_id=env.message_id,
                           idempotency_key=env.idempotency_key, case_number=case_number,
                           source_key=env.payload["application_id"])

    def _move(self, env: Envelope, app_id: str, member: str, expected: tuple[str, ...], values: dict,
              hop: str, detail: dict, case_number: str | None = None) -> bool:
        """A member's conditional move and its ledger event, in one transaction; False when another writer won.
        Every column `values` sets that was empty must still be empty (a link, a warning is made once)."""
        c = t.bundle_members.c
        unset = [getattr(c, name).is_(None) for name in ("case_number", "warned_at") if name in values]
        with self.store.write() as conn:
            done = conn.execute(update(t.bundle_members).where(
                c.application_id == app_id, c.member == member, c.state.in_(expected), *unset)
                .values(**values)).rowcount
            if done:
                ledger.append(conn, [self._event(env, hop, {"member": member, **detail}, case_number)])
        return bool(done)

    def _park(self, env: Envelope, reason: str) -> None:
        with self.store.write() as conn:
            q.park(conn, message_id=env.message_id, idempotency_key=env.idempotency_key, system=env.source,
                   case_number=None, reason=reason, envelope_json=env.to_bytes().decode("utf-8"))
            ledger.append(conn, [self._event(env, "parked", {"reason": reason, "attempts": env.attempt})])
        self._count("parked")

    def _retry(self, env: Envelope, reason: str, retry_after: float | None) -> None:
        detail = self.policy.redeliver(env, reason, retry_after, bus=self.bus, work=self.work, park=self._park)
        if detail is not None:
            ledger.record(self.store, self._event(env, "retried", detail))
            self._count("retried")

    # --- the handler -----------------------------------------------------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        env = delivery.envelope
        if env.payload.get("step") == "receive" and not self.receive(env):
            return
        try:
            self.evaluate(env)
        except _Retry as exc:
            self._retry(env, str(exc), exc.retry_after)

    def receive(self, env: Envelope) -> bool:
        application = env.payload.get("application") or {}
        app_id, bundle = env.payload["application_id"], application.get("bundle")
        defn = self.definitions.get(bundle)
        if defn is None:
            self._park(env, f"no bundle definition {bundle!r} (mappings/bundles/*.yaml)")
            return False
        now = utcnow()
        with self.store.write() as conn:
            if conn.execute(select(t.bundle_applications.c.application_id)
                            .where(t.bundle_applications.c.application_id == app_id)).first():
                return True  # received before: nothing added, the evaluation goes on
            conn.execute(t.bundle_applications.insert().values(
                application_id=app_id, bundle=bundle, state=t.OPEN, received_at=now,
                form=protect(json.dumps(application.get("form") or {}, ensure_ascii=False))))
            for key in defn.order():
                member = defn.members[key]
                target = self._target(defn, key)
                conn.execute(t.bundle_members.insert().values(
                    application_id=app_id, member=key, system=target.system, department=member.department,
                    item_code=member.item_code, state=t.WAITING, reference=f"{app_id}-{key}"))
            ledger.append(conn, [self._event(env, "bundle_received", {
                "bundle": bundle, "name": defn.name, "members": defn.order(),
                "submitted_at": application.get("submitted_at")})])
        self._count("received")
        return True

    def _target(self, defn: BundleDefinition, member: str) -> SubmitTarget:
        path = member_mapping_path(defn, member)
        if str(path) not in self._targets:
            self._targets[str(path)] = load_submit_target(path)
        return self._targets[str(path)]

    def _load(self, app_id: str) -> tuple[Any, dict[str, Any]]:
        with self.store.read() as conn:
            app = conn.execute(select(t.bundle_applications)
                               .where(t.bundle_applications.c.application_id == app_id)).first()
            rows = conn.execute(select(t.bundle_members).where(t.bundle_members.c.application_id == app_id)).all()
        return app, {row.member: row for row in rows}

    def evaluate(self, env: Envelope) -> None:
        app_id = env.payload["application_id"]
        app, members = self._load(app_id)
        if app is None or app.state == t.CONCLUDED:
            return
        defn = self.definitions[app.bundle]
        self._gather(env, app_id, members)
        app, members = self._load(app_id)
        if not self._ended_by_refusal(env, defn, app, members):
            self._scatter(env, defn, app, members)
            app, members = self._load(app_id)
            self._ended_by_refusal(env, defn, app, members)
        app, members = self._load(app_id)
        self._status(env, defn, app, members)
        app, members = self._load(app_id)
        if app.state == t.OPEN:
            self._deadlines(env, defn, app_id, members)

    # --- gather: follow the member cases the departments reported ----------------------------------------
    def _gather(self, env: Envelope, app_id: str, members: dict) -> None:
        for key, row in members.items():
            if row.state not in (t.SUBMITTED, t.ACCEPTED) or not row.legacy_key:
                continue
            with self.store.read() as conn:
                number = st.get_case_number(conn, row.system, row.legacy_key)
                snapshot, _ = st.get_snapshot(conn, row.system, row.legacy_key)
            if number and not row.case_number:
                self._move(env, app_id, key, (row.state,), {"case_number": number}, "member_linked",
                           {"system": row.system, "legacy_key": row.legacy_key}, number)
            if not snapshot:
                continue
            conclusion = snapshot.get("conclusion") or {}
            now = utcnow()
            if conclusion.get("result") in ("1", "2"):
                to = t.GRANTED if conclusion["result"] == "1" else t.REFUSED
                self._move(env, app_id, key, (t.SUBMITTED, t.ACCEPTED),
                           {"state": to, "concluded_at": now, "accepted_at": row.accepted_at or now,
                            "note": conclusion.get("result_note")},
                           "member_changed", {"from": row.state, "to": to, "licence": conclusion.get("licence_name")},
                           number)
            elif snapshot.get("acceptance") and row.state == t.SUBMITTED:
                self._move(env, app_id, key, (t.SUBMITTED,), {"state": t.ACCEPTED, "accepted_at": now},
                           "member_changed", {"from": t.SUBMITTED, "to": t.ACCEPTED}, number)

    # --- conclude early on a refusal that ends the bundle ----------------------------------------------------
    def _ended_by_refusal(self, env: Envelope, defn: BundleDefinition, app, members: dict) -> bool:
        if app.state == t.CONCLUDED:
            return True
        ending = [k for k, r in members.items() if r.state in (t.REFUSED, t.FAILED) and defn.ends_on_refusal(k)]
        if not ending:
            return False
        for key, row in members.items():
            if row.state == t.WAITING:
                self._move(env, app.application_id, key, (t.WAITING,), {"state": t.CANCELLED, "concluded_at": utcnow(),
                                                                        "note": f"{ending[0]} was refused"},
                           "member_cancelled", {"because": f"{ending[0]} was refused (conclude.refusal_ends)"})
        return True

    # --- scatter: submit what is ready -------------------------------------------------------------------------
    def _scatter(self, env: Envelope, defn: BundleDefinition, app, members: dict) -> None:
        form = json.loads(reveal(app.form) or "{}")
        transient: _Retry | None = None
        for key in defn.order():
            row = members[key]
            if row.state != t.WAITING:
                continue
            deps = [members[d].state for d in defn.members[key].after]
            blocked = [d for d in defn.members[key].after if members[d].state in (t.REFUSED, t.FAILED, t.CANCELLED)]
            if blocked:
                self._move(env, app.application_id, key, (t.WAITING,), {"state": t.CANCELLED, "concluded_at": utcnow(),
                                                                        "note": f"{blocked[0]} was not granted"},
                           "member_cancelled", {"because": f"{blocked[0]} was not granted"})
                continue
            if any(state != t.GRANTED for state in deps):
                continue
            try:
                self._submit(env, defn, app.application_id, key, row, form)
            except _Retry as exc:
                transient = transient or exc
            members = self._load(app.application_id)[1]
        if transient is not None:
            raise transient

    def _submit(self, env: Envelope, defn: BundleDefinition, app_id: str, key: str, row, form: dict) -> None:
        member = defn.members[key]
        fields = {name: jmespath.search(expr, form) for name, expr in member.form.items()}
        submitter = self._target(defn, key).submitter(**self.submit_seams)
        try:
            receipt = submitter.submit(Submission(row.reference, member.item_code, fields))
        except TransientSourceError as exc:
            raise _Retry(f"{key}: {exc}") from exc
        except SourceError as exc:
            reason = mask_text(str(exc))[:300]  # a quoted legacy message may carry a 证件号码: masked
            self._move(env, app_id, key, (t.WAITING,), {"state": t.FAILED, "concluded_at": utcnow(), "note": reason},
                       "member_changed", {"from": t.WAITING, "to": t.FAILED, "reason": reason})
            return
        finally:
            submitter.close()
        now = self.clock()
        due = member.deadline.due(now)
        if self._move(env, app_id, key, (t.WAITING,), {"state": t.SUBMITTED, "legacy_key": receipt.legacy_key,
                                                       "submitted_at": now.isoformat(), "due_at": due.isoformat()},
                      "member_submitted", {"system": row.system, "legacy_key": receipt.legacy_key,
                                           "reference": row.reference, "due_at": due.isoformat(),
                                           "deadline": member.deadline.text(), "attempts": env.attempt + 1}):
            self._count("submitted")

    # --- the bundle's own status at the platform ---------------------------------------------------------------
    def _status(self, env: Envelope, defn: BundleDefinition, app, members: dict) -> None:
        states = {k: r.state for k, r in members.items()}
        summary = [{"member": k, "item_code": r.item_code, "case_number": r.case_number} for k, r in members.items()]
        # 受理 once every member has been accepted by its department (a member concluded since counts: it was).
        if app.accepted_pushed_at is None and all(r.accepted_at for r in members.values()):
            self._push(env, app.application_id, "accepted", {"status": "受理", "members": summary},
                       "accepted_pushed_at")
        ended = self._ended_by_refusal(env, defn, app, members) or all(s in t.FINAL for s in states.values())
        if not ended or app.concluded_at is not None:
            return
        app, members = self._load(app.application_id)  # the cancellations just made
        states = {k: r.state for k, r in members.items()}
        granted = [k for k, s in states.items() if s == t.GRANTED]
        result = ("granted" if len(granted) == len(states) else "partly_granted" if granted
                  and not any(defn.ends_on_refusal(k) for k, s in states.items() if s in (t.REFUSED, t.FAILED))
                  else "refused")
        body = {"status": "办结", "result": result,
                "members": [{**m, "state": states[m["member"]]} for m in summary]}
        if self._push(env, app.application_id, "concluded", body, "concluded_at", result=result):
            self._count("concluded")

    def _push(self, env: Envelope, app_id: str, what: str, body: dict, column: str, result: str | None = None) -> bool:
        try:
            answer = push_status(self.platform, app_id, body, f"bundle-{app_id}-{what}")
        except PlatformTransient as exc:
            raise _Retry(f"platform: {exc}", exc.retry_after) from exc
        except PlatformRejected as exc:
            self._park(env, f"the platform refused the bundle's {body['status']}: {exc.reason}")
            return False
        values: dict[str, Any] = {column: utcnow()}
        if what == "concluded":
            values.update(state=t.CONCLUDED, result=result)
        with self.store.write() as conn:
            done = conn.execute(update(t.bundle_applications).where(
                t.bundle_applications.c.application_id == app_id, getattr(t.bundle_applications.c, column).is_(None))
                .values(**values)).rowcount
            if done:
                ledger.append(conn, [self._event(env, "bundle_status", {
                    "status": body["status"], "result": result, "duplicate_at_platform": answer.get("duplicate", False),
                    "members": {m["member"]: m.get("state", "accepted") for m in body["members"]}})])
        return bool(done)

    # --- deadlines (承诺时限) -------------------------------------------------------------------------------------
    def _deadlines(self, env: Envelope, defn: BundleDefinition, app_id: str, members: dict) -> None:
        now = self.clock()
        for key, row in members.items():
            if row.state not in (t.SUBMITTED, t.ACCEPTED) or row.warned_at or not row.due_at:
                continue
            due = datetime.fromisoformat(row.due_at)
            if now <= due:
                continue
            waiting = [k for k, r in members.items() if key in defn.members[k].after and r.state == t.WAITING]
            if self._move(env, app_id, key, (row.state,), {"warned_at": now.isoformat()}, "member_late", {
                    "department": row.department, "system": row.system, "due_at": row.due_at,
                    "late_by_hours": round((now - due).total_seconds() / 3600, 2), "waiting_on_it": waiting},
                    row.case_number):
                self._count("late", row.department)
                log.warning("预警: bundle %s member %s (%s) is past its deadline %s", app_id, key, row.department,
                            row.due_at)

    def run(self, *, stop: threading.Event | None = None, idle_exit: float | None = None, lanes: int = 4) -> dict:
        self.bus.declare(self.work)
        self.bus.consume(self.work, self.handle, stop=stop or threading.Event(), idle_exit=idle_exit, lanes=lanes)
        return self.stats
