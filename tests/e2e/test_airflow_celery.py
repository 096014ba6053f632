"""Scale-out on CeleryExecutor, as docs/airflow.md's several-machines recipe runs it (scripts/airflow-node): RabbitMQ
(a vhost of its own) as the broker, PostgreSQL as metadata database and result backend, two Celery workers. The
ingest tasks of different systems run on both; one worker is SIGKILLed in the middle of an ingest, and Airflow
retries that task on the other: every case reaches the platform, none twice."""
from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import func, select

from tests.airflow_cluster import (
    SYSTEMS, CeleryCluster, Metadata, Processes, airflow_cli, airflow_env, api_ready, deliver, ledger_keys,
    pg_database, pg_schema, sandbox, wait_for, write_mappings,
)
from tests.support import rabbit_vhost

pytestmark = [pytest.mark.celery, pytest.mark.timeout(600)]
SAMR = "ingest__cq-samr-rest"


def _valid_cases(world) -> int:
    bad = world.bad_cases()
    return sum(1 for k in world.keys() if world.record(k) is not None and k not in bad)


def _published_cases(store_url: str, system: str) -> int:
    from tongban.store import open_store
    from tongban.store.tables import ledger

    with open_store(store_url).read() as conn:
        return conn.execute(select(func.count(func.distinct(ledger.c.source_key))).where(
            ledger.c.hop == "published", ledger.c.system == system)).scalar()


def test_two_celery_workers_share_the_ingests_and_a_killed_workers_task_is_retried_on_the_other(tmp_path):
    with pg_database() as metadata_url, pg_schema() as store_url, rabbit_vhost("tongban-airflow") as broker, \
            sandbox(tmp_path / "home") as sb:
        mappings = write_mappings(tmp_path / "mappings", attempts=3, timeout=60)
        env = airflow_env(tmp_path, metadata_url, store_url, sb.env, mappings,
                          **CeleryCluster.settings(metadata_url, broker))
        # The legacy REST system answers its first call after 30 s: the ingest is mid-task long enough to kill.
        httpx.post(f"{sb.env['CQ_SAMR_URL']}/_sandbox/faults", json={"delay_next": 1, "seconds": 30}).raise_for_status()
        processes, meta = Processes(tmp_path / "logs"), Metadata(metadata_url)
        cluster = CeleryCluster(tmp_path, env, processes)
        try:
            cluster.start(workers=2)
            ingest_dags = {f"ingest__{s}" for s in SYSTEMS}
            wait_for("the ingest DAGs", lambda: ingest_dags <= set(meta.dags()), 240, processes)
            wait_for("the API server", lambda: api_ready(env), 180, processes)
            airflow_cli(env, "dags", "unpause", "--treat-dag-id-as-regex", "--yes", "^ingest__")

            def samr_running():
                rows = meta.rows("SELECT run_id, hostname FROM task_instance WHERE dag_id = :d AND task_id = 'ingest' "
                                 "AND state = 'running' AND try_number = 1", d=SAMR)
                return rows[0] if rows and rows[0]["hostname"] in cluster.workers else None

            running = wait_for("the cq-samr-rest ingest to be running", samr_running, 240, processes, every=0.5)
            victim = running["hostname"]
            time.sleep(2)  # inside its first legacy call now (it answers after 30 s)
            processes.kill_tree(cluster.workers[victim])  # SIGKILL the worker and its task process
            survivor = next(name for name in cluster.workers if name != victim)

            def samr_done():
                runs = [r for r in meta.runs(SAMR) if r["run_id"] == running["run_id"]]
                return runs and runs[0]["state"] in ("success", "failed")

            wait_for("the killed ingest to be retried and finish", samr_done, 300, processes)
            wait_for("a first run of every ingest DAG", lambda: all(
                any(r["state"] in ("success", "failed") for r in meta.runs(d)) for d in ingest_dags), 240, processes)
            samr_run = next(r for r in meta.runs(SAMR) if r["run_id"] == running["run_id"])
            tries = meta.tries(SAMR, running["run_id"], "ingest")
            firsts = {d: next(r for r in meta.runs(d) if r["state"] in ("success", "failed")) for d in ingest_dags}
            ran_on = meta.rows("SELECT dag_id, hostname FROM task_instance_history WHERE task_id = 'ingest' "
                               "UNION SELECT dag_id, hostname FROM task_instance WHERE task_id = 'ingest'")
        finally:
            processes.stop()
            meta.dispose()

        # The killed try is the victim's and failed (heartbeat lost); Airflow retried it on the survivor.
        assert samr_run["state"] == "success"
        assert tries[0]["hostname"] == victim and tries[0]["state"] in ("failed", "up_for_retry")
        assert tries[-1]["hostname"] == survivor and tries[-1]["state"] == "success"
        assert len(tries) <= 3  # within the mapping file's `retries: {attempts: 3}`
        assert all(run["state"] == "success" for run in firsts.values()), firsts
        # Ingest tasks of different systems ran, on both workers.
        assert {r["hostname"] for r in ran_on if r["hostname"]} == {"w1", "w2"}
        assert len({r["dag_id"] for r in ran_on}) == 3

        # Nothing lost, nothing twice: every valid legacy case published, no event published or delivered twice.
        assert _published_cases(store_url, "cq-samr-rest") == _valid_cases(sb.box.world) > 0
        published = ledger_keys(store_url, "published")
        assert len(published) == len(set(published))
        stats, platform = deliver(env)
        assert stats.duplicates == 0
        assert platform.get("/api/v1/stats")["events"] == len(published) == stats.delivered
