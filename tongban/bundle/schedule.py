"""The bundle chores as plain functions (the DAGs in dags/tongban_bundles.py call them; tests call them without
Airflow): one scatter-gather run, and the late members per department (预警)."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("tongban.bundle")


def _context():
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    return settings, open_store(settings.db_url)


def bundle_run_task() -> dict[str, Any]:
    from tongban.bundle.definition import bundles_dir, load_bundles
    from tongban.bundle.metrics import BundleMetrics
    from tongban.bundle.run import run_bundles
    from tongban.bundle.topology import bundles_work
    from tongban.bus import open_bus
    from tongban.platform.client import PlatformClient

    settings, store = _context()
    definitions = load_bundles(bundles_dir(settings.mappings_dir))
    bus, platform = open_bus(settings, announce=log.info), PlatformClient(settings)
    try:
        return run_bundles(store=store, bus=bus, platform=platform, definitions=definitions,
                           work=bundles_work(settings.queue_prefix), idle_exit=2.0, metrics=BundleMetrics())
    finally:
        bus.close()
        platform.close()


def bundle_late_task() -> dict[str, Any]:
    """The late members per department, logged one line per department (the task's result holds them all)."""
    from tongban.bundle.views import late_members

    _settings, store = _context()
    late = late_members(store)
    for department, members in late.items():
        log.warning("预警 %s: %d member(s) past their 承诺时限: %s", department, len(members),
                    ", ".join(f"{m['application_id']}/{m['member']}" for m in members[:20]))
    return {"late": sum(len(v) for v in late.values()), "departments": late}
