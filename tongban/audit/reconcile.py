"""Reconciliation with 渝快办: does the platform hold what our ledger says we delivered?

Two checks, each reported as gaps (an empty list means the two sides agree):
- every delivered event has its signed receipt (a `deliveries` row whose receipt signature verifies, and the
  ledger's `receipt` hop for the same message) — non-repudiation is only as good as the receipts we kept;
- per 实施编码 (item code), the number of cases the platform holds (GET /api/v1/stats `by_item`) equals the number
  of cases we delivered at least one event of.
Published-but-not-yet-delivered events are counted as in flight, not as a gap: the bus worker may still be busy.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select

from tongban.platform.auth import verify_receipt
from tongban.store import Store
from tongban.store.tables import case_numbers, deliveries, ledger


@dataclass
class ReconcileReport:
    delivered_events: int = 0
    delivered_cases_by_item: dict[str, int] = field(default_factory=dict)
    platform_cases_by_item: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    gaps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.gaps

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def _ledger_cases_by_item(conn) -> dict[str, int]:
    # Item code from the numbering record (统一赋码 remembers which item a number was issued for).
    rows = conn.execute(
        select(case_numbers.c.item_code, func.count(func.distinct(deliveries.c.case_number)))
        .select_from(deliveries.outerjoin(case_numbers, case_numbers.c.case_number == deliveries.c.case_number))
        .where(deliveries.c.case_number.is_not(None))
        .group_by(case_numbers.c.item_code))
    return {item or "(unknown item)": n for item, n in rows}


def _receipt_gaps(conn, secret: str, limit: int) -> tuple[int, list[str], int]:
    """(delivered events, the first `limit` problems named, how many problems in all)."""
    gaps: list[str] = []
    delivered = problems = 0
    receipted = set(conn.execute(select(ledger.c.message_id).where(ledger.c.hop == "receipt")).scalars())
    rows = conn.execute(
        select(ledger.c.message_id, ledger.c.idempotency_key, ledger.c.case_number, deliveries.c.receipt)
        .select_from(ledger.outerjoin(deliveries, deliveries.c.idempotency_key == ledger.c.idempotency_key))
        .where(ledger.c.hop == "delivered"))
    for message_id, key, case_number, receipt_json in rows:
        delivered += 1
        problem = None
        if receipt_json is None:
            problem = "no stored receipt"
        elif not verify_receipt(json.loads(receipt_json), secret):
            problem = "stored receipt's signature does not verify"
        elif message_id not in receipted:
            problem = "no receipt event in the ledger"
        if problem:
            problems += 1
            if len(gaps) < limit:  # the first few name the pattern; the rest are counted
                gaps.append(f"case {case_number or '?'} message {message_id}: delivered but {problem}")
    return delivered, gaps, problems


def _in_flight(conn) -> int:
    # Published idempotency keys with no delivery yet (replays publish the same key again: count keys, not events).
    return conn.execute(
        select(func.count(func.distinct(ledger.c.idempotency_key)))
        .select_from(ledger.outerjoin(deliveries, deliveries.c.idempotency_key == ledger.c.idempotency_key))
        .where(and_(ledger.c.hop == "published", deliveries.c.idempotency_key.is_(None)))).scalar() or 0


def reconcile(store: Store, platform, *, secret: str | None = None, list_limit: int = 20) -> ReconcileReport:
    """Compare the ledger with the platform (`platform` is a tongban.platform.client.PlatformClient)."""
    secret = secret or platform.settings.platform_secret
    report = ReconcileReport()
    with store.read() as conn:
        report.delivered_events, receipt_gaps, problems = _receipt_gaps(conn, secret, list_limit)
        report.delivered_cases_by_item = _ledger_cases_by_item(conn)
        report.in_flight = _in_flight(conn)
    report.gaps.extend(receipt_gaps)
    if problems > len(receipt_gaps):
        report.gaps.append(f"… and {problems - len(receipt_gaps)} more deliveries without a valid receipt")
    stats = platform.stats()
    report.platform_cases_by_item = {str(k): int(v) for k, v in (stats.get("by_item") or {}).items()}
    for item in sorted(set(report.delivered_cases_by_item) | set(report.platform_cases_by_item)):
        ours, theirs = report.delivered_cases_by_item.get(item, 0), report.platform_cases_by_item.get(item, 0)
        if ours != theirs:
            report.gaps.append(f"item {item}: ledger has {ours} delivered cases, the platform holds {theirs}")
    return report


__all__ = ["reconcile", "ReconcileReport"]
