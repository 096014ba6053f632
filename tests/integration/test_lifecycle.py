"""The case lifecycle rules at ingest: a forbidden transition is quarantined with its rule, and a re-run after a
crash assigns no new 办件编号."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import ListAdapter
from tongban.audit import ledger
from tongban.operator import quarantine as q
from tongban.bus.base import PublishError
from tongban.bus.local import LocalBus
from tongban.bus.topology import cases_work
from tongban.pipeline.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.operator.actions import list_quarantine
from tongban.platform.client import PlatformClient
from tongban.settings import load
from tongban.store import state as st

SAMR = Path(__file__).resolve().parents[2] / "mappings" / "cq-samr-rest.yaml"




def _record(**changes):
    record = {"ywh": "LC-1", "sxbm": "SX-0001", "sqrxm": "张三", "zjlx": "SFZ", "zjhm": "11010519491231002X",
              "lxdh": None, "xzqh": "500103", "sqsj": "2024-03-01 09:30:00", "bjlx": "1", "sbqd": "窗口", "cl": [],
              "slsj": None, "slr": None, "cnbjsj": None, "hj": [], "bjsj": None, "bjjg": None, "bjsm": None,
              "zzmc": None, "zzbh": None, "yxqq": None, "yxqz": None, "pj": None, "gxsj": "2024-03-01 09:30:00"}
    record.update(changes)
    return record


class CrashingBus(LocalBus):
    def publish(self, work, envelopes):
        raise PublishError("broker connection lost (injected)")


def _mapping_without_identity(tmp_path):
    # The unified-user lookup is not what this test is about: keep the case to the numbering rules.
    text = SAMR.read_text(encoding="utf-8").replace("identity: {resolve: true}", "identity: {resolve: false}")
    shutil.copytree(SAMR.parent / "tables", tmp_path / "tables")
    path = tmp_path / "cq-samr-rest.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def mapping(tmp_path):
    return load_mapping(_mapping_without_identity(tmp_path))


def test_conclusion_before_acceptance_is_quarantined_not_pushed(sqlite_store, sandbox_env, mapping):
    bus, work = LocalBus(sqlite_store), cases_work("lc")
    jump = _record(bjsj="2024-03-05 10:00:00", bjjg="准予许可", gxsj="2024-03-05 10:00:00")  # no acceptance known
    report = run_ingest(mapping, store=sqlite_store, bus=bus, platform=PlatformClient(load()),
                        adapter=ListAdapter([jump]), work=work)
    assert report.events_published == 0 and report.quarantined == 1
    rows, total = list_quarantine(sqlite_store)
    assert total == 1 and rows[0]["stage"] == "state" and "conclusion before acceptance" in rows[0]["rule"]
    assert bus.depth(work.queue) == 0


def test_a_rerun_after_a_crash_keeps_the_case_number(sqlite_store, sandbox_env, mapping):
    platform = PlatformClient(load())
    with pytest.raises(PublishError):
        run_ingest(mapping, store=sqlite_store, bus=CrashingBus(sqlite_store), platform=platform,
                   adapter=ListAdapter([_record()]), work=cases_work("lc"))
    with sqlite_store.read() as conn:
        first = st.get_case_number(conn, "cq-samr-rest", "LC-1")
        assert st.get_watermark(conn, "cq-samr-rest") is None  # the crashed run did not move the watermark
    issued_before = platform.get("/api/v1/stats")["numbers_issued"]
    bus = LocalBus(sqlite_store)
    report = run_ingest(mapping, store=sqlite_store, bus=bus, platform=platform, adapter=ListAdapter([_record()]),
                        work=cases_work("lc"))
    # The crashed run staged its event with its ledger trail (transactional outbox); this run relays it first and
    # then finds the record unchanged: the event is on the bus once, published once.
    assert report.events_published == 0 and report.unchanged == 1
    assert bus.depth(cases_work("lc").queue) == 1
    assert ledger.count_by_hop(sqlite_store)["published"] == 1
    with sqlite_store.read() as conn:
        assert st.get_case_number(conn, "cq-samr-rest", "LC-1") == first
    assert platform.get("/api/v1/stats")["numbers_issued"] == issued_before
    assert q.counts(sqlite_store)["quarantined"] == 0


def test_a_quarantined_record_is_replayed_once_its_mapping_is_fixed(sqlite_store, sandbox_env, tmp_path, mapping):
    from tongban.operator.actions import replay_quarantine

    bus, work, platform = LocalBus(sqlite_store), cases_work("lc"), PlatformClient(load())
    unknown_item = _record(ywh="LC-2", sxbm="SX-0777")
    report = run_ingest(mapping, store=sqlite_store, bus=bus, platform=platform, adapter=ListAdapter([unknown_item]),
                        work=work)
    assert report.quarantined == 1 and report.events_published == 0
    # The department adds the missing item to its table; the operator replays the quarantined record.
    table = tmp_path / "tables" / "samr_items.csv"
    first_code = table.read_text(encoding="utf-8").splitlines()[1].split(",")[1]
    with table.open("a", encoding="utf-8") as handle:
        handle.write(f"SX-0777,{first_code},补录事项,01\n")
    result = replay_quarantine(sqlite_store, bus=bus, platform=platform, mappings_dir=tmp_path, work=work)
    assert (result.selected, result.replayed, result.republished, result.skipped) == (1, 1, 0, 0)
    assert str(result).startswith("replayed 1 records")
    assert q.counts(sqlite_store)["quarantined"] == 0
    assert bus.depth(work.queue) == 1  # the case's application is on its way
    rows, total = list_quarantine(sqlite_store, status="replayed")
    assert total == 1 and rows[0]["source_key"] == "LC-2"


def test_records_with_personal_data_are_encrypted_at_rest(sqlite_store, sandbox_env, mapping):
    from sqlalchemy import select

    from tongban.store.at_rest import reveal
    from tongban.store.tables import case_snapshots, quarantine

    bus, platform = LocalBus(sqlite_store), PlatformClient(load())
    good, bad = _record(ywh="PII-1"), _record(ywh="PII-2", sxbm="SX-9999")
    run_ingest(mapping, store=sqlite_store, bus=bus, platform=platform, adapter=ListAdapter([good, bad]), work=cases_work("p"))
    with sqlite_store.read() as conn:
        stored = [r for (r,) in conn.execute(select(case_snapshots.c.snapshot))] + \
                 [r for (r,) in conn.execute(select(quarantine.c.record))]
    assert len(stored) == 2
    assert not any("11010519491231002X" in s or "张三" in s for s in stored)  # a copied database file gives nothing away
    assert all("11010519491231002X" in reveal(s) for s in stored)  # and tongban itself can still replay them
