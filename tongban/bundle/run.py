"""One run of the bundle scatter-gather: fetch new bundle applications from the platform, put a step on the bus for
each new one and an `evaluate` for every open bundle, then consume the bundle queue until it is idle.

Like an ingest run it is periodic (Airflow, or `tongban bundle run` by hand): between runs the departments work, the
ordinary ingest of each department system brings their cases back, and the next run gathers them. The platform's
application sequence is a watermark that moves only after the broker confirmed every step (nothing is lost); a
re-fetched application is received once (the bundle tables say it is known).
"""
from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import select

from tongban.store import Store
from tongban.store import state as st

from . import tables as t
from .definition import BundleDefinition
from .gather import BundleWorker, step_envelope
from .platform_api import fetch_applications
from .topology import bundles_work

WATERMARK = "platform:bundle-applications"


def run_bundles(*, store: Store, bus, platform, definitions: dict[str, BundleDefinition], work=None,
                clock: Callable[[], datetime] | None = None, idle_exit: float = 0.5, lanes: int = 4,
                submit_seams: dict | None = None, metrics=None, policy=None) -> dict[str, Any]:
    work = work or bundles_work()
    with store.read() as conn:
        after = int(st.get_watermark(conn, WATERMARK) or 0)
    fetched: list[dict] = []
    while True:
        items, last = fetch_applications(platform, after)
        fetched += items
        if not items or last <= after:
            break
        after = last
    with store.read() as conn:
        open_ids = conn.execute(select(t.bundle_applications.c.application_id, t.bundle_applications.c.bundle)
                                .where(t.bundle_applications.c.state == t.OPEN)).all()
    steps = [step_envelope(a["application_id"], "receive", {"application": a}, str(a.get("bundle")))
             for a in fetched]
    steps += [step_envelope(row.application_id, "evaluate", bundle=row.bundle) for row in open_ids]
    bus.declare(work)
    if steps:
        bus.publish(work, steps)  # returns once the broker confirmed every step
    if fetched:
        with store.write() as conn:
            st.set_watermark(conn, WATERMARK, str(after))
    worker = BundleWorker(store=store, bus=bus, platform=platform, definitions=definitions, work=work, clock=clock,
                          submit_seams=submit_seams, metrics=metrics, policy=policy)
    stats = worker.run(stop=threading.Event(), idle_exit=idle_exit, lanes=lanes)
    return {"fetched": len(fetched), "evaluated": len(open_ids), **stats}
