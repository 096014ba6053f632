"""What people read: traces, status, summaries. Personal data is masked in everything printed here."""
from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from tongban import codes, ledger
from tongban import quarantine as q
from tongban.bus.topology import CASES, RETRY_STEPS

console = Console()


def _mask(value) -> str:
    return codes.mask_text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))


def print_trace(store, ident: str, *, as_json: bool = False) -> bool:
    events = ledger.trace(store, ident)
    if not events:
        return False
    if as_json:
        print(_mask(json.dumps(events, ensure_ascii=False, default=str, indent=2)))
        return True
    table = Table(title=f"trace {ident}", show_lines=False)
    for column in ("#", "at (UTC)", "hop", "system", "case", "message", "detail"):
        table.add_column(column, overflow="fold")
    for ev in events:
        table.add_row(str(ev["seq"]), ev["at"][:23], ev["hop"], ev["system"] or "", ev["case_number"] or "",
                      (ev["message_id"] or "")[:12], _mask(ev["detail"]))
    console.print(table)
    return True


def print_status(store, bus) -> None:
    table = Table(title=f"tongban status (bus: {bus.name})")
    table.add_column("what")
    table.add_column("count", justify="right")
    names = [CASES.queue, CASES.wait_queue, *(CASES.retry_queue(s) for s in RETRY_STEPS)]
    if bus.name == "inprocess":
        names = [CASES.queue]
    for name in names:
        table.add_row(f"queue {name}", str(bus.depth(name)))
    counts = q.counts(store)
    table.add_row("parked", str(counts["parked"]))
    table.add_row("quarantined", str(counts["quarantined"]))
    for reason, n in sorted(counts["by_rule"].items()):
        table.add_row(f"  {reason}", str(n))
    for hop, n in sorted(ledger.count_by_hop(store).items()):
        table.add_row(f"ledger {hop}", str(n))
    console.print(table)
