"""One ingest run of one mapping file: fetch since the watermark → map → validate → detect changes →
number (统一赋码) → record state, ledger events and outbox rows in one transaction → relay to the bus with
confirms → only then move the source on (watermark, files to done/).

Records are handled one by one, in order; a look-ahead window (tongban.pipeline.lookahead) maps the next few records
first, reads their stored snapshots in one statement and asks the unified user service about their new applicants
concurrently, so that those round trips do not come one after another. Chunks start small (FIRST_CHUNK events) and
double up to PUBLISH_CHUNK, so that running workers start delivering early in a run.

Crash safety (tongban/bus/outbox.py): a message exists only together with its "published" ledger event. If the run
dies after that commit but before the broker confirmed, the messages wait in the outbox and the next run of the
system sends them before it fetches; the source did not move on, and the re-fetched records are unchanged.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from adapters.base import Adapter, SourceError, adapter_class
from tongban import codes
from tongban.audit import ledger
from tongban.bus import outbox
from tongban.operator import quarantine as q
from tongban.bus import Bus, PublishError
from tongban.bus.topology import CASES, WorkQueue
from tongban.cases.changes import ChangeError, events_between
from tongban.cases.models import CaseSnapshot, describe_errors
from tongban.cases.statemachine import CaseState, TransitionError
from tongban.catalog import CatalogCheck, CatalogError
from tongban.bus.envelope import KIND_CASE_EVENT, Envelope, content_digest, idempotency_key
from tongban.identity import IdentityError, IdentityResolver
from tongban.audit.ledger import LedgerEvent
from tongban.mapping import Mapping, MappingError
from tongban.platform.client import PlatformClient, PlatformRejected, PlatformTransient
from tongban.store import Store
from tongban.store import state as st

from .lookahead import new_applicants, windows

log = logging.getLogger("tongban.pipeline.ingest")

PUBLISH_CHUNK = 500
# The first chunk of a run goes out after this many events, each next one twice the last, up to PUBLISH_CHUNK: the
# workers (running all along) start delivering early in the run instead of after its first 500 events, and a long
# run still publishes in chunks of 500.
FIRST_CHUNK = 50
QUARANTINE_CHUNK = 100  # quarantined records are written as they arrive, in groups this size, never held for a run
NUMBERING_CONCURRENCY = 8  # numbering round trips in flight at once


@dataclass
class IngestReport:
    system: str
    fetched: int = 0
    unchanged: int = 0
    cases_changed: int = 0
    events_published: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    watermark_before: str | None = None
    watermark_after: str | None = None
    failed_files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Pending:
    """A changed case waiting for its events to be confirmed by the broker."""

    key: str
    snapshot: dict
    digest: str
    last_sequence: int
    envelopes: list[Envelope]
    position: str
    flags: list[str]
    record: dict
    notes: list[str] = field(default_factory=list)


@dataclass
class _Refused:
    """A record the mapping or validation refused: what its quarantine entry says."""

    key: str | None
    stage: str
    rule: str
    field_name: str | None


@dataclass
class _Draft:
    """A changed case whose events are known but not yet numbered (统一赋码 happens per chunk)."""

    key: str
    snapshot: dict
    changes: list
    last_sequence: int
    raw: Any
    flags: list[str]
    notes: list[str] = field(default_factory=list)


def _case_state(previous: dict | None, last_sequence: int) -> CaseState:
    """The platform-side state implied by the last snapshot we published (for checking before pushing)."""
    if previous is None:
        return CaseState()
    conclusion = previous.get("conclusion") or {}
    suspended = any(s.get("resumed_at") in (None, "") for s in previous.get("suspensions") or [])
    return CaseState(last_sequence=last_sequence, accepted=previous.get("acceptance") is not None,
                     suspended=suspended, concluded=conclusion.get("result") == "1",
                     returned=conclusion.get("result") == "2", evaluated=previous.get("evaluation") is not None)


class Ingest:
    def __init__(self, mapping: Mapping, *, store: Store, bus: Bus, platform: PlatformClient,
                 adapter: Adapter | None = None, work: WorkQueue = CASES):
        self.mapping, self.store, self.bus, self.platform = mapping, store, bus, platform
        self.work = work
        self.system = mapping.system
        self.adapter = adapter or adapter_class(mapping.source["adapter"])(self.system, mapping.source)
        self.report = IngestReport(self.system)
        self._quarantine_batch: list[tuple[q.QuarantineEntry, LedgerEvent]] = []
        self._failed_files_seen = 0
        # 统一事项标准 and 统一用户体系: the item must be in the catalogue, the applicant a unified user.
        self.catalog = CatalogCheck(mapping, store=store, platform=platform)
        self.identity = IdentityResolver.for_mapping(mapping, store=store, platform=platform)  # None: off
        # Stored snapshots read for the current look-ahead window (source key → (snapshot, last sequence)); a
        # publish drops the keys whose snapshots it saves.
        self._stored: dict[str, tuple[dict | None, int]] = {}

    # --- quarantine -------------------------------------------------------------------------------
    def _quarantine(self, *, key: str | None, stage: str, rule: str, field_name: str | None, position: str,
                    record: Any) -> None:
        entry = q.QuarantineEntry(self.system, key, stage, rule, field_name, position, record)
        detail = {"stage": stage, "field": field_name, "rule": codes.mask_text(rule), "position": position}
        self._quarantine_batch.append((entry, LedgerEvent("quarantined", detail, system=self.system, source_key=key)))
        self.report.quarantined += 1
        label = f"{stage}: {field_name or '-'}"
        self.report.quarantine_reasons[label] = self.report.quarantine_reasons.get(label, 0) + 1

    def _note_failed_files(self) -> None:
        """Files the adapter could not read at all (moved to failed/ with a reason) go to quarantine and the ledger
        too: a poison file is visible where operators and auditors look, not only in a folder. They are not
        records, so they do not count as fetched or quarantined records (report.failed_files lists them)."""
        failed = list(getattr(self.adapter, "failed_files", None) or [])
        for name, reason in failed[self._failed_files_seen:]:
            entry = q.QuarantineEntry(self.system, None, "file", f"file {name}: {reason}", None, name, None)
            detail = {"stage": "file", "file": name, "rule": codes.mask_text(reason), "position": name}
            self._quarantine_batch.append((entry, LedgerEvent("quarantined", detail, system=self.system)))
        self._failed_files_seen = len(failed)

    def _flush_quarantine(self, *, at_least: int = 1) -> None:
        self._note_failed_files()
        if len(self._quarantine_batch) < at_least:
            return
        with self.store.write() as conn:
            events = []
            for entry, event in self._quarantine_batch:
                if q.add(conn, entry) is not None:
                    events.append(event)
            ledger.append(conn, events)
        self._quarantine_batch.clear()

    # --- one record -------------------------------------------------------------------------------
    def _checked(self, raw) -> tuple[dict, list[str], list[str]] | _Refused:
        """The record mapped and validated: (snapshot, notes, flags), or why it is refused. Pure (no store, no
        platform): the look-ahead maps a window's records with it before they are handled one by one."""
        try:
            notes: list[str] = []  # what the mapping rewrote (a retired region code …): kept in the ledger
            snapshot = self.mapping.map_record(raw.data, notes)
        except MappingError as exc:
            return _Refused(exc.record_key, "mapping", str(exc), exc.field.split(" ")[0])
        key = snapshot["source_key"]
        flags = snapshot.pop("_flags", [])
        try:
            CaseSnapshot.model_validate(snapshot)
            codes.parse_item_code(snapshot["item_code"])
        except ValidationError as exc:
            problems = describe_errors(exc)
            return _Refused(key, "validation", f"record {key}: " + "; ".join(problems), problems[0].split(":")[0])
        except codes.CodeError as exc:
            return _Refused(key, "validation", f"record {key}: item_code: {exc.rule}", "item_code")
        return snapshot, notes, flags

    def _look_ahead(self, window: list, previous_in_run: dict[str, tuple[dict | None, int]]) -> list:
        """The window's records mapped (tongban.pipeline.lookahead), their stored snapshots read in one statement,
        and the resolver warmed with the new cases' applicants. Returns (raw, checked) pairs, in order."""
        checked = [(raw, None if raw.error else self._checked(raw)) for raw in window]
        keys = {c[0]["source_key"] for _, c in checked if isinstance(c, tuple)} - previous_in_run.keys()
        with self.store.read() as conn:
            self._stored = st.get_snapshots(conn, self.system, keys)
        if self.identity is not None:
            self.identity.prefetch(new_applicants(
                checked, seen=lambda k: k in previous_in_run or self._stored.get(k, (None, 0))[0] is not None,
                catalog=self.catalog, identity=self.identity))
        return checked

    def _ahead(self, records, previous_in_run: dict[str, tuple[dict | None, int]]):
        """(raw, checked) for every record, in order, a look-ahead window at a time (lazily: a window is looked at
        once the one before it has been handled)."""
        for window in windows(records):
            yield from self._look_ahead(window, previous_in_run)

    def _prepare(self, raw, previous_in_run: dict[str, tuple[dict | None, int]],
                 checked: tuple[dict, list[str], list[str]] | _Refused) -> _Draft | None:
        if isinstance(checked, _Refused):
            self._quarantine(key=checked.key, stage=checked.stage, rule=checked.rule, field_name=checked.field_name,
                             position=raw.position, record=raw.data)
            return None
        snapshot, notes, flags = checked
        key = snapshot["source_key"]
        if key in previous_in_run:
            previous, last_sequence = previous_in_run[key]
        elif key in self._stored:
            previous, last_sequence = self._stored[key]
        else:
            with self.store.read() as conn:
                previous, last_sequence = st.get_snapshot(conn, self.system, key)
        if not self._unified(snapshot, previous, raw):
            return None
        try:
            changes = events_between(previous, snapshot)
        except ChangeError as exc:
            self._quarantine(key=key, stage="change", rule=f"record {key}: {exc}", field_name=exc.field,
                             position=raw.position, record=raw.data)
            return None
        if not changes:
            self.report.unchanged += 1
            return None

        # Check the state machine before anything leaves: a forbidden transition is quarantined, not pushed.
        state = _case_state(previous, last_sequence)
        for offset, (event_type, _data, _at) in enumerate(changes, start=1):
            try:
                state = state.apply(event_type, last_sequence + offset)
            except TransitionError as exc:
                self._quarantine(key=key, stage="state", rule=f"record {key}: {exc.rule}", field_name=event_type,
                                 position=raw.position, record=raw.data)
                return None

        last = last_sequence + len(changes)
        previous_in_run[key] = (snapshot, last)
        return _Draft(key, snapshot, changes, last_sequence, raw, flags, notes)

    def _finish(self, draft: _Draft, case_number: str) -> _Pending:
        """The draft's events as envelopes under the case's 办件编号."""
        snapshot, key = draft.snapshot, draft.key
        envelopes = []
        for offset, (event_type, data, occurred_at) in enumerate(draft.changes, start=1):
            event = {"case_number": case_number, "event": event_type, "sequence": draft.last_sequence + offset,
                     "source_system": self.system, "source_key": key, "item_code": snapshot["item_code"],
                     "local_item_code": snapshot.get("local_item_code"), "region": snapshot["region"],
                     "occurred_at": occurred_at, "data": data}
            envelopes.append(Envelope(kind=KIND_CASE_EVENT, source=self.system, region=snapshot["region"],
                                      correlation=case_number, payload=event,
                                      idempotency_key=idempotency_key(self.system, f"{key}#{event['sequence']}", event)))
        return _Pending(key, snapshot, content_digest(snapshot), draft.last_sequence + len(draft.changes), envelopes,
                        draft.raw.position, draft.flags, draft.raw.data, draft.notes)

    def _unified(self, snapshot: dict, previous: dict | None, raw) -> bool:
        """Retired/unknown items (tongban.catalog) and unresolvable applicants (tongban.identity) wait in
        quarantine; a resolved applicant's unified user id goes into the application."""
        key = snapshot["source_key"]
        try:
            self.catalog.check(snapshot["item_code"])
        except CatalogError as exc:
            self._quarantine(key=key, stage="catalog", rule=f"record {key}: {exc}", field_name="item_code",
                             position=raw.position, record=raw.data)
            return False
        if self.identity is None:
            return True
        if previous is not None:
            # The application was sent already and cannot change: it keeps the user id it went with.
            user_id = (previous.get("application") or {}).get("applicant_user_id")
        else:
            try:
                user_id = self.identity.resolve(snapshot, raw.data)  # IdentityThrottled propagates (transient)
            except IdentityError as exc:
                self._quarantine(key=key, stage="identity", rule=f"record {key}: {exc.kind}: {exc}",
                                 field_name=exc.field, position=raw.position, record=raw.data)
                return False
        if user_id:
            snapshot["application"]["applicant_user_id"] = user_id
        return True

    def _numbered(self, drafts: list[_Draft]) -> list[_Pending]:
        """Every draft's 办件编号: the stored one, or a new one from the platform's numbering service (统一赋码).
        New numbers are asked for concurrently (one round trip each) and stored before anything is published,
        so a re-run after a crash asks again and gets the same number (the service is idempotent)."""
        keys = {d.key for d in drafts}
        with self.store.read() as conn:
            known = st.case_numbers_of(conn, self.system, keys)
        wanted = {d.key: d for d in drafts if d.key not in known}
        if wanted:
            def ask(draft: _Draft):
                try:
                    return draft, self.platform.case_number(self.system, draft.key, draft.snapshot["item_code"]), None
                except PlatformRejected as exc:
                    return draft, None, exc

            # A transient numbering failure propagates: the run fails before the watermark moves, and is retried.
            with ThreadPoolExecutor(NUMBERING_CONCURRENCY) as pool:
                answers = list(pool.map(ask, wanted.values()))
            with self.store.write() as conn:
                events = []
                for draft, number, refused in answers:
                    if refused is not None:
                        self._quarantine(key=draft.key, stage="platform", field_name="case_number",
                                         rule=f"record {draft.key}: numbering refused: {refused.reason}",
                                         position=draft.raw.position, record=draft.raw.data)
                        continue
                    known[draft.key] = st.save_case_number(conn, self.system, draft.key, number,
                                                           draft.snapshot["item_code"])
                    events.append(LedgerEvent("numbered", {"item_code": draft.snapshot["item_code"]},
                                              system=self.system, case_number=known[draft.key], source_key=draft.key))
                ledger.append(conn, events)
        return [self._finish(d, known[d.key]) for d in drafts if d.key in known]

    # --- publishing -------------------------------------------------------------------------------
    def _publish(self, pending: list[_Pending]) -> None:
        """Snapshots, "fetched" and "published" ledger events and the outbox rows in one transaction, then the
        relay to the bus (returns once the broker confirmed). Nothing is ever on the bus without its ledger trail."""
        if not pending:
            return
        envelopes = [env for p in pending for env in p.envelopes]
        events: list[LedgerEvent] = []
        for p in pending:  # these snapshots change now: the look-ahead's reads of them are stale
            self._stored.pop(p.key, None)
        with self.store.write() as conn:
            for p in pending:
                st.save_snapshot(conn, self.system, p.key, p.snapshot, p.digest, p.last_sequence)
                number = p.envelopes[0].correlation
                events.append(LedgerEvent("fetched", {"position": p.position, "digest": p.digest,
                                                      **({"flags": p.flags} if p.flags else {}),
                                                      **({"notes": p.notes} if p.notes else {})},
                                          system=self.system, source_key=p.key, case_number=number))
                for env in p.envelopes:
                    events.append(LedgerEvent(
                        "published", {"event": env.payload["event"], "sequence": env.payload["sequence"],
                                      "bus": self.bus.name, "queue": self.work.queue},
                        system=self.system, message_id=env.message_id, idempotency_key=env.idempotency_key,
                        case_number=number, source_key=p.key))
            ledger.append(conn, events)
            outbox.stage(conn, self.system, self.work, envelopes)
        self.report.cases_changed += len(pending)
        self.report.events_published += len(envelopes)
        self._relay()

    def _relay(self) -> None:
        """Send what waits in this system's outbox (this chunk, or what a crashed run left)."""
        try:
            outbox.relay(self.store, self.bus, system=self.system)
        except PublishError as exc:
            # Connection trouble or a broken topology: the run fails (the watermark stays, files go back), the
            # messages stay in the outbox with their ledger events and the next run sends them first.
            raise PublishError(f"{exc} — the events wait in the outbox and the next run sends them",
                               unroutable=exc.unroutable) from exc

    # --- the run ----------------------------------------------------------------------------------
    def run(self) -> IngestReport:
        self.bus.declare(self.work)
        self._relay()  # an earlier run that died between its commit and the broker's confirm
        with self.store.read() as conn:
            watermark = st.get_watermark(conn, self.system)
        self.report.watermark_before = watermark
        newest = watermark
        drafts: list[_Draft] = []
        drafted = 0  # events in `drafts`
        chunk = FIRST_CHUNK
        previous_in_run: dict[str, tuple[dict | None, int]] = {}
        try:
            for raw, checked in self._ahead(self.adapter.fetch(watermark), previous_in_run):
                self.report.fetched += 1
                mark = self.mapping.watermark_of(raw.data)
                if mark and (newest is None or mark > newest):
                    newest = mark
                if raw.error:
                    key = self.mapping.record_key(raw.data) if raw.data else None
                    self._quarantine(key=key, stage="read", rule=f"{raw.position}: {raw.error}", field_name=None,
                                     position=raw.position, record=raw.data)
                elif (draft := self._prepare(raw, previous_in_run, checked)) is not None:
                    drafts.append(draft)
                    drafted += len(draft.changes)
                self._flush_quarantine(at_least=QUARANTINE_CHUNK)  # written as they arrive, never held for the run
                if drafted >= chunk:
                    self._publish(self._numbered(drafts))
                    drafts, drafted, chunk = [], 0, min(chunk * 2, PUBLISH_CHUNK)
                    # The chunk's snapshots are committed: a later record of one of its cases reads the stored
                    # snapshot. Keeping them would grow with the run (a million-record backlog held in memory), and
                    # a draft refused a number would otherwise stand as the "previous" of the case's next record.
                    previous_in_run.clear()
                    self._flush_quarantine()
            self._publish(self._numbered(drafts))
            self._flush_quarantine()
        except BaseException as exc:
            self.adapter.abort(f"ingest failed: {exc}")
            self._flush_quarantine()  # quarantined records are kept even when the run fails
            raise
        # Everything is confirmed by the broker: the source may now move on.
        self.adapter.commit()
        failed = getattr(self.adapter, "failed_files", None) or []
        self.report.failed_files = [f"{name}: {reason}" for name, reason in failed]
        if newest and newest != watermark:
            with self.store.write() as conn:
                st.set_watermark(conn, self.system, newest)
                ledger.append(conn, [LedgerEvent("watermark", {"from": watermark, "to": newest}, system=self.system)])
        self.report.watermark_after = newest
        return self.report

    def close(self) -> None:
        self.adapter.close()


def run_ingest(mapping: Mapping, *, store: Store, bus: Bus, platform: PlatformClient,
               adapter: Adapter | None = None, work: WorkQueue = CASES) -> IngestReport:
    ingest = Ingest(mapping, store=store, bus=bus, platform=platform, adapter=adapter, work=work)
    try:
        return ingest.run()
    finally:
        ingest.close()


__all__ = ["Ingest", "IngestReport", "run_ingest", "SourceError", "PlatformTransient"]
