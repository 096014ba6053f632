"""The unified item catalogue (统一事项标准): served by the mock platform, synced with its version, diffed;
mapping tables checked against it; retired items keep cases out and list the affected mapping files."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tongban.bus.local import LocalBus
from tongban.catalog import (
    CatalogError, check_code, check_mapping_files, current, diff, get_version, sync, sync_and_report,
)
from tongban.pipeline.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.platform.client import PlatformClient, PlatformRejected
from tongban.settings import load
from tongban.store import Store
from tongban.store.tables import case_snapshots, quarantine
from tongban.store.at_rest import reveal

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SAMR = MAPPINGS / "cq-samr-rest.yaml"


def _samr_codes() -> dict[str, str]:
    with open(MAPPINGS / "tables" / "samr_items.csv", encoding="utf-8-sig") as handle:
        return {row["legacy_code"]: row["implementation_code"] for row in csv.DictReader(handle)}


def _publish(url: str, **change) -> int:
    response = httpx.post(f"{url}/_sandbox/catalog", json=change)
    response.raise_for_status()
    return response.json()["version"]


@pytest.fixture
def env(sandbox_env, tmp_path):
    store = Store(f"sqlite:///{tmp_path}/t.db")
    platform = PlatformClient(load())
    yield sandbox_env, store, platform
    platform.close()


def test_the_default_catalogue_holds_every_code_of_every_mapping_table(env):
    _, _, platform = env
    body = platform.get("/api/v1/catalog")
    served = {item["implementation_code"] for item in body["items"]}
    in_tables = set()
    for path in (MAPPINGS / "tables").glob("*.csv"):
        text = path.read_text(encoding="utf-8-sig")
        in_tables |= set(re.findall(r"\b[0-9A-HJ-NPQRTUWXY]{18}[1-7][0-9]{9}(?:[0-9]{3}|00Y)\b", text))
    assert body["version"] == 1 and in_tables and in_tables <= served
    assert all(item["status"] == "active" for item in body["items"])
    with pytest.raises(PlatformRejected) as caught:
        platform.get("/api/v1/catalog?version=99")
    assert caught.value.status == 404


def test_sync_stores_versions_and_diff_names_what_changed(env):
    servers, store, platform = env
    codes = _samr_codes()
    first = sync(store, platform)
    assert first.stored and first.catalogue.version == 1 and current(store).version == 1
    assert not sync(store, platform).stored  # the same version again is not stored twice

    replacement = codes["SX-0005"][:-3] + "999"
    _publish(servers.platform.url, retire=[codes["SX-0003"]], replace={codes["SX-0005"]: replacement},
             change_type={codes["SX-0014"]: "01"})
    second = sync(store, platform)
    assert second.stored and second.catalogue.version == 2
    changes = diff(get_version(store, 1), get_version(store, 2))
    assert changes.retired == [codes["SX-0003"]]
    assert changes.replaced == {codes["SX-0005"]: replacement} and changes.added == [replacement]
    assert changes.changed[codes["SX-0014"]] == {"item_type": ("07", "01")}
    # An older version can still be fetched on purpose.
    assert platform.get("/api/v1/catalog?version=1")["version"] == 1


def test_mapping_tables_are_checked_per_file_for_unknown_retired_and_wrong_type_codes(env, tmp_path):
    servers, store, platform = env
    codes = _samr_codes()
    _publish(servers.platform.url, retire=[codes["SX-0003"]], change_type={codes["SX-0014"]: "01"})
    catalogue = sync(store, platform).catalogue

    with pytest.raises(CatalogError) as caught:
        check_code(catalogue, codes["SX-0001"][:-3] + "777")
    assert caught.value.kind == "unknown"
    report = check_mapping_files([SAMR], catalogue)
    found = {(p.legacy_code, p.kind) for p in report[str(SAMR)]}
    assert found == {("SX-0003", "retired"), ("SX-0014", "wrong_type")}
    assert all("cq-samr-rest.yaml" in str(p) for p in report[str(SAMR)])


def test_a_retired_item_keeps_its_cases_out_and_the_sync_lists_affected_mappings_and_waiting_cases(env):
    servers, store, platform = env
    bus = LocalBus(store)
    mapping = load_mapping(SAMR)
    run_ingest(mapping, store=store, bus=bus, platform=platform)  # syncs version 1 on its own first
    assert current(store).version == 1
    code = _item_with_most_open_cases(store)
    legacy = next(k for k, v in _samr_codes().items() if v == code)

    _publish(servers.platform.url, retire=[code])
    report = sync_and_report(store=store, platform=platform, mappings_dir=MAPPINGS)
    assert report["version"] == 2 and report["diff"]["retired"] == [code]
    [affected] = [row for row in report["affected"] if row["mapping_file"].endswith("cq-samr-rest.yaml")]
    assert affected["legacy_code"] == legacy and affected["change"] == "retired"
    assert affected["open_cases"] >= 1
    problems = report["mapping_problems"][str(SAMR)]
    assert [(p["legacy_code"], p["kind"]) for p in problems] == [(legacy, "retired")]

    before = _sequences(store, code)
    servers.world.advance(30)
    result = run_ingest(mapping, store=store, bus=bus, platform=platform)
    assert result.quarantine_reasons.get("catalog: item_code", 0) >= 1
    with store.read() as conn:
        rules = conn.execute(select(quarantine.c.rule).where(quarantine.c.stage == "catalog")).scalars().all()
    assert rules and all(code in rule and "retired" in rule for rule in rules)
    # No case of the retired item got further: nothing of theirs was published in the second run.
    assert _sequences(store, code) == before


def _item_with_most_open_cases(store) -> str:
    from collections import Counter

    with store.read() as conn:
        snapshots = [json.loads(reveal(s)) for s in conn.execute(select(case_snapshots.c.snapshot)).scalars()]
    return Counter(s["item_code"] for s in snapshots if not s.get("conclusion")).most_common(1)[0][0]


def _sequences(store, code) -> dict[str, int]:
    with store.read() as conn:
        rows = conn.execute(select(case_snapshots.c.source_key, case_snapshots.c.last_sequence,
                                   case_snapshots.c.snapshot)).all()
    return {key: seq for key, seq, snapshot in rows if json.loads(reveal(snapshot))["item_code"] == code}


def test_catalog_cli_sync_diff_and_check(sandbox_env):
    from tongban.cli.catalog import app

    runner = CliRunner()
    codes = _samr_codes()
    synced = runner.invoke(app, ["sync", "--mappings", str(MAPPINGS)])
    assert synced.exit_code == 0, synced.output
    assert "version (none) → 1" in synced.output and "cq-samr-rest.yaml: ok" in synced.output
    _publish(sandbox_env.platform.url, retire=[codes["SX-0007"]])
    synced = runner.invoke(app, ["sync", "--mappings", str(MAPPINGS)])
    assert f"retired   {codes['SX-0007']}" in synced.output
    assert "affected: cq-samr-rest.yaml SX-0007" in synced.output
    changed = runner.invoke(app, ["diff", "1", "2"])
    assert changed.exit_code == 0 and f"retired   {codes['SX-0007']}" in changed.output
    checked = runner.invoke(app, ["check", str(SAMR)])
    assert checked.exit_code == 1 and "retired" in checked.output and "SX-0007" in checked.output
    missing = runner.invoke(app, ["diff", "7", "2"])
    assert missing.exit_code == 1
