"""Operator actions on quarantine and parking: list with filters, show, replay (recorded in the ledger)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape
from sqlalchemy import func, select

from adapters.base import Adapter, RawRecord
from adapters.names import printable
from tongban import codes
from tongban.audit import ledger
from tongban.bus.topology import CASES
from tongban.bus.envelope import KIND_FLOWBACK, KIND_SEALED, Envelope
from tongban.audit.ledger import LedgerEvent
from tongban.store.at_rest import reveal
from tongban.store.tables import parked, quarantine

console = Console()


def _filtered(table, *, system=None, stage=None, reason=None, since=None, status="open", reason_column=None):
    query = select(table)
    if system:
        query = query.where(table.c.system == system)
    if stage is not None and "stage" in table.c:
        query = query.where(table.c.stage == stage)
    if reason:
        query = query.where((reason_column if reason_column is not None else table.c.reason).contains(reason))
    if since:
        query = query.where(table.c.at >= since)
    if status != "all":
        query = query.where(table.c.status == status)
    return query


def _list(store, query, limit):
    with store.read() as conn:
        total = conn.execute(select(func.count()).select_from(query.subquery())).scalar()
        rows = [dict(r) for r in conn.execute(query.order_by(query.selected_columns.id).limit(limit)).mappings()]
    return rows, total


def list_quarantine(store, *, system=None, stage=None, reason=None, since=None, status="open", limit=50):
    query = _filtered(quarantine, system=system, stage=stage, reason=reason, since=since, status=status,
                      reason_column=quarantine.c.rule)
    return _list(store, query, limit)


def list_parked(store, *, system=None, reason=None, since=None, status="open", limit=50):
    return _list(store, _filtered(parked, system=system, reason=reason, since=since, status=status), limit)


def print_rows(rows: list[dict], columns: list[str], title: str) -> None:
    """One entry per line, the long text (rule or reason) on its own indented line: readable at 80 columns."""
    console.print(f"[bold]{title}[/bold]" + (f" (showing {len(rows)})" if rows else ""))
    long_column = columns[-2]  # rule / reason
    for row in rows:
        head = "  ".join(str(row.get(c) or "-")[:32] if c == "at" else str(row.get(c) or "-")
                         for c in columns if c != long_column)
        # Stored text comes from outside (file names, legacy values): inert for the terminal and for rich markup.
        console.print(escape(printable(codes.mask_text(f"#{head}"))), highlight=False, soft_wrap=True)
        console.print(escape(printable(codes.mask_text(f"    {row.get(long_column) or ''}"))), highlight=False,
                      soft_wrap=True)


def _show(store, table, entry_id: int) -> bool:
    with store.read() as conn:
        row = conn.execute(select(table).where(table.c.id == entry_id)).mappings().first()
    if row is None:
        return False
    shown = dict(row)
    for column in ("record", "envelope"):
        if shown.get(column):
            shown[column] = reveal(shown[column])  # decrypted for the operator, then masked like everything shown
    console.print(escape(codes.mask_text(json.dumps(shown, ensure_ascii=False, indent=2, default=str))),
                  highlight=False)
    return True


def show_quarantine(store, entry_id: int) -> bool:
    return _show(store, quarantine, entry_id)


def show_parked(store, entry_id: int) -> bool:
    return _show(store, parked, entry_id)


class StoredRecords(Adapter):
    """Replays quarantined legacy records through the normal ingest path (the mapping as it is now)."""

    kind = "replay"

    def __init__(self, system: str, rows: list[dict]):
        super().__init__(system, {})
        self.rows = rows

    def fetch(self, watermark: str | None) -> Iterator[RawRecord]:
        for row in self.rows:
            yield RawRecord(json.loads(reveal(row["record"])), f"quarantine #{row['id']} ({row['position']})")


@dataclass
class ReplayOutcome:
    """What one replay did, for people (`str()`) and for scripts (`to_dict()`, the `--json` of `… replay`)."""

    kind: str                  # "quarantine" or "parked"
    selected: int = 0          # open entries the filters matched
    replayed: int = 0          # records run through ingest (or their flowback batch) again
    republished: int = 0       # events published again with their original idempotency keys
    skipped: int = 0           # entries that could not be replayed (no record kept, no mapping for the system)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": str(self)}

    def __str__(self) -> str:
        if not self.selected:
            return "nothing to replay"
        if self.kind == "parked":
            return f"re-published {self.republished} parked events"
        return (f"replayed {self.replayed} records through ingest, re-published {self.republished} events, "
                f"skipped {self.skipped}")


def replay_quarantine(store, *, ids=None, system=None, stage=None, reason=None, bus=None, platform=None,
                      mappings_dir=None, work=CASES, actor=None) -> ReplayOutcome:
    """Legacy records (read/mapping/validation/change/state) go through ingest again; platform rejections
    are re-published with their original idempotency key. Entries are marked replayed; a record that
    fails again is quarantined anew with its current reason. `actor` (who asked, e.g. a console operator) is
    named in each "replayed" event."""
    from tongban.bus import open_bus
    from tongban.pipeline.ingest import Ingest
    from tongban.mapping import load_mapping
    from tongban.platform.client import PlatformClient
    from tongban.settings import load

    settings = load()
    query = _filtered(quarantine, system=system, stage=stage, reason=reason, status="open", reason_column=quarantine.c.rule)
    if ids:
        query = query.where(quarantine.c.id.in_(ids))
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(query.order_by(quarantine.c.id)).mappings()]
    outcome = ReplayOutcome("quarantine", selected=len(rows))
    if not rows:
        return outcome
    bus = bus or open_bus(settings)
    platform = platform or PlatformClient(settings)
    mappings = {}
    for path in sorted((mappings_dir or settings.mappings_dir).glob("*.yaml")):
        try:
            m = load_mapping(path)
            mappings[m.system] = m
        except Exception:
            continue
    replayed = republished = skipped = 0
    # Flowback records go back through their batch (tongban.flowback.replay_quarantined): mapped and routed again
    # with the current source file, to the district queue they belong to.
    from tongban.flowback.replay import flowback_sources, replay_quarantined

    sources = flowback_sources(mappings_dir or settings.mappings_dir)
    flowback_rows = [r for r in rows if r["system"] in sources]
    if flowback_rows:
        done, not_replayable = replay_quarantined(store, bus, flowback_rows, sources)
        replayed += done
        skipped += not_replayable
        rows = [r for r in rows if r["system"] not in sources]
    by_system: dict[str, list[dict]] = {}
    for row in rows:
        if row["stage"] == "platform":
            record = json.loads(reveal(row["record"]))["envelope"]
            env = Envelope(**{k: v for k, v in record.items() if k in Envelope.__dataclass_fields__})
            env.attempt, env.waits, env.replay_of = 0, 0, f"quarantine#{row['id']}"
            _mark(store, quarantine, [row["id"]], [LedgerEvent("replayed", _by(actor, {"quarantine_id": row["id"]}),
                  system=env.source, message_id=env.message_id, idempotency_key=env.idempotency_key,
                  case_number=env.correlation, source_key=row["source_key"])])
            bus.publish(work, [env])
            republished += 1
        elif row["record"] and row["system"] in mappings:
            by_system.setdefault(row["system"], []).append(row)
        else:
            skipped += 1
    for system_name, system_rows in by_system.items():
        _mark(store, quarantine, [r["id"] for r in system_rows],
              [LedgerEvent("replayed", _by(actor, {"quarantine_id": r["id"], "stage": r["stage"]}), system=system_name,
                           source_key=r["source_key"]) for r in system_rows])
        Ingest(mappings[system_name], store=store, bus=bus, platform=platform,
               adapter=StoredRecords(system_name, system_rows), work=work).run()
        replayed += len(system_rows)
    outcome.replayed, outcome.republished, outcome.skipped = replayed, republished, skipped
    return outcome


def replay_parked(store, bus, *, ids=None, system=None, reason=None, work=CASES, flowback_prefix=None,
                  actor=None) -> ReplayOutcome:
    """Re-publish parked events in case order, with their original idempotency keys, each to the queue it was
    parked from: case events to `work`, sealed documents to theirs, a flowback record to its district's queue
    (under `flowback_prefix`, default `<TONGBAN_QUEUE_PREFIX>.flowback`). `actor` is named in the events."""
    query = _filtered(parked, system=system, reason=reason, status="open")
    if ids:
        query = query.where(parked.c.id.in_(ids))
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    if not rows:
        return ReplayOutcome("parked")
    envelopes = []
    for row in rows:
        env = Envelope.from_bytes(reveal(row["envelope"]).encode("utf-8"))
        env.attempt, env.waits, env.replay_of = 0, 0, f"parked#{row['id']}"
        envelopes.append(env)
    envelopes.sort(key=lambda e: (e.kind, e.correlation or "", e.payload.get("sequence") or 0))
    # Mark first: a replayed event must not find itself "blocked" by its own parked entry.
    _mark(store, parked, [r["id"] for r in rows],
          [LedgerEvent("replayed", _by(actor, {"parked_id": r["id"]}), system=r["system"], message_id=r["message_id"],
                       idempotency_key=r["idempotency_key"], case_number=r["case_number"]) for r in rows])
    by_queue: dict[str, tuple[Any, list[Envelope]]] = {}
    for env in envelopes:
        target = _work_for(env, work, flowback_prefix)
        by_queue.setdefault(target.queue, (target, []))[1].append(env)
    for target, queued in by_queue.values():
        bus.declare(target)
        bus.publish(target, queued)
    return ReplayOutcome("parked", selected=len(rows), republished=len(envelopes))


def _work_for(env: Envelope, default, flowback_prefix=None):
    """Each message kind has its own queue: a parked sealed document goes back to the sealed queue, a flowback
    record to the queue of the district it was routed to."""
    if env.kind == KIND_SEALED:
        from tongban.seal.exchange import SEALED

        return SEALED
    if env.kind == KIND_FLOWBACK:
        from tongban.flowback.topology import flowback_prefix as default_prefix, work_queue

        return work_queue(env.payload["target"], flowback_prefix or default_prefix())
    return default


def _by(actor: str | None, detail: dict) -> dict:
    return {**detail, "actor": actor} if actor else detail


def _mark(store, table, ids: list[int], events: list[LedgerEvent]) -> None:
    with store.write() as conn:
        conn.execute(table.update().where(table.c.id.in_(ids)).values(status="replayed"))
        ledger.append(conn, events)


__all__ = ["list_quarantine", "list_parked", "replay_quarantine", "replay_parked", "ReplayOutcome", "print_rows", "Any"]
