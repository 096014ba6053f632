"""Reconciliation: per batch, the manifest that proves completeness.

    records in            = routed + quarantined          (every record is accounted for)
    records in            = the source manifest's count
    digest over records   = the source manifest's digest
    per district: routed  = delivered + duplicate + parked (nothing still on its way, nothing lost)

Only the messages of the batch's completed run count (an interrupted run's leftovers are shown as
superseded). Any inequality is a gap; `balanced` is False when there is one.
"""
from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select

from tongban.codes import CHONGQING_UNITS
from tongban.store import Store
from tongban.store.tables import quarantine

from .config import CITY
from .tables import ensure_tables, flowback_batches, flowback_deliveries, flowback_routes


@dataclass
class TargetLine:
    target: str
    name: str
    routed: int = 0
    delivered: int = 0
    duplicate: int = 0
    parked: int = 0

    @property
    def pending(self) -> int:
        return self.routed - self.delivered - self.duplicate - self.parked


@dataclass
class BatchReconciliation:
    batch_id: str
    source: str
    status: str
    received_at: str
    times_received: int
    manifest_count: int
    manifest_digest: str
    records_in: int
    routed: int
    quarantined: int
    digest: str | None
    targets: list[TargetLine] = field(default_factory=list)
    superseded: int = 0  # settled messages of an earlier, interrupted run
    quarantined_by_field: dict[str, int] = field(default_factory=dict)
    gaps: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.gaps

    def to_dict(self) -> dict:
        data = asdict(self)
        data["balanced"] = self.balanced
        for line, obj in zip(data["targets"], self.targets):
            line["pending"] = obj.pending
        return data


def _gaps(r: BatchReconciliation) -> list[str]:
    gaps = []
    if r.status != "routed":
        gaps.append(f"routing did not finish (status {r.status}): run the source again")
    if r.records_in != r.routed + r.quarantined:
        gaps.append(f"records in {r.records_in} ≠ routed {r.routed} + quarantined {r.quarantined}")
    if r.status == "routed" and r.records_in != r.manifest_count:
        gaps.append(f"records in {r.records_in} ≠ manifest count {r.manifest_count}")
    if r.status == "routed" and r.digest != r.manifest_digest:
        gaps.append(f"digest {str(r.digest)[:12]}… ≠ manifest digest {r.manifest_digest[:12]}…")
    if sum(t.routed for t in r.targets) != r.routed:
        gaps.append(f"routed per district {sum(t.routed for t in r.targets)} ≠ routed {r.routed}")
    for t in r.targets:
        if t.pending:
            what = "not yet delivered or parked" if t.pending > 0 else "settled more than routed"
            gaps.append(f"{t.target} {t.name}: routed {t.routed} ≠ delivered {t.delivered} + duplicate {t.duplicate} "
                        f"+ parked {t.parked} ({abs(t.pending)} {what})")
    return gaps


def reconcile(store: Store, batch_id: str | None = None) -> list[BatchReconciliation]:
    """One reconciliation per batch (every batch when none is named; [] if the named one is unknown)."""
    ensure_tables(store)
    query = select(flowback_batches).order_by(flowback_batches.c.received_at)
    if batch_id is not None:
        query = query.where(flowback_batches.c.batch_id == batch_id)
    results = []
    with store.read() as conn:
        for row in conn.execute(query).mappings().all():
            r = BatchReconciliation(
                batch_id=row["batch_id"], source=row["source"], status=row["status"], received_at=row["received_at"],
                times_received=row["times_received"], manifest_count=row["manifest_count"],
                manifest_digest=row["manifest_digest"], records_in=row["records_in"], routed=row["routed"],
                quarantined=row["quarantined"], digest=row["digest"])
            lines: dict[str, TargetLine] = {}
            for target, routed in conn.execute(select(flowback_routes.c.target, flowback_routes.c.routed).where(
                    flowback_routes.c.batch_id == r.batch_id, flowback_routes.c.run_id == row["run_id"])):
                lines[target] = TargetLine(target, "市级" if target == CITY else CHONGQING_UNITS.get(target, "?"), routed)
            settled = conn.execute(
                select(flowback_deliveries.c.run_id, flowback_deliveries.c.target, flowback_deliveries.c.status,
                       func.count()).where(flowback_deliveries.c.batch_id == r.batch_id)
                .group_by(flowback_deliveries.c.run_id, flowback_deliveries.c.target, flowback_deliveries.c.status))
            for run_id, target, status, n in settled:
                if run_id != row["run_id"]:
                    r.superseded += n
                    continue
                line = lines.setdefault(target, TargetLine(target, CHONGQING_UNITS.get(target, "市级")))
                setattr(line, status, getattr(line, status) + n)
            r.quarantined_by_field = {f or "-": n for f, n in conn.execute(
                select(quarantine.c.field, func.count()).where(
                    quarantine.c.system == r.source, quarantine.c.stage == "routing",
                    quarantine.c.position.like(f"batch {r.batch_id} record %")).group_by(quarantine.c.field))}
            r.targets = sorted(lines.values(), key=lambda t: (t.target == CITY, t.target))
            r.gaps = _gaps(r)
            results.append(r)
    return results


def _pad(text: str, width: int) -> str:
    """Left-justify counting CJK characters as two columns, so the table lines up in a terminal."""
    shown = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - shown)


def render(r: BatchReconciliation) -> str:
    """The reconciliation manifest as text (the CLI prints this)."""
    digest_state = "matches" if r.digest == r.manifest_digest else "DOES NOT MATCH"
    lines = [
        f"batch {r.batch_id}  source {r.source}  received {r.received_at}  (received {r.times_received}×)",
        f"  manifest: {r.manifest_count} records, digest {r.manifest_digest[:16]}…  → received {r.records_in}, "
        f"digest {digest_state}",
        f"  records in {r.records_in} = routed {r.routed} + quarantined {r.quarantined}"
        + (f"  (quarantined by field: {', '.join(f'{k} {v}' for k, v in sorted(r.quarantined_by_field.items()))})"
           if r.quarantined_by_field else ""),
        f"  {'target':<8} {'name':<20} {'routed':>8} {'delivered':>10} {'duplicate':>10} {'parked':>8} {'pending':>8}",
    ]
    for t in r.targets:
        lines.append(f"  {t.target:<8} {_pad(t.name, 20)} {t.routed:>8} {t.delivered:>10} {t.duplicate:>10} {t.parked:>8} "
                     f"{t.pending:>8}")
    if r.superseded:
        lines.append(f"  ({r.superseded} settled messages belong to an earlier, interrupted run)")
    lines.append("  BALANCED" if r.balanced else "  GAPS:\n" + "\n".join(f"    - {g}" for g in r.gaps))
    return "\n".join(lines)
