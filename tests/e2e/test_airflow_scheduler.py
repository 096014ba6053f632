"""A real Airflow scheduler runs the sandbox's ingest DAGs: `scripts/airflow-standalone --sandbox` (scheduler, DAG
processor, triggerer and API server; LocalExecutor; metadata in a PostgreSQL database of its own) schedules the
three ingest DAGs every minute while the legacy REST system is down for the first two attempts. Airflow retries
the task as the mapping file says, the cases reach the platform once, and the runs read as an operator expects.
(tests/airflow_cluster.py starts and always stops the processes.)"""
from __future__ import annotations

import httpx
import pytest

from tests.airflow_cluster import (
    REPO, SYSTEMS, Metadata, Processes, airflow_cli, api_ready, airflow_env, deliver, ledger_keys, pg_database, pg_schema,
    sandbox, wait_for, write_mappings,
)

pytestmark = [pytest.mark.scheduler, pytest.mark.timeout(600)]
DONE = {"success", "failed"}


def _finished(meta: Metadata, dag_id: str) -> list[dict]:
    return [r for r in meta.runs(dag_id) if r["run_type"] == "scheduled" and r["state"] in DONE]


def test_the_scheduler_retries_a_legacy_outage_as_the_mapping_says_and_delivers_once(tmp_path):
    with pg_database() as metadata_url, pg_schema() as store_url, sandbox(tmp_path / "home") as sb:
        mappings = write_mappings(tmp_path / "mappings", attempts=3)
        env = airflow_env(tmp_path, metadata_url, store_url, sb.env, mappings)
        # The legacy REST system answers 503 to the first two calls: the first two attempts of its first run fail.
        httpx.post(f"{sb.env['CQ_SAMR_URL']}/_sandbox/faults", json={"fail_next": 2, "status": 503}).raise_for_status()
        processes, meta = Processes(tmp_path / "logs"), Metadata(metadata_url)
        try:
            processes.start("standalone", [str(REPO / "scripts" / "airflow-standalone"), "--sandbox"], env)
            ingest_dags = {f"ingest__{s}" for s in SYSTEMS}
            wait_for("the DAG processor to store the ingest DAGs", lambda: ingest_dags <= set(meta.dags()),
                     240, processes)
            assert all(meta.dags()[d] for d in ingest_dags), "new DAGs start paused"
            wait_for("the API server", lambda: api_ready(env), 180, processes)
            airflow_cli(env, "dags", "unpause", "--treat-dag-id-as-regex", "--yes", "^ingest__")
            wait_for("two scheduled runs of ingest__cq-samr-rest and one of the others",
                     lambda: len(_finished(meta, "ingest__cq-samr-rest")) >= 2
                     and all(_finished(meta, d) for d in ingest_dags), 300, processes)
            samr = _finished(meta, "ingest__cq-samr-rest")
            pools = meta.pools()
            first = meta.tries("ingest__cq-samr-rest", samr[0]["run_id"], "ingest")
            second = meta.tries("ingest__cq-samr-rest", samr[1]["run_id"], "ingest")
            others = {d: _finished(meta, d)[0] for d in ingest_dags - {"ingest__cq-samr-rest"}}
            reports = {d: meta.tries(d, r["run_id"], "report") for d, r in others.items()}
        finally:
            processes.stop()
            meta.dispose()

        # What an operator sees: the first run succeeded on its third try (the two before it failed and were
        # retried, as `retries: {attempts: 3}` says), the next one on its first; the other systems ran too.
        assert [r["state"] for r in samr[:2]] == ["success", "success"]
        assert [t["try_number"] for t in first] == [1, 2, 3]
        assert [t["state"] for t in first][-1] == "success"
        assert all(t["state"] in ("failed", "up_for_retry") for t in first[:-1])
        assert [(t["try_number"], t["state"]) for t in second] == [(1, "success")]
        assert all(run["state"] == "success" for run in others.values()), others
        assert all(t[-1]["state"] == "success" for t in reports.values()), reports
        # Per-system limits: each system's pool, sized by its file's `concurrency:`; the ingest task takes it.
        assert pools["legacy__cq-samr-rest"] == 2 and pools["legacy__cq-hrss-soap"] == 1
        assert {t["pool"] for t in first} == {"legacy__cq-samr-rest"}

        # The cases reach the platform once: no event published twice, none delivered twice.
        published = ledger_keys(store_url, "published")
        assert published and len(published) == len(set(published))
        stats, platform = deliver(env)
        platform_stats = platform.get("/api/v1/stats")
        assert stats.duplicates == 0
        assert platform_stats["events"] == len(published) == stats.delivered
        assert platform_stats["cases"] > 0
