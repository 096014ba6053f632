"""Reconciliation: per batch, the report that proves completeness — or says what is missing.

Columns (the CLI's table and `--json` carry the same names):

    received     records read from the batch (exact duplicates and damaged rows included)
    duplicates   exact duplicates of an earlier record of the same batch (routed once, not again)
    routed       distinct records routed to a district, a county or the city
    quarantined  distinct records quarantined with a reason (stages: read, mapping, routing)
    delivered    routed records a district sink accepted
    held         routed records the district sink already held (delivered before: same idempotency key)
    parked       routed records a sink kept refusing (`tongban parked replay` sends them again)
    pending      routed records not yet delivered, held or parked (run `tongban flowback deliver`)

    received = duplicates + routed + quarantined     routed = delivered + held + parked + pending (per target)

A batch **balances** only when it is done (read completely, the manifest's count and digest match), both sums
hold, nothing is parked or pending, and something reached the districts: a batch whose every record was
quarantined (a source file that does not fit the batch) never balances. Each reason it does not is one `gap`.
"""
from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select

from tongban.codes import CHONGQING_UNITS
from tongban.store import Store

from .config import CITY
from .tables import flowback_batches, flowback_deliveries, flowback_records


@dataclass
class TargetLine:
    target: str
    name: str
    routed: int = 0
    delivered: int = 0
    held: int = 0
    parked: int = 0

    @property
    def pending(self) -> int:
        return self.routed - self.delivered - self.held - self.parked


def _over_targets(column: str) -> property:
    """A batch's total of one column of its target lines."""
    return property(lambda batch: sum(getattr(line, column) for line in batch.targets))


@dataclass
class BatchReconciliation:
    batch_id: str
    source: str
    status: str                 # reading | incomplete | done
    problem: str | None
    received_at: str
    times_received: int
    manifest_count: int
    manifest_digest: str
    received: int
    duplicates: int
    routed: int
    quarantined: int
    digest: str | None
    targets: list[TargetLine] = field(default_factory=list)
    quarantined_by_stage: dict[str, int] = field(default_factory=dict)
    superseded: int = 0         # records an earlier read saw that the last read did not
    gaps: list[str] = field(default_factory=list)

    # The batch's totals of the per-target columns.
    delivered = _over_targets("delivered")
    held = _over_targets("held")
    parked = _over_targets("parked")
    pending = _over_targets("pending")

    @property
    def balanced(self) -> bool:
        return not self.gaps

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(balanced=self.balanced, delivered=self.delivered, held=self.held, parked=self.parked,
                    pending=self.pending)
        for line, obj in zip(data["targets"], self.targets):
            line["pending"] = obj.pending
        return data


def _gaps(r: BatchReconciliation) -> list[str]:
    gaps = []
    if r.status != "done":
        why = r.problem or "reading did not finish"
        gaps.append(f"not done ({r.status}): {why} — the batch stays in the source; fix it (or the source file) and "
                    f"run `tongban flowback retry {r.batch_id} <source file>`")
    if r.received != r.duplicates + r.routed + r.quarantined:
        gaps.append(f"received {r.received} ≠ duplicates {r.duplicates} + routed {r.routed} + "
                    f"quarantined {r.quarantined}")
    if r.status == "done" and r.received != r.manifest_count:
        gaps.append(f"records in {r.received} ≠ manifest count {r.manifest_count}")
    if r.status == "done" and r.digest != r.manifest_digest:
        gaps.append(f"digest {str(r.digest)[:12]}… ≠ manifest digest {r.manifest_digest[:12]}…")
    if sum(t.routed for t in r.targets) != r.routed:
        gaps.append(f"routed per target {sum(t.routed for t in r.targets)} ≠ routed {r.routed}")
    for t in r.targets:
        if t.pending > 0:
            gaps.append(f"{t.target} {t.name}: {t.pending} of {t.routed} not yet delivered (run `tongban flowback deliver`)")
        elif t.pending < 0:
            gaps.append(f"{t.target} {t.name}: settled {-t.pending} more than routed")
        if t.parked:
            gaps.append(f"{t.target} {t.name}: {t.parked} parked by the sink (`tongban parked list`, then "
                        f"`tongban parked replay`)")
    if r.routed == 0 or r.delivered + r.held == 0:
        stages = ", ".join(f"{k} {v}" for k, v in sorted(r.quarantined_by_stage.items())) or "none"
        gaps.append(f"nothing was delivered: {r.quarantined} of {r.received} records quarantined (by stage: {stages})"
                    + (" — if the source file does not fit this batch, fix it and run "
                       f"`tongban flowback retry {r.batch_id} <source file>`" if r.quarantined else ""))
    return gaps


def _name(target: str) -> str:
    return "市级" if target == CITY else CHONGQING_UNITS.get(target, "?")


def reconcile(store: Store, batch_id: str | None = None) -> list[BatchReconciliation]:
    """One reconciliation per batch (every batch when none is named; [] if the named one is unknown)."""
    query = select(flowback_batches).order_by(flowback_batches.c.received_at)
    if batch_id is not None:
        query = query.where(flowback_batches.c.batch_id == batch_id)
    results = []
    with store.read() as conn:
        for row in conn.execute(query).mappings().all():
            rec = flowback_records.c
            current = (rec.batch_id == row["batch_id"]) & (rec.run_id == row["run_id"])
            outcomes = dict(conn.execute(select(rec.outcome, func.count()).where(current).group_by(rec.outcome)).all())
            distinct = sum(outcomes.values())
            r = BatchReconciliation(
                batch_id=row["batch_id"], source=row["source"], status=row["status"], problem=row["problem"],
                received_at=row["received_at"], times_received=row["times_received"],
                manifest_count=row["manifest_count"], manifest_digest=row["manifest_digest"],
                received=row["records_in"], duplicates=row["records_in"] - distinct,
                routed=outcomes.get("routed", 0), quarantined=outcomes.get("quarantined", 0), digest=row["digest"])
            r.superseded = conn.execute(select(func.count()).select_from(flowback_records).where(
                rec.batch_id == row["batch_id"], rec.run_id != row["run_id"])).scalar() or 0
            r.quarantined_by_stage = dict(conn.execute(
                select(rec.stage, func.count()).where(current, rec.outcome == "quarantined").group_by(rec.stage)).all())
            lines: dict[str, TargetLine] = {}
            settled = conn.execute(
                select(rec.target, flowback_deliveries.c.status, func.count())
                .select_from(flowback_records.outerjoin(flowback_deliveries,
                                                        flowback_deliveries.c.message_id == rec.message_id))
                .where(current, rec.outcome == "routed").group_by(rec.target, flowback_deliveries.c.status))
            for target, status, n in settled:
                line = lines.setdefault(target, TargetLine(target, _name(target)))
                line.routed += n
                if status in ("delivered", "held", "parked"):
                    setattr(line, status, getattr(line, status) + n)
            r.targets = sorted(lines.values(), key=lambda t: (t.target == CITY, t.target))
            r.gaps = _gaps(r)
            results.append(r)
    return results


def _pad(text: str, width: int) -> str:
    """Left-justify counting CJK characters as two columns, so the table lines up in a terminal."""
    shown = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - shown)


def render(r: BatchReconciliation) -> str:
    """The reconciliation as text (the CLI prints this)."""
    digest_state = "matches" if r.digest == r.manifest_digest else "DOES NOT MATCH"
    stages = ", ".join(f"{k} {v}" for k, v in sorted(r.quarantined_by_stage.items()))
    lines = [
        f"batch {r.batch_id}  source {r.source}  {r.status}  received {r.received_at}  (received {r.times_received}×)",
        f"  manifest: {r.manifest_count} records, digest {r.manifest_digest[:16]}…  → read {r.received}, "
        f"digest {digest_state}",
        f"  received {r.received} = duplicates {r.duplicates} + routed {r.routed} + quarantined {r.quarantined}"
        + (f"  (quarantined by stage: {stages})" if stages else ""),
        f"  routed {r.routed} = delivered {r.delivered} + held by sinks {r.held} + parked {r.parked} + pending {r.pending}",
        f"  {'target':<8} {'name':<20} {'routed':>8} {'delivered':>10} {'held':>6} {'parked':>8} {'pending':>8}",
    ]
    for t in r.targets:
        lines.append(f"  {t.target:<8} {_pad(t.name, 20)} {t.routed:>8} {t.delivered:>10} {t.held:>6} {t.parked:>8} "
                     f"{t.pending:>8}")
    if r.superseded:
        lines.append(f"  ({r.superseded} records seen by an earlier read are not in the last read)")
    lines.append("  BALANCED" if r.balanced else "  GAPS:\n" + "\n".join(f"    - {g}" for g in r.gaps))
    return "\n".join(lines)
