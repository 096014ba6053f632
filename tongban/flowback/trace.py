"""Where did flowback record X go: the ledger's lineage of an identifier, with each flowback record's routing.

Routing writes one `routed_chunk` ledger event per chunk of up to 1,000 routed records, listing each record (position,
ROWGUID, message id, 办件编号, target and why); the record's row in flowback_records names that event
(`ledger_event`) and holds the record's key (`record_key`), message id and idempotency key. So a record is found by
its ROWGUID, message id or idempotency key — and, once delivered, by its 办件编号 (the delivery events carry it) — and its "routed" step is read back out of the chunk event that the hash chain covers.

`trace(store, ident)` returns what `ledger.trace` returns, plus one `routed` entry per flowback record found: the chunk
event's seq, event id, time and hash, with the record's own line of the chunk as its detail (and `chunk` naming the
event, `chunk_count` its size). A record its chunk event does not list (the event was edited: `tongban audit
verify` names it) gets the entry with `problem` saying so, never silence.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from sqlalchemy import select

from tongban.audit import ledger as chain
from tongban.store import Store
from tongban.store.tables import ledger

from .tables import flowback_records

CHUNK_HOP = "routed_chunk"


def _records(conn, ident: str, message_ids: set[str]) -> list[dict[str, Any]]:
    """The records `ident` names, each look-up on an index (the table holds a row per record of every batch)."""
    rec = flowback_records.c
    keys = {ident}
    parts = ident.split(":")
    if len(parts) == 3:  # an idempotency key, source:ROWGUID:digest (the ROWGUID percent-encoded): its record's key
        keys.add(unquote(parts[1]))
    found = [rec.record_key.in_(sorted(keys)), rec.message_id.in_(sorted(message_ids | {ident}))]
    rows = {}
    for condition in found:
        for row in conn.execute(select(flowback_records).where(condition)).mappings():
            if row["record_key"] == ident or row["message_id"] == ident or row["idempotency_key"] == ident \
                    or row["message_id"] in message_ids:
                rows[(row["batch_id"], row["digest"])] = dict(row)
    return list(rows.values())


def _routed_entry(chunk: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The record's `routed` step, read out of its chunk event."""
    detail = chunk["detail"]
    line = next((r for r in detail.get("records", ()) if r.get("message_id") == row["message_id"]), None)
    entry = {**chunk, "hop": "routed", "message_id": row["message_id"], "idempotency_key": row["idempotency_key"],
             "source_key": row["record_key"], "case_number": (line or {}).get("case_number")}
    entry["detail"] = {"batch_id": detail.get("batch_id"), **(line or {}), "chunk": chunk["event_id"],
                       "chunk_count": detail.get("count")}
    if line is None:
        entry["detail"]["problem"] = (f"record {row['record_key'] or row['digest']} is not listed in its routed_chunk "
                                      f"event #{chunk['seq']}: the event was altered (tongban audit verify)")
    return entry


def trace(store: Store, ident: str) -> list[dict[str, Any]]:
    """Every event about `ident` (ledger.trace), with the routing of each flowback record it names, by seq."""
    events = chain.trace(store, ident)
    message_ids = {e["message_id"] for e in events if e["message_id"]}
    with store.read() as conn:
        rows = _records(conn, ident, message_ids)
        if not rows:
            return events
        more_messages = {r["message_id"] for r in rows if r["message_id"]} - message_ids
        wanted = {r["ledger_event"] for r in rows if r["ledger_event"]}
        found = []
        if wanted:
            found += conn.execute(select(ledger).where(ledger.c.event_id.in_(sorted(wanted)))).mappings().all()
        if more_messages:  # found by digest or key only: the message's own events (delivery …)
            found += conn.execute(select(ledger).where(ledger.c.message_id.in_(sorted(more_messages)))).mappings().all()
    by_id = {e["event_id"]: e for e in events}
    chunks: dict[str, dict[str, Any]] = {}
    for row in found:
        event = dict(row)
        event["detail"] = json.loads(event["detail"])
        if event["hop"] == CHUNK_HOP:
            chunks[event["event_id"]] = event
        else:
            by_id.setdefault(event["event_id"], event)
    out = [e for e in by_id.values() if e["hop"] != CHUNK_HOP or e["event_id"] not in chunks]
    for row in rows:
        chunk = chunks.get(row["ledger_event"] or "")
        if chunk is not None and row["outcome"] == "routed":
            out.append(_routed_entry(chunk, row))
    return sorted(out, key=lambda e: (e["seq"], e["hop"] != "routed"))


def summary(detail: dict[str, Any]) -> dict[str, Any]:
    """A routed_chunk event's detail for the eye: its batch, run and count, not its thousand lines."""
    return {k: v for k, v in detail.items() if k != "records"}


def routed_count(store: Store, system: str | None = None) -> int:
    """Records the ledger says were routed (the routed_chunk events' counts; one-per-record "routed" events of
    older runs too)."""
    query = select(ledger.c.hop, ledger.c.detail).where(ledger.c.hop.in_((CHUNK_HOP, "routed")))
    if system:
        query = query.where(ledger.c.system == system)
    with store.read() as conn:
        return sum(json.loads(detail).get("count", 0) if hop == CHUNK_HOP else 1 for hop, detail in conn.execute(query))
