"""A ministry batch on an SFTP drop (`directory: sftp://…`): the files adapter reads it over SFTP, the manifest is
read through the same inbox, and once the batch is done both move to done/ on the server."""
from __future__ import annotations

import pytest

from sandbox.ministry import PINYIN, make_batch, write_batch
from test_adapter_sftp import USER, sftp_drop
from test_flowback import PINYIN_FIELDS, source_file
from tongban.bus.local import LocalBus
from tongban.flowback import run_flowback_source
from tongban.store import open_store

pytestmark = pytest.mark.timeout(60)


def test_a_batch_on_an_sftp_drop_is_routed_and_moved_to_done_on_the_server(tmp_path, monkeypatch, sinks, sinks_file):
    with sftp_drop(tmp_path, monkeypatch) as server:
        drop = server.root / "drop"
        batch = make_batch("MPS-SFTP-0001", 60, seed=21, duplicate_share=0.05)
        write_batch(drop, batch, "csv", dialect=PINYIN, encoding="gb18030")
        source = source_file(tmp_path, "mps-sftp", sinks_file, fields=PINYIN_FIELDS, key="LSH", source=f"""\
  adapter: files
  directory: sftp://{USER}@127.0.0.1:{server.port}/drop
  password_env: TEST_SFTP_PASSWORD
  known_hosts: {server.known_hosts(tmp_path / 'known_hosts')}
  timeout: 5
  encoding: gb18030
""")
        store = open_store(f"sqlite:///{tmp_path}/t.db")

        report = run_flowback_source(source, store=store, bus=LocalBus(store), prefix="t.flowback")

        assert report.balanced, [r.gaps for r in report.reconciliations]
        (r,) = report.reconciliations
        assert r.duplicates == batch.duplicates and r.received == len(batch.records)
        received = sinks.received_by_rowguid()
        assert received == {g: e for g, e in batch.expected.items() if not e.startswith("quarantine:")}
        assert sorted(p.name for p in (drop / "done").iterdir()) == ["MPS-SFTP-0001.csv", "MPS-SFTP-0001.manifest.json"]
