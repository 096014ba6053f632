"""Per-department indicators for 效能监管 (article 33), over a chosen period, from what the store holds.

For each department (a mapping file's `department`, by its `system`; a system no mapping file names stands for
itself), in the period [since, until] (UTC days, by when tongban recorded the event):

- cases pushed: distinct 办件编号 with a "delivered" ledger event; events delivered;
- delay to receipt: for each receipt, from the message's "published" event (written in the transaction that
  recorded the legacy change tongban fetched) to its "receipt" event (the platform's receipt recorded) — median
  and p95, in seconds. The legacy systems' own change times are in their local clocks (the sandbox's is a
  simulated 2024), so they are not compared with tongban's;
- quarantine rate by rule: quarantine entries made in the period, by `stage: field` (as `tongban status` groups
  them), over the records handled (ledger "fetched", "sealed" and "routed" events — a case change, a sealed
  document, a flowback record taken in — plus those entries);
- parked: deliveries parked in the period, and those still open now;
- 好差评 (evaluations): the satisfaction (1 非常满意 … 5 非常不满意) of each evaluation event delivered in the
  period, read from the case's last published snapshot. None delivered: "no evaluations recorded".
"""
from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, func, select

from tongban.store.at_rest import reveal
from tongban.store.tables import case_snapshots, ledger, parked, quarantine

SATISFACTION = {1: "非常满意 very satisfied", 2: "满意 satisfied", 3: "基本满意 fairly satisfied",
                4: "不满意 dissatisfied", 5: "非常不满意 very dissatisfied"}

# One record taken in: a case change, a sealed document, a flowback record (older runs; now a "routed_chunk" event
# counts the records it lists).
HANDLED_HOPS = ("fetched", "sealed", "routed")


@dataclass
class Department:
    name: str
    systems: list[str]
    cases_pushed: int = 0
    events_delivered: int = 0
    receipts: int = 0
    delay_median_s: float | None = None
    delay_p95_s: float | None = None
    handled: int = 0
    quarantined: int = 0
    quarantine_by_rule: dict[str, int] = field(default_factory=dict)
    parked_in_period: int = 0
    parked_open: int = 0
    evaluations: dict[int, int] = field(default_factory=dict)
    daily_delivered: dict[str, int] = field(default_factory=dict)

    def rate(self, n: int) -> float:
        return n / self.handled if self.handled else 0.0


@dataclass
class Indicators:
    since: date
    until: date
    departments: list[Department]

    @property
    def days(self) -> list[str]:
        return [(self.since + timedelta(days=i)).isoformat() for i in range((self.until - self.since).days + 1)]

    @property
    def any_evaluations(self) -> bool:
        return any(d.evaluations for d in self.departments)


def departments_of(mappings_dir: Path) -> dict[str, str]:
    """system → department, from the mapping files' `system` and `department` (broken files are skipped:
    `tongban mapping check` reports them)."""
    from tongban.mapping.folder import declared_headers

    return {system: str(doc.get("department") or system) for system, (_, doc) in declared_headers(mappings_dir).items()}


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th)."""
    ordered = sorted(values)
    rank = max(1, -(-int(share * 100) * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def compute(store, mappings_dir: Path, since: date, until: date) -> Indicators:
    if until < since:
        raise ValueError(f"period: until {until} is before since {since}")
    low, high = since.isoformat(), (until + timedelta(days=1)).isoformat()
    in_period = lambda column: and_(column >= low, column < high)  # noqa: E731 - ISO-8601 UTC text compares in order
    names = departments_of(mappings_dir)
    per: dict[str, Department] = {}

    def dept(system: str | None) -> Department:
        name = names.get(system or "", system or "(no system)")
        found = per.setdefault(name, Department(name, []))
        if system and system not in found.systems:
            found.systems.append(system)
        return found

    for system in names:
        dept(system)
    published = ledger.alias("published")
    delays: dict[str, list[float]] = defaultdict(list)
    with store.read() as conn:
        for system, cases, events in conn.execute(
                select(ledger.c.system, func.count(func.distinct(ledger.c.case_number)), func.count())
                .where(ledger.c.hop == "delivered", in_period(ledger.c.at)).group_by(ledger.c.system)):
            d = dept(system)
            d.cases_pushed += cases
            d.events_delivered += events
        for system, at in conn.execute(select(ledger.c.system, ledger.c.at)
                                       .where(ledger.c.hop == "delivered", in_period(ledger.c.at))):
            day = dept(system).daily_delivered
            day[at[:10]] = day.get(at[:10], 0) + 1
        for system, received, first_published in conn.execute(
                select(ledger.c.system, ledger.c.at, func.min(published.c.at))
                .join(published, and_(published.c.message_id == ledger.c.message_id, published.c.hop == "published"))
                .where(ledger.c.hop == "receipt", in_period(ledger.c.at))
                .group_by(ledger.c.seq, ledger.c.system, ledger.c.at)):
            delays[system].append(_seconds(first_published, received))
        for system, n in conn.execute(select(ledger.c.system, func.count())
                                      .where(ledger.c.hop.in_(HANDLED_HOPS), in_period(ledger.c.at))
                                      .group_by(ledger.c.system)):
            dept(system).handled += n
        for system, detail in conn.execute(select(ledger.c.system, ledger.c.detail)  # flowback: a chunk of records
                                           .where(ledger.c.hop == "routed_chunk", in_period(ledger.c.at))):
            dept(system).handled += int(json.loads(detail).get("count", 0))
        for system, stage, field_name, n in conn.execute(
                select(quarantine.c.system, quarantine.c.stage, quarantine.c.field, func.count())
                .where(in_period(quarantine.c.at)).group_by(quarantine.c.system, quarantine.c.stage, quarantine.c.field)):
            d = dept(system)
            rule = f"{stage}: {field_name or '-'}"
            d.quarantine_by_rule[rule] = d.quarantine_by_rule.get(rule, 0) + n
            d.quarantined += n
            d.handled += n
        for system, n in conn.execute(select(parked.c.system, func.count()).where(in_period(parked.c.at))
                                      .group_by(parked.c.system)):
            dept(system).parked_in_period += n
        for system, n in conn.execute(select(parked.c.system, func.count()).where(parked.c.status == "open")
                                      .group_by(parked.c.system)):
            dept(system).parked_open += n
        evaluated = conn.execute(select(ledger.c.system, ledger.c.source_key, ledger.c.detail)
                                 .where(ledger.c.hop == "delivered", in_period(ledger.c.at),
                                        ledger.c.detail.contains('"evaluation"'))).all()
        keys = {(s, k) for s, k, detail in evaluated if k and json.loads(detail).get("event") == "evaluation"}
        for system, key in sorted(keys):
            snapshot = conn.execute(select(case_snapshots.c.snapshot).where(
                case_snapshots.c.system == system, case_snapshots.c.source_key == key)).scalar()
            score = (json.loads(reveal(snapshot)).get("evaluation") or {}).get("satisfaction") if snapshot else None
            if score in SATISFACTION:
                counts = dept(system).evaluations
                counts[score] = counts.get(score, 0) + 1
    for system, values in delays.items():
        d = dept(system)
        d.receipts += len(values)
        merged = values if len(d.systems) <= 1 else [v for s in d.systems for v in delays.get(s, [])]
        d.delay_median_s = round(statistics.median(merged), 3)
        d.delay_p95_s = round(_percentile(merged, 0.95), 3)
    for d in per.values():
        d.receipts = sum(len(delays.get(s, [])) for s in d.systems)
        d.evaluations = dict(sorted(Counter(d.evaluations).items()))
    ordered = sorted(per.values(), key=lambda d: (-d.cases_pushed, d.name))
    return Indicators(since, until, ordered)
