"""What people read: traces, status, summaries. Personal data is masked in everything printed here."""
from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adapters.names import printable
from tongban import codes
from tongban.audit import ledger
from tongban.bus import outbox
from tongban.operator import quarantine as q
from tongban.bus.topology import CASES

console = Console()


def _mask(value) -> str:
    return codes.mask_text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))


def _compact(detail: dict) -> str:
    """key=value pairs; long hashes and signatures shortened for the eye (the ledger keeps them whole)."""
    parts = []
    for key, value in detail.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if key in ("digest", "signature", "jws") and len(text) > 16:
            text = text[:12] + "…"
        parts.append(f"{key}={text}")
    return _mask(" ".join(parts))


def _summary(ev: dict) -> dict:
    """A flowback routed_chunk lists a thousand records: the timeline shows its batch and count (--json has all)."""
    if ev["hop"] == "routed_chunk":
        return {k: v for k, v in ev["detail"].items() if k != "records"}
    return ev["detail"]


def _shown(text) -> str:
    """Text from outside (file names, legacy keys) made inert for the terminal: control characters escaped
    (a newline cannot print a fake ledger line, an ANSI escape cannot recolour it) and rich markup disarmed."""
    return escape(printable(str(text)))


def print_trace(store, ident: str, *, as_json: bool = False, events: list | None = None) -> bool:
    """`events`: a trace already made (tongban.flowback.trace's, which adds each flowback record's routing)."""
    events = ledger.trace(store, ident) if events is None else events
    if not events:
        return False
    if as_json:
        print(_mask(json.dumps(events, ensure_ascii=False, default=str, indent=2)))
        return True
    first = events[0]
    console.print(f"[bold]trace {_shown(ident)}[/bold]  system {_shown(first['system'] or '-')}  "
                  f"case {_shown(first['case_number'] or '-')}  "
                  f"legacy key {_shown(_mask(first['source_key'] or '-'))}  ({len(events)} events)")
    for ev in events:
        message = (ev["message_id"] or "")[:10]
        console.print(f"  #{ev['seq']:<7} {ev['at'][:23].replace('T', ' ')}  {ev['hop']:<11} "
                      f"{_shown(message):<10}  {_shown(_compact(_summary(ev)))}", highlight=False, soft_wrap=True)
    return True


def _age(created_at: str | None) -> str:
    """How long ago, for an operator's eye: "-" for nothing waiting."""
    if not created_at:
        return "-"
    from datetime import datetime, timezone

    seconds = (datetime.now(timezone.utc) - datetime.fromisoformat(created_at)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def print_status(store, bus, work=CASES) -> None:
    table = Table(title=f"tongban status (bus: {bus.name})")
    table.add_column("what")
    table.add_column("count", justify="right")
    depths = bus.depths(bus.queues(work))
    tiers = [name for name in depths if name in work.retry_queues]
    for name, depth in depths.items():
        if name not in tiers or depth:  # the retry tiers one by one only when they hold something
            table.add_row(f"queue {name}", str(depth))
    if tiers:
        table.add_row(f"queue {work.retry_exchange}.* ({len(tiers)} retry tiers, shared, made on use)",
                      str(sum(depths[name] for name in tiers)))
    table.add_row(f"oldest message in {work.queue}", _age(bus.oldest_created_at(work.queue)))
    counts = q.counts(store)
    table.add_row("outbox (committed, waiting for the broker)", str(sum(outbox.pending(store).values())))
    table.add_row("parked", str(counts["parked"]))
    table.add_row("  oldest parked", _age(counts.get("oldest_parked")))
    table.add_row("quarantined", str(counts["quarantined"]))
    table.add_row("  oldest quarantined", _age(counts.get("oldest_quarantined")))
    for reason, n in sorted(counts["by_rule"].items()):
        table.add_row(f"  {reason}", str(n))
    for hop, n in sorted(ledger.count_by_hop(store).items()):
        table.add_row(f"ledger {hop}", str(n))
    console.print(table)
