"""The pipeline resolves applicants: cases carry the unified user id; an unknown applicant waits in
quarantine (stage "identity") and is replayed by `retry_unresolved` once the service knows them."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
from sqlalchemy import select

from tongban import codes
from tongban.bus.local import LocalBus
from tongban.identity import retry_unresolved
from tongban.pipeline.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.platform.client import PlatformClient
from tongban.settings import load
from tongban.store import Store
from tongban.store.tables import case_snapshots, quarantine

from tongban.store.at_rest import reveal

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def _snapshots(store) -> dict[str, dict]:
    with store.read() as conn:
        return {key: json.loads(reveal(s)) for key, s in conn.execute(select(case_snapshots.c.source_key, case_snapshots.c.snapshot))}


def test_applicants_resolve_unknown_ones_wait_and_are_replayed(sandbox_env, tmp_path):
    platform_url = sandbox_env.platform.url
    records = [r for r in sandbox_env.world.records() if r["zjlx"] == "SFZ"]
    victim = next(r for r in records if codes.normalise(r["zjhm"]).isascii() and r["zjhm"][-1].isdigit()
                  and len(r["zjhm"]) == 18)
    httpx.post(f"{platform_url}/_sandbox/users", json={"unknown": [victim["zjhm"]]}).raise_for_status()

    store = Store(f"sqlite:///{tmp_path}/t.db")
    bus, settings = LocalBus(store), load()
    platform = PlatformClient(settings)
    mapping = load_mapping(MAPPINGS / "cq-samr-rest.yaml")
    report = run_ingest(mapping, store=store, bus=bus, platform=platform)
    assert report.quarantine_reasons.get("identity: application.applicant_id_number", 0) >= 1

    snapshots = _snapshots(store)
    assert victim["ywh"] not in snapshots
    assert snapshots and all(s["application"]["applicant_user_id"].startswith("U") for s in snapshots.values())
    with store.read() as conn:
        [rule] = conn.execute(select(quarantine.c.rule).where(quarantine.c.stage == "identity",
                                                              quarantine.c.source_key == victim["ywh"])).scalars()
    assert "unknown" in rule and victim["zjhm"] not in rule

    # A re-run asks the unified user service nothing: every applicant is in the cache (negative answers too).
    asked = httpx.get(f"{platform_url}/_sandbox/users").json()["requests"]
    sandbox_env.world.advance(3)
    run_ingest(mapping, store=store, bus=bus, platform=platform)
    assert httpx.get(f"{platform_url}/_sandbox/users").json()["requests"] - asked <= \
        len({r["zjhm"] for r in sandbox_env.world.records()} - {r["zjhm"] for r in records})

    # Nothing changes while the service still does not know the applicant …
    assert retry_unresolved(store=store, platform=platform, bus=bus, mappings_dir=MAPPINGS)["replayed"] == 0
    # … and once it does, the waiting case is replayed and carries its user id.
    httpx.post(f"{platform_url}/_sandbox/users", json={"known": [victim["zjhm"]]}).raise_for_status()
    summary = retry_unresolved(store=store, platform=platform, bus=bus, mappings_dir=MAPPINGS)
    assert summary["resolved"] >= 1 and summary["replayed"] >= 1 and summary["waiting"] == 0
    assert _snapshots(store)[victim["ywh"]]["application"]["applicant_user_id"].startswith("U")
    platform.close()
