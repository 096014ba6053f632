"""`tongban quarantine replay` for flowback records: each entry goes back through its own batch with the current
source file (tongban.flowback.run.retry_batch restricted to those entries), so that it is mapped and routed again
to the district it belongs to, counted in its batch's reconciliation, and never routed twice."""
from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from tongban.bus import Bus
from tongban.store import Store

from .mapping import FlowbackMapping
from .tables import flowback_records

log = logging.getLogger("tongban.flowback.replay")


def flowback_sources(mappings_dir: Path) -> dict[str, FlowbackMapping]:
    """system → source file, for every loadable file in <mappings>/flowback/sources (a broken one is logged)."""
    from tongban.mapping import MappingFileError, load_mapping

    sources: dict[str, FlowbackMapping] = {}
    folder = Path(mappings_dir) / "flowback" / "sources"
    for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
        try:
            mapping = load_mapping(path)
        except MappingFileError as exc:
            log.warning("flowback source file left out of replay: %s", exc)
            continue
        if getattr(mapping, "kind", None) == "flowback":
            sources[mapping.system] = mapping
    return sources


def replay_quarantined(store: Store, bus: Bus, rows: list[dict], sources: dict[str, FlowbackMapping]) -> tuple[int, int]:
    """Replay quarantine rows of flowback sources; returns (replayed, not replayable). Not replayable: damaged rows
    (stage read) and entries no batch of this store knows."""
    from .run import retry_batch

    ids = [r["id"] for r in rows]
    with store.read() as conn:
        owners = conn.execute(select(flowback_records.c.quarantine_id, flowback_records.c.batch_id)
                              .where(flowback_records.c.quarantine_id.in_(ids))).all()
    system_of = {r["id"]: r["system"] for r in rows}
    stage_of = {r["id"]: r["stage"] for r in rows}
    by_batch: dict[tuple[str, str], list[int]] = {}
    for qid, batch_id in owners:
        if stage_of.get(qid) in ("mapping", "routing"):
            by_batch.setdefault((system_of[qid], batch_id), []).append(qid)
    replayed = 0
    for (system, batch_id), qids in by_batch.items():
        retry_batch(sources[system], batch_id, store=store, bus=bus, deliver=False, quarantine_ids=qids)
        replayed += len(qids)
    return replayed, len(rows) - replayed
