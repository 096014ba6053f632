"""Routing one national batch onto the flowback queues, so that every record is accounted for.

Records stream through in constant memory, `chunk` at a time. Each record read is hashed into the batch digest
(its raw form, tongban.flowback.records), then, per chunk:

1. exact duplicates (the same raw record earlier in the batch) are counted, not routed again;
2. a record an earlier read of this batch already routed is not routed again (re-reads after a fix);
3. the rest is mapped (the source file's `flowback.fields`) and routed (routing.Router); a record that fails
   either is quarantined with the field and the rule (stage `mapping` or `routing`), a damaged row at stage `read`;
4. the chunk's messages are published (the bus returns after the broker confirmed), and only then are the
   record rows, quarantine entries and ledger events written.

A batch is **done** only when every record was read and accounted for and the manifest's count and digest match:
then the source is told (file to done/, service acknowledged). Otherwise the batch is **incomplete**, with the
reason, and stays where it is: the next run, or `tongban flowback retry BATCH`, reads it again. A batch that is
done and arrives again is recognised as a re-delivery and routes nothing.
"""
from __future__ import annotations

import uuid
from hashlib import sha256
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from sqlalchemy import bindparam, select, update

from tongban.audit import ledger
from tongban.operator import quarantine as q
from tongban.bus import Bus
from tongban.codes import mask_text
from tongban.bus.envelope import (KIND_FLOWBACK, Envelope, TextEnvelope, digest_idempotency_key, new_id, ordered_id,
                                  text_idempotency_key, utcnow)
from tongban.audit.ledger import LedgerEvent
from tongban.mapping import MappingError
from tongban.store import Store
from tongban.store.db import driver_mark, insert_rows
from tongban.store.tables import quarantine

from .batches import Batch
from .heap import quiet_collector
from .mapping import FlowbackMapping
from .records import PROJID, ROWGUID, Manifest, RecordsDigest, trimmed_body
from .routing import Reject, Router
from .tables import flowback_batches, flowback_records
from .topology import declare, work_queue

CHUNK = 1000
_RECORD_COLUMNS = ("batch_id", "digest", "run_id", "position", "outcome", "target", "message_id", "idempotency_key",
                   "quarantine_id", "stage", "record_key", "ledger_event")
_record_values = itemgetter("b_digest", *_RECORD_COLUMNS[2:])  # a new row's values after its batch id


def _same_columns(rows: list[dict]) -> list[list[dict]]:
    """Rows grouped by the columns they set: each group is one executemany."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())


# UPDATE flowback_records SET <the row's columns> WHERE batch_id = :b_batch_id AND digest = :b_digest (executemany:
# SQLAlchemy sets the columns the parameter rows name).
_UPDATE_RECORDS = update(flowback_records).where(flowback_records.c.batch_id == bindparam("b_batch_id"),
                                                 flowback_records.c.digest == bindparam("b_digest"))


class _Known(NamedTuple):
    """A record row an earlier chunk or read of the batch wrote."""
    digest: bytes
    run_id: str
    outcome: str
    quarantine_id: int | None


def _known(conn, batch_id: str, digests: set[bytes]) -> dict[bytes, _Known]:
    """The rows of `digests` the batch has already: one look-up per chunk, handed to the driver as it is (SQLAlchemy
    processing a thousand parameters cost more than the look-up itself)."""
    mark = driver_mark(conn)
    if mark is None:
        rows = list(conn.execute(select(flowback_records.c.digest, flowback_records.c.run_id,
                                        flowback_records.c.outcome, flowback_records.c.quarantine_id)
                                 .where(flowback_records.c.batch_id == batch_id,
                                        flowback_records.c.digest.in_(digests))))
    else:
        rows, wanted = [], list(digests)
        for start in range(0, len(wanted), _IN_SLICE):
            part = wanted[start:start + _IN_SLICE]
            rows.extend(conn.exec_driver_sql(
                "SELECT digest, run_id, outcome, quarantine_id FROM flowback_records "
                f"WHERE batch_id = {mark} AND digest IN ({', '.join([mark] * len(part))})", (batch_id, *part)))
    return {bytes(r[0]): _Known(bytes(r[0]), *r[1:]) for r in rows}


_IN_SLICE = 5000  # digests per look-up: well under SQLite's 32,766 parameters whatever the chunk size


@dataclass
class BatchOutcome:
    batch_id: str
    origin: str
    duplicate: bool = False          # the whole batch was done already (a re-delivery)
    complete: bool = False           # done: every record accounted for, count and digest match
    records_in: int = 0
    duplicates: int = 0              # exact duplicates inside the batch
    routed: int = 0                  # routed by this read
    already_routed: int = 0          # routed by an earlier read of this batch, not again
    quarantined: int = 0
    per_target: dict[str, int] = field(default_factory=dict)
    manifest_count: int = 0
    digest_ok: bool = False
    error: str | None = None         # why the batch is not done
    requeued: int = 0                # quarantined records mapped and routed again (`flowback retry`)
    # read = routed + already routed + duplicates + quarantined: every record read has exactly one outcome
    accounted: bool = False
    accounting: str = ""

    def account(self) -> bool:
        """Check and state that every record read has one outcome (the run report shows `accounting`)."""
        outcomes = self.routed + self.already_routed + self.duplicates + self.quarantined
        self.accounted = outcomes == self.records_in
        self.accounting = (f"read {self.records_in} {'=' if self.accounted else '≠'} routed {self.routed} + already "
                           f"routed {self.already_routed} + duplicates {self.duplicates} + quarantined {self.quarantined}")
        return self.accounted


@dataclass(slots=True)
class _Item:
    position: int
    raw: Any
    digest: bytes                     # flowback_records.digest: the record's SHA-256, first 16 bytes
    where: str
    read_error: str | None = None
    quarantine_id: int | None = None  # the entry that holds it now (re-processing a quarantined record)
    flat: dict | None = None          # raw's trimmed text fields, when it is a flat text record (records.trimmed_body)


class BatchIngest:
    def __init__(self, *, mapping: FlowbackMapping, router: Router, store: Store, bus: Bus, prefix: str,
                 chunk: int | None = None):
        self.mapping, self.router, self.store, self.bus, self.prefix = mapping, router, store, bus, prefix
        self.source = mapping.system
        self.chunk = chunk or CHUNK

    # --- batch bookkeeping ---------------------------------------------------------------------------
    def _start(self, batch: Batch) -> tuple[str | None, BatchOutcome | None]:
        """(run_id, None) to read the batch, or (None, outcome) when it is done already."""
        m = batch.manifest
        with self.store.write() as conn:
            row = conn.execute(select(flowback_batches).where(flowback_batches.c.batch_id == m.batch_id)).mappings().first()
            if row is not None and row["status"] in ("done", "routed"):  # "routed": done, before the status had that name
                conn.execute(update(flowback_batches).where(flowback_batches.c.batch_id == m.batch_id)
                             .values(times_received=row["times_received"] + 1))
                same = row["manifest_digest"] == m.digest and row["manifest_count"] == m.record_count
                ledger.append(conn, [LedgerEvent("duplicate", {
                    "batch_id": m.batch_id, "origin": batch.origin, "first_received_at": row["received_at"],
                    "times_received": row["times_received"] + 1, "same_manifest": same},
                    system=self.source, source_key=m.batch_id)])
            else:
                run_id = uuid.uuid4().hex
                values = dict(source=self.source, run_id=run_id, origin=batch.origin, received_at=utcnow(),
                              finished_at=None, status="reading", problem=None, manifest_count=m.record_count,
                              manifest_digest=m.digest, records_in=0, unreadable=0, digest=None)
                if row is None:
                    conn.execute(flowback_batches.insert().values(batch_id=m.batch_id, times_received=1, **values))
                else:  # incomplete or interrupted before: read it again under a new run id
                    conn.execute(update(flowback_batches).where(flowback_batches.c.batch_id == m.batch_id)
                                 .values(times_received=row["times_received"] + 1, **values))
                ledger.append(conn, [LedgerEvent("batch_received", {
                    "batch_id": m.batch_id, "origin": batch.origin, "manifest_count": m.record_count,
                    "manifest_digest": m.digest, "run_id": run_id, "rerun": row is not None},
                    system=self.source, source_key=m.batch_id)])
                return run_id, None
        return None, BatchOutcome(m.batch_id, batch.origin, duplicate=True, complete=same,
                                  manifest_count=m.record_count, digest_ok=same,
                                  error=None if same else "batch id received again with a different manifest "
                                                          "(count or digest) after it was done: not routed")

    def is_done(self, manifest: Manifest) -> bool:
        """This batch, with this manifest, is done already."""
        with self.store.read() as conn:
            row = conn.execute(select(flowback_batches.c.status, flowback_batches.c.manifest_digest).where(
                flowback_batches.c.batch_id == manifest.batch_id)).first()
        return row is not None and row.status in ("done", "routed") and row.manifest_digest == manifest.digest

    # --- one chunk -----------------------------------------------------------------------------------
    def _process(self, batch_id: str, run_id: str, items: list[_Item], out: BatchOutcome,
                 seen_in_chunk: set[bytes] | None = None, rerun_quarantined_only: bool = False) -> None:
        """Dedupe, map, route, publish and record one chunk of items.

        The ledger gets one `routed_chunk` event for the chunk's routed records (each listed with its key, message
        and target; the hash chain covers the list) and one `quarantined` event per newly quarantined record;
        each record's row names its event (flowback_records.ledger_event), so every record stays traceable."""
        if not items:
            return
        with self.store.read() as conn:
            known = _known(conn, batch_id, {i.digest for i in items})
        seen = seen_in_chunk if seen_in_chunk is not None else set()
        source, router, prefix_target = self.source, self.router, out.per_target
        created_at = utcnow()                            # the chunk's messages are made in the same moment
        chunk_event = new_id()                           # the routed_chunk event's id, named by the rows before it is written
        buffers: dict[str, list[Envelope]] = {}
        inserts: list[dict] = []
        routed_rows: list[tuple] = []                   # new rows of routed records, in _RECORD_COLUMNS order
        updates: list[dict] = []
        touched: list[dict] = []                        # routed by an earlier read: only the run id moves
        listed: list[dict] = []                         # the chunk event's list: one entry per routed record
        rejects: list[tuple[q.QuarantineEntry, LedgerEvent, dict, bool, int | None]] = []
        resolved: list[int] = []                         # quarantine entries whose record is now routed
        for item in items:
            digest = item.digest
            earlier = known.get(digest)
            if digest in seen or (earlier is not None and earlier.run_id == run_id and not rerun_quarantined_only):
                out.duplicates += 1
                continue
            seen.add(digest)
            if earlier is not None and earlier.outcome == "routed":
                out.already_routed += 1
                touched.append({"b_digest": digest, "run_id": run_id})
                continue
            previous_entry = item.quarantine_id or (earlier.quarantine_id if earlier is not None else None)
            stage, field_name, rule, national = self._decide(item)
            key = (national or {}).get(ROWGUID) or (self.mapping.record_key(item.raw) if isinstance(item.raw, dict) else None)
            if stage is None:
                decision = router.route(national)
                if isinstance(decision, Reject):
                    stage, field_name, rule = "routing", decision.field, decision.rule
            if stage is not None:
                out.quarantined += 1
                rule = mask_text(rule)
                # The rule names the batch and record, not where this read found it: re-reading the same record
                # and failing the same way finds the entry already open (quarantine.add_many) instead of a new one.
                entry = q.QuarantineEntry(source, key or f"{batch_id}#{item.position}", stage,
                                          f"batch {batch_id} record {item.position}: {rule}", field=field_name,
                                          position=f"batch {batch_id} record {item.position} ({item.where})",
                                          record=item.raw)
                event = LedgerEvent("quarantined", {"batch_id": batch_id, "position": item.position, "stage": stage,
                                                    "field": field_name, "rule": rule}, system=source, source_key=key,
                                    event_id=new_id())
                rejects.append((entry, event, {
                    "b_digest": digest, "run_id": run_id, "position": item.position, "outcome": "quarantined",
                    "stage": stage, "target": None, "message_id": None, "idempotency_key": None,
                    "record_key": key and key[:200]}, earlier is None, previous_entry))
                continue
            rowguid = national[ROWGUID]
            if national is item.flat:  # its own national record: the digest of its bytes is taken already
                ikey = digest_idempotency_key(source, rowguid, digest.hex())  # the same 32 hex digits
            else:
                ikey = text_idempotency_key(source, rowguid, national)  # national: text fields only
            target = decision.target
            route = decision.detail()
            env = TextEnvelope(KIND_FLOWBACK, source, ikey, {  # payload: text (and the route's flags) only
                "batch_id": batch_id, "run_id": run_id, "target": target, "route": route,
                "record": national}, region=target, correlation=national.get(PROJID), created_at=created_at,
                message_id=ordered_id())  # time-ordered: the message-id indexes append, not split random pages
            buffers.setdefault(target, []).append(env)
            out.routed += 1
            prefix_target[target] = prefix_target.get(target, 0) + 1
            if earlier is None:
                routed_rows.append((batch_id, digest, run_id, item.position, "routed", target, env.message_id, ikey,
                                    None, None, rowguid[:200], chunk_event))
            else:
                updates.append({"b_digest": digest, "run_id": run_id, "position": item.position, "outcome": "routed",
                                "target": target, "message_id": env.message_id, "idempotency_key": ikey,
                                "quarantine_id": None, "stage": None, "record_key": rowguid[:200],
                                "ledger_event": chunk_event})
            listed.append({"position": item.position, "key": rowguid, "message_id": env.message_id,
                           "case_number": env.correlation, **route})
            if previous_entry:
                resolved.append(previous_entry)
        for target, envelopes in buffers.items():
            work = work_queue(target, self.prefix)
            declare(self.bus, work)
            self.bus.publish(work, envelopes)  # returns after the broker confirmed every message
        events: list[LedgerEvent] = []
        if listed:
            events.append(LedgerEvent("routed_chunk", {"batch_id": batch_id, "run_id": run_id, "count": len(listed),
                                                       "records": listed}, system=source, source_key=batch_id,
                                      event_id=chunk_event))
        with self.store.write() as conn:
            if rejects:
                added = q.add_many(conn, [entry for entry, *_ in rejects])
                for (entry, event, row, new_row, previous_entry), (entry_id, is_new) in zip(rejects, added):
                    if is_new and previous_entry:
                        resolved.append(previous_entry)  # superseded by the entry with today's rule
                    row["quarantine_id"] = entry_id
                    if is_new:  # a record found again with the same rule is in the ledger already
                        events.append(event)
                        row["ledger_event"] = event.event_id
                    elif new_row:
                        row["ledger_event"] = None  # (an updated row keeps the event that first recorded it)
                    (inserts if new_row else updates).append(row)
            if resolved:
                conn.execute(quarantine.update().where(quarantine.c.id.in_(resolved), quarantine.c.status == q.OPEN)
                             .values(status=q.REPLAYED))
                events.extend(LedgerEvent("replayed", {"quarantine_id": i, "batch_id": batch_id}, system=source)
                              for i in resolved)
            routed_rows.extend((batch_id, *_record_values(r)) for r in inserts)
            if routed_rows:
                insert_rows(conn, flowback_records, _RECORD_COLUMNS, routed_rows)
            for rows in _same_columns(updates + touched):
                conn.execute(_UPDATE_RECORDS, [{**r, "b_batch_id": batch_id} for r in rows])
            ledger.append(conn, events)

    def _decide(self, item: _Item) -> tuple[str | None, str | None, str, dict | None]:
        """(stage, field, rule, national record): stage None when the record mapped."""
        if item.read_error:
            return "read", None, item.read_error, None
        if not isinstance(item.raw, dict):
            return "read", None, f"a record is an object, not {type(item.raw).__name__}", None
        try:
            return None, None, "", self.mapping.map_flat(item.raw, item.flat)
        except MappingError as exc:
            return "mapping", exc.field.split(" ")[0], f"{exc}", None

    # --- a whole batch -------------------------------------------------------------------------------
    def ingest(self, batch: Batch) -> BatchOutcome:
        with quiet_collector():  # millions of short-lived objects: no walk of the whole heap every few chunks
            return self._ingest(batch)

    def _ingest(self, batch: Batch) -> BatchOutcome:
        run_id, duplicate = self._start(batch)
        if duplicate is not None:
            if duplicate.error is None and batch.duplicate_done:
                batch.duplicate_done()
            return duplicate
        m = batch.manifest
        out = BatchOutcome(m.batch_id, batch.origin, manifest_count=m.record_count)
        digest = RecordsDigest()
        unreadable = 0
        pending: list[_Item] = []
        seen: set[bytes] = set()  # digests of the chunk in hand only: earlier chunks are asked of the store
        try:
            for position, raw in enumerate(batch.read(), start=1):
                if raw.error:
                    unreadable += 1
                    digest.count += 1  # counted as received; its bytes are unknown, so the digest cannot match
                    pending.append(_Item(position, raw.data, sha256(raw.position.encode()).digest()[:16],
                                         raw.position, raw.error))
                else:
                    flat, body = trimmed_body(raw.data)
                    digest.add_canonical(body)
                    # the record's key: its SHA-256's first 16 bytes (flowback_records.digest, revision 0007)
                    pending.append(_Item(position, raw.data, sha256(body).digest()[:16], raw.position, None, None,
                                         flat))
                if len(pending) >= self.chunk:
                    self._process(m.batch_id, run_id, pending, out, seen)
                    pending, seen = [], set()
            self._process(m.batch_id, run_id, pending, out, seen)
        except Exception as exc:  # the batch stays "reading": the next run reads it again
            out.records_in = digest.count
            out.account()
            out.error = f"batch {m.batch_id} interrupted after {digest.count} records: {exc}"
            self._finish(m.batch_id, out, digest, unreadable, "reading", out.error)
            batch.keep(out.error)
            return out
        out.records_in = digest.count
        out.account()
        computed = digest.hexdigest()
        out.digest_ok = computed == m.digest and not unreadable
        problems = list(batch.problems)
        if unreadable:
            problems.append(f"{unreadable} damaged records could not be read (quarantined at stage read)")
        if out.records_in != m.record_count:
            hint = " — is the record tag / format / encoding in the source file right?" if out.records_in == 0 else ""
            problems.append(f"records in {out.records_in} ≠ manifest count {m.record_count}{hint}")
        elif computed != m.digest and not unreadable:
            problems.append(f"digest {computed[:12]}… ≠ manifest digest {m.digest[:12]}…")
        if not out.accounted:
            problems.append(f"records not accounted for: {out.accounting}")
        out.complete = not problems
        out.error = None if out.complete else "; ".join(problems)
        self._finish(m.batch_id, out, digest, unreadable, "done" if out.complete else "incomplete", out.error)
        if out.complete:
            batch.done()
        else:
            batch.keep(out.error)
        return out

    def _finish(self, batch_id: str, out: BatchOutcome, digest: RecordsDigest, unreadable: int, status: str,
                problem: str | None) -> None:
        # durable: the batch's outcome and every chunk committed before it are on disk before the source is told
        with self.store.write(durable=True) as conn:
            conn.execute(update(flowback_batches).where(flowback_batches.c.batch_id == batch_id).values(
                status=status, problem=problem, finished_at=utcnow(), records_in=out.records_in,
                unreadable=unreadable, digest=digest.hexdigest()))
            ledger.append(conn, [LedgerEvent("batch_routed", {
                "batch_id": batch_id, "status": status, "records_in": out.records_in, "duplicates": out.duplicates,
                "routed": out.routed, "already_routed": out.already_routed, "quarantined": out.quarantined,
                "manifest_count": out.manifest_count, "digest_matches": out.digest_ok, "per_target": out.per_target,
                "accounted": out.accounted, "accounting": out.accounting,
                **({"problem": problem} if problem else {})}, system=self.source, source_key=batch_id)])

    # --- quarantined records again -------------------------------------------------------------------
    def reprocess(self, batch_id: str, entries: Iterable[tuple[int, int, str, Any]]) -> BatchOutcome:
        """Map and route quarantined records of a batch again with the current source file (after a fix):
        `entries` are (quarantine id, position, digest, raw record). What routes now is routed once; what fails
        again is quarantined with today's rule. The batch's counts follow (its rows are updated in place)."""
        with self.store.read() as conn:
            row = conn.execute(select(flowback_batches).where(flowback_batches.c.batch_id == batch_id)).mappings().first()
        out = BatchOutcome(batch_id, row["origin"] if row else "", manifest_count=row["manifest_count"] if row else 0,
                           complete=bool(row and row["status"] == "done"))
        items = [_Item(position, raw, digest, f"quarantine #{qid}", quarantine_id=qid)
                 for qid, position, digest, raw in entries]
        out.requeued = len(items)
        for start in range(0, len(items), self.chunk):
            self._process(batch_id, row["run_id"], items[start:start + self.chunk], out, set(),
                          rerun_quarantined_only=True)
        outcomes = out.routed + out.already_routed + out.duplicates + out.quarantined
        out.accounted = outcomes == out.requeued
        out.accounting = (f"requeued {out.requeued} {'=' if out.accounted else '≠'} routed {out.routed} + already "
                          f"routed {out.already_routed} + duplicates {out.duplicates} + quarantined {out.quarantined}")
        return out

