"""`tongban catalog sync`: fetch the unified item catalogue from the platform and keep every version seen."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tongban.audit import ledger
from tongban.bus.envelope import canonical_json, utcnow
from tongban.audit.ledger import LedgerEvent
from tongban.store import Store

from .catalogue import CatalogDiff, Catalogue, diff
from .tables import catalog_versions

log = logging.getLogger("tongban.catalog")


@dataclass
class SyncResult:
    catalogue: Catalogue
    previous: Catalogue | None
    diff: CatalogDiff
    stored: bool          # False: the platform serves what we already had


def _row_catalogue(row) -> Catalogue:
    return Catalogue.from_json({"version": row.version, "published_at": row.published_at,
                                "items": json.loads(row.items)})


def current(store: Store) -> Catalogue | None:
    """The catalogue synced last (the one cases are checked against), or None before the first sync."""
    with store.read() as conn:
        row = conn.execute(select(catalog_versions).order_by(catalog_versions.c.id.desc()).limit(1)).first()
    return _row_catalogue(row) if row else None


def get_version(store: Store, version: int) -> Catalogue | None:
    with store.read() as conn:
        row = conn.execute(select(catalog_versions).where(catalog_versions.c.version == version)
                           .order_by(catalog_versions.c.id.desc()).limit(1)).first()
    return _row_catalogue(row) if row else None


def versions(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(r) for r in conn.execute(
            select(catalog_versions.c.id, catalog_versions.c.version, catalog_versions.c.item_count,
                   catalog_versions.c.published_at, catalog_versions.c.synced_at, catalog_versions.c.digest)
            .order_by(catalog_versions.c.id)).mappings()]


def sync(store: Store, platform: Any, *, version: int | None = None) -> SyncResult:
    """Fetch the catalogue (latest, or `version`) and store it unless it is the one we have."""
    body = platform.catalog(version)  # one signed call through the platform client
    fetched = Catalogue.from_json(body)
    items = body.get("items") or []
    digest = hashlib.sha256(canonical_json(items)).hexdigest()
    previous = current(store)
    with store.read() as conn:
        last = conn.execute(select(catalog_versions.c.version, catalog_versions.c.digest)
                            .order_by(catalog_versions.c.id.desc()).limit(1)).first()
    changes = diff(previous, fetched)
    if last is not None and last.version == fetched.version and last.digest == digest:
        return SyncResult(fetched, previous, changes, stored=False)
    with store.write() as conn:
        conn.execute(catalog_versions.insert().values(
            version=fetched.version, digest=digest, published_at=fetched.published_at, synced_at=utcnow(),
            item_count=len(items), items=json.dumps(items, ensure_ascii=False, sort_keys=True)))
        ledger.append(conn, [LedgerEvent("catalog_synced", {
            "version": fetched.version, "previous_version": previous.version if previous else None,
            "items": len(items), "digest": digest, "added": len(changes.added), "retired": len(changes.retired),
            "replaced": len(changes.replaced), "removed": len(changes.removed), "changed": len(changes.changed)})])
    log.info("item catalogue version %s synced (%d items)", fetched.version, len(items))
    return SyncResult(fetched, previous, changes, stored=True)
