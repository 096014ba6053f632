"""The tamper-evident ledger: every hop of every message, one event each, linked by a SHA-256 hash chain.

Each event's hash covers its own fields and the previous event's hash, so editing, removing or
reordering any row breaks the chain from that row on; `verify()` finds the first broken event, and
`unpublished_deliveries()` names any delivery whose message was never published (no provenance).
Text that cannot be stored as UTF-8 (a lone surrogate from a file name that is not UTF-8) is escaped on append,
so a hostile name can never fail the write that records it.
Details never hold personal data in clear: callers pass masked values and digests only.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import Connection, or_, select

from adapters.names import is_utf8, storable
from tongban.bus.envelope import canonical_json, utcnow
from tongban.store import Store
from tongban.store.db import before_commit
from tongban.store.tables import ledger

GENESIS = "0" * 64
# PostgreSQL: the transaction-scoped advisory lock that makes appenders take turns (the chain has one head). Only
# ledger appends take it; every other write (quarantine, state, outbox, the local queue) runs without a global lock.
APPEND_LOCK = 7351
_SURROGATE = re.compile("[\ud800-\udfff]")

# The hops an event can record (NiFi-style provenance: receive, route, modify, send, drop …).
HOPS = {
    "fetched", "mapped", "quarantined", "numbered", "published", "delivered", "receipt", "duplicate",
    "retried", "parked", "replayed", "rejected", "unchanged", "sealed", "seal_verified", "routed",
    "flowback_delivered", "batch_received", "pii_lookup", "watermark", "batch_routed",
    "identity_conflict", "catalog_synced",
    "watermark_set", "watermark_reset",  # an operator moved or cleared a system's watermark (tongban watermark)
    "evidence_exported",  # an evidence package left tongban (tongban audit export; unmasked ones name the actor)
    # bundled applications (一件事一次办, tongban.bundle): received, members submitted/linked/changed/cancelled,
    # a member past its 承诺时限 (预警), the bundle's own status pushed to the platform (受理, 办结)
    "bundle_received", "member_submitted", "member_linked", "member_changed", "member_cancelled", "member_late",
    "bundle_status",
    "maintenance_announced", "maintenance_skipped",  # 报备: a window announced, an ingest run skipped for one
    # flowback: one event per chunk of routed records (up to 1,000), listing each record's key, message and target;
    # flowback_records.ledger_event names the chunk event of each record (tongban.flowback.trace follows it)
    "routed_chunk",
}


@dataclass
class LedgerEvent:
    hop: str
    detail: dict[str, Any]
    system: str | None = None
    message_id: str | None = None
    idempotency_key: str | None = None
    case_number: str | None = None
    source_key: str | None = None
    event_id: str | None = None  # given by a caller that must name the event before it is written; else a new uuid4


_DETAIL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)  # json.dumps's bytes, one encoder made once
_HASHED_FIELDS = ("event_id", "at", "hop", "system", "message_id", "idempotency_key", "case_number", "source_key", "detail")


def _hash(prev_hash: str, row: dict[str, Any]) -> str:
    body = canonical_json({name: row[name] for name in _HASHED_FIELDS})
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def _storable(value: str | None) -> str | None:
    return value if value is None else storable(value)


_COLUMNS = (*_HASHED_FIELDS, "prev_hash", "hash")  # every column but seq (the database numbers the rows, in order)
_CHUNK = 1000  # rows per statement: 11 parameters each, far below PostgreSQL's 65,535


def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """The rows, in order, in one statement per chunk. On PostgreSQL a plain multi-row INSERT … VALUES: a group
    commit's few rows through SQLAlchemy's executemany cost several times more CPU (every column is text)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(ledger.insert(), rows)
        return
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(ledger.name)} ({', '.join(quote(name) for name in _COLUMNS)}) VALUES "
    one = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        conn.exec_driver_sql(head + ", ".join([one] * len(chunk)),
                             tuple(row[name] for row in chunk for name in _COLUMNS))


def take_turn(conn: Connection) -> str:
    """This transaction's turn to append (PostgreSQL: the advisory lock APPEND_LOCK, held until it ends), and the
    chain's tail hash. Once the lock is held no other writer can append until this transaction ends, so the tail is
    read once per transaction, however many appends a group commit makes; a second call costs nothing.
    A writer that inserts rows other writers may also insert (the deliveries' unique keys) takes its turn before
    them, so that two writers never hold each other's rows while waiting for the lock (a deadlock)."""
    transaction = conn.get_transaction()
    cached = conn.info.get("ledger_tail")
    if cached is not None and cached[0] is transaction:
        return cached[1]
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})")
    prev_hash = conn.execute(select(ledger.c.hash).order_by(ledger.c.seq.desc()).limit(1)).scalar() or GENESIS
    conn.info["ledger_tail"] = (transaction, prev_hash)
    return prev_hash


def append(conn: Connection, events: Sequence[LedgerEvent], *, at_commit: bool = False) -> None:
    """Append events inside the caller's write transaction.

    Appenders take turns: on PostgreSQL the first append of a transaction takes the advisory lock APPEND_LOCK
    (held until commit) before it reads the chain's tail, so the next appender reads a tail that is committed;
    SQLite's writers take turns anyway (BEGIN IMMEDIATE). Writes that append nothing never wait for appenders.

    `at_commit`: the rows (hashed and chained now, in order) are inserted at the end of the `Store.write`
    transaction, with the rows of every other such append of it, in one statement (a group commit's ledger). For
    writers that do not read the ledger back in the same transaction; outside `Store.write` they are inserted at once."""
    if not events:
        return
    transaction = conn.get_transaction()
    prev_hash = take_turn(conn)
    rows = []
    for ev in events:
        if ev.hop not in HOPS:
            raise ValueError(f"unknown ledger hop {ev.hop!r}")
        detail = _DETAIL.encode(ev.detail)
        if not is_utf8(detail):
            # A lone surrogate (a name that is not UTF-8 …) would fail the write: store it as the text `\xNN`.
            detail = _SURROGATE.sub(lambda m: "\\" + storable(m.group()), detail)  # JSON: an escaped backslash
        row = {
            "event_id": ev.event_id or uuid.uuid4().hex,
            "at": utcnow(),
            "hop": ev.hop,
            "system": _storable(ev.system),
            "message_id": ev.message_id,
            "idempotency_key": _storable(ev.idempotency_key),
            "case_number": _storable(ev.case_number),
            "source_key": _storable(ev.source_key),
            "detail": detail,
        }
        row["prev_hash"] = prev_hash
        row["hash"] = prev_hash = _hash(prev_hash, row)
        rows.append(row)
    conn.info["ledger_tail"] = (transaction, prev_hash)
    pending = before_commit(conn, "ledger", _insert_rows)
    if at_commit and pending is not None:
        pending.extend(rows)
        return
    if pending:  # rows held for the commit come first: the chain's order is the insertion order (seq)
        _insert_rows(conn, pending)
        pending.clear()
    _insert_rows(conn, rows)


def record(store: Store, *events: LedgerEvent) -> None:
    """Append events in a transaction of their own."""
    with store.write() as conn:
        append(conn, events)


@dataclass
class VerifyResult:
    ok: bool
    events: int
    broken_seq: int | None = None
    broken_event_id: str | None = None
    reason: str | None = None


def verify(store: Store, batch: int = 500, progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Recompute the chain from the genesis; report the first event whose link or hash is wrong.
    `progress(n)` is told after each page how many more events were checked (for a progress bar).

    Constant memory whatever the ledger's size: pages of `batch` events by seq (keyset, never OFFSET), each page's
    rows read one at a time and dropped once checked. Pages are small because an event can be large (a flowback
    `routed_chunk` lists a thousand records)."""
    prev_hash = GENESIS
    count = 0
    last_seq = 0
    with store.read() as conn:
        while True:
            seen = 0
            for row in conn.execute(select(ledger).where(ledger.c.seq > last_seq).order_by(ledger.c.seq)
                                    .limit(batch)).mappings():
                seen += 1
                count += 1
                if row["prev_hash"] != prev_hash:
                    return VerifyResult(False, count, row["seq"], row["event_id"],
                                        "link broken: prev_hash does not match the previous event (a row was removed or reordered)")
                if _hash(prev_hash, dict(row)) != row["hash"]:
                    return VerifyResult(False, count, row["seq"], row["event_id"],
                                        "content altered: the event's hash does not match its fields")
                prev_hash = row["hash"]
                last_seq = row["seq"]
            if not seen:
                return VerifyResult(ok=True, events=count)
            if progress is not None:
                progress(seen)


DELIVERY_HOPS = ("delivered", "receipt")


@dataclass
class DeliveryCheck:
    """Deliveries cross-checked against publications: `unpublished` lists (first `limit`) delivered/receipt
    events whose message has no "published" event — a message that reached the platform without provenance."""

    deliveries: int
    unpublished_count: int
    unpublished: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.unpublished_count == 0


def unpublished_deliveries(store: Store, limit: int = 20) -> DeliveryCheck:
    """Every delivered/receipt event must name a message with a "published" event (the transactional outbox
    writes that event before anything reaches the bus; replays and retries keep the original message id)."""
    from sqlalchemy import exists, func

    published = ledger.alias("published")
    orphan = (ledger.c.hop.in_(DELIVERY_HOPS)
              & ~exists().where(published.c.message_id == ledger.c.message_id, published.c.hop == "published"))
    with store.read() as conn:
        deliveries = conn.execute(select(func.count()).select_from(ledger)
                                  .where(ledger.c.hop.in_(DELIVERY_HOPS))).scalar() or 0
        count = conn.execute(select(func.count()).select_from(ledger).where(orphan)).scalar() or 0
        rows = conn.execute(select(ledger.c.seq, ledger.c.event_id, ledger.c.hop, ledger.c.message_id, ledger.c.system,
                                   ledger.c.case_number).where(orphan).order_by(ledger.c.seq).limit(limit)).mappings()
        return DeliveryCheck(deliveries, count, [dict(r) for r in rows])


def trace(store: Store, ident: str) -> list[dict[str, Any]]:
    """Every event about a message, an idempotency key, a 办件编号 or a legacy key, with its lineage:
    starting from `ident`, follow the message ids and keys the matching events name."""
    with store.read() as conn:
        conditions = [ledger.c.message_id == ident, ledger.c.idempotency_key == ident,
                      ledger.c.case_number == ident, ledger.c.source_key == ident]
        rows = conn.execute(select(ledger).where(or_(*conditions))).mappings().all()
        case_numbers = {r["case_number"] for r in rows if r["case_number"]}
        source_keys = {(r["system"], r["source_key"]) for r in rows if r["source_key"]}
        more: list = []
        if case_numbers:
            more.append(ledger.c.case_number.in_(case_numbers))
        for system, key in source_keys:
            more.append((ledger.c.system == system) & (ledger.c.source_key == key))
        if more:
            rows = conn.execute(select(ledger).where(or_(*conditions, *more))).mappings().all()
    events = sorted((dict(r) for r in rows), key=lambda r: r["seq"])
    for ev in events:
        ev["detail"] = json.loads(ev["detail"])
    return events


def count_by_hop(store: Store, system: str | None = None) -> dict[str, int]:
    from sqlalchemy import func

    query = select(ledger.c.hop, func.count()).group_by(ledger.c.hop)
    if system:
        query = query.where(ledger.c.system == system)
    with store.read() as conn:
        return {hop: n for hop, n in conn.execute(query)}


def iter_events(store: Store, hops: Iterable[str] | None = None) -> list[dict[str, Any]]:
    query = select(ledger).order_by(ledger.c.seq)
    if hops:
        query = query.where(ledger.c.hop.in_(list(hops)))
    with store.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
