"""What operators read about bundles: one bundle with its members and who waits on whom, and the late members
(past their 承诺时限, not concluded) per department."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from tongban.store import Store

from . import tables as t
from .definition import BundleDefinition


def bundle_view(store: Store, application_id: str, definitions: dict[str, BundleDefinition]) -> dict | None:
    """The bundle and its members in dependency order; each member says what it waits on (`waiting_on`)."""
    with store.read() as conn:
        app = conn.execute(select(t.bundle_applications)
                           .where(t.bundle_applications.c.application_id == application_id)).first()
        if app is None:
            return None
        rows = {r.member: r for r in conn.execute(select(t.bundle_members)
                                                   .where(t.bundle_members.c.application_id == application_id))}
    defn = definitions.get(app.bundle)
    order = defn.order() if defn else sorted(rows)
    members = []
    for key in order:
        row = rows.get(key)
        if row is None:
            continue
        after = defn.members[key].after if defn else []
        waiting_on = [d for d in after if rows[d].state != t.GRANTED] if row.state == t.WAITING else []
        if row.state in (t.SUBMITTED, t.ACCEPTED):
            waiting_on = [f"{row.department} ({row.system})"]
        members.append({"member": key, "name": defn.members[key].name if defn else key, "state": row.state,
                        "department": row.department, "system": row.system, "item_code": row.item_code,
                        "reference": row.reference, "legacy_key": row.legacy_key, "case_number": row.case_number,
                        "submitted_at": row.submitted_at, "due_at": row.due_at, "accepted_at": row.accepted_at,
                        "concluded_at": row.concluded_at, "warned_at": row.warned_at, "after": after,
                        "waiting_on": waiting_on, "note": row.note})
    return {"application_id": app.application_id, "bundle": app.bundle, "name": defn.name if defn else app.bundle,
            "state": app.state, "result": app.result, "received_at": app.received_at,
            "accepted_pushed_at": app.accepted_pushed_at, "concluded_at": app.concluded_at, "members": members}


def late_members(store: Store, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """Members past their deadline and not concluded, per department (open bundles only)."""
    now = now or datetime.now(timezone.utc)
    m, a = t.bundle_members, t.bundle_applications
    with store.read() as conn:
        rows = conn.execute(select(m, a.c.bundle).join(a, a.c.application_id == m.c.application_id).where(
            a.c.state == t.OPEN, m.c.state.in_((t.SUBMITTED, t.ACCEPTED)), m.c.due_at.is_not(None))).all()
    late: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        due = datetime.fromisoformat(row.due_at)
        if now > due:
            late[row.department].append({
                "application_id": row.application_id, "bundle": row.bundle, "member": row.member,
                "system": row.system, "state": row.state, "case_number": row.case_number, "due_at": row.due_at,
                "late_by_hours": round((now - due).total_seconds() / 3600, 2), "warned": row.warned_at is not None})
    return dict(sorted(late.items()))


def trace_header(store: Store, ident: str, mappings_dir) -> dict | None:
    """For `tongban trace`: when `ident` is a bundle application, its view (and the text of it), else None."""
    from tongban.mapping.errors import MappingFileError

    from .definition import bundles_dir, load_bundles

    try:
        definitions = load_bundles(bundles_dir(mappings_dir))
    except MappingFileError:
        definitions = {}
    view = bundle_view(store, ident, definitions)
    if view is None:
        return None
    from tongban.cli.bundle import render_bundle

    return {**view, "text": render_bundle(view)}
