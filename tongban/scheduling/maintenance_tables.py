"""Announced maintenance windows (报备) in the store, on the shared metadata, and the ledger events they make:
`maintenance_announced` when one is added, `maintenance_skipped` when an ingest run is skipped because of one
(tongban.scheduling.maintenance has the windows themselves; the mapping file's own windows are not stored)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Column, Index, String, Table, Text, select

from tongban.scheduling.maintenance import Window, one_off
from tongban.store import Store
from tongban.store.tables import key_column, metadata, operator_column, timestamp_column, timestamp_columns

maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("window_id", String(32), primary_key=True),
    key_column("system", nullable=False),
    *timestamp_columns("starts_at", "ends_at"),   # UTC, ISO 8601 (sorts as it compares)
    Column("reason", Text, nullable=False),
    operator_column("announced_by", nullable=False),
    timestamp_column("announced_at"),
)
Index("ix_maintenance_system", maintenance_windows.c.system, maintenance_windows.c.ends_at)
TABLES = [maintenance_windows]   # created by migration 0004 (tongban/store/migrations)


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _window(row) -> Window:
    return one_off(row.starts_at, row.ends_at, row.reason, f"announced {row.window_id} by {row.announced_by}")


def add_window(store: Store, system: str, window: Window, operator: str) -> dict[str, Any]:
    """Store one announced window and its ledger event, in one transaction."""
    from tongban.audit import ledger
    from tongban.audit.ledger import LedgerEvent

    row = {"window_id": uuid.uuid4().hex, "system": system, "starts_at": _utc(window.start),
           "ends_at": _utc(window.end), "reason": window.reason, "announced_by": operator,
           "announced_at": _utc(datetime.now(timezone.utc))}
    with store.write() as conn:
        conn.execute(maintenance_windows.insert().values(**row))
        ledger.append(conn, [LedgerEvent("maintenance_announced", {
            "window_id": row["window_id"], "from": row["starts_at"], "to": row["ends_at"], "reason": window.reason,
            "operator": operator}, system=system)])
    return row


def announced(store: Store, system: str | None = None) -> list[tuple[str, Window]]:
    """(system, window) for every announced window, oldest start first."""
    query = select(maintenance_windows).order_by(maintenance_windows.c.starts_at)
    if system is not None:
        query = query.where(maintenance_windows.c.system == system)
    with store.read() as conn:
        return [(row.system, _window(row)) for row in conn.execute(query)]


def record_skip(store: Store, system: str, window: Window, run: str | None) -> None:
    """The ledger event of a run skipped for a window."""
    from tongban.audit import ledger
    from tongban.audit.ledger import LedgerEvent

    with store.write() as conn:
        ledger.append(conn, [LedgerEvent("maintenance_skipped", {
            "window": window.describe(), "origin": window.origin, "reason": window.reason, "run": run},
            system=system)])
