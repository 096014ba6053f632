"""The audit chore an ops DAG runs (dags/tongban_audit.py): check the ledger against the checkpoints it has, then
sign a new one. A ledger that no longer matches is the finding, never retried (Permanent), and no new checkpoint
is signed over it."""
from __future__ import annotations

import logging
from typing import Any

from tongban.scheduling.common import Permanent

log = logging.getLogger("tongban.audit")


def checkpoint_task() -> dict[str, Any]:
    from tongban import ledger
    from tongban.audit.checkpoints import take_checkpoint, verify_checkpoints
    from tongban.audit.keys import AuditKeyMissing, audit_signer, trust_config
    from tongban.seal.truststore import TrustStore
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    store = open_store(settings.db_url)
    try:
        signer = audit_signer(settings)
    except AuditKeyMissing as exc:
        raise Permanent(f"audit key: {exc}") from None
    chain = ledger.verify(store)
    if not chain.ok:
        raise Permanent(f"ledger BROKEN at event #{chain.broken_seq} (id {chain.broken_event_id}): {chain.reason}; "
                        f"no checkpoint signed")
    checked = verify_checkpoints(store, TrustStore.load(trust_config(settings)))
    if not checked.ok:
        raise Permanent(f"ledger does not match its signed checkpoints: {checked.reason}; no checkpoint signed")
    taken = take_checkpoint(store, signer)
    log.info("checkpoint #%s: %s events, root %s, %d earlier checkpoints consistent", taken["id"], taken["size"],
             taken["root"], checked.checkpoints)
    return {"id": taken["id"], "size": taken["size"], "root": taken["root"], "time": taken["time"],
            "checkpoints_verified": checked.checkpoints}
