"""Airflow scale-out: wall time of N ingest DAG runs on CeleryExecutor with one Celery worker, then with two, on
the same cluster (docs/airflow.md's several-machines recipe, started by scripts/airflow-node: RabbitMQ broker in a
vhost of its own, PostgreSQL metadata and results, the whole sandbox). Each worker runs one task at a time, so the
ratio says how much a second worker machine buys; it prints the ratio (these machines are noisy).

    .venv/bin/python benchmarks/airflow.py [--runs 2]     # runs per ingest DAG (3 DAGs) in each phase

Needs RabbitMQ (rabbitmqctl) and PostgreSQL as the tests do; takes about 2 minutes plus 30 s per run (a warm-up run per DAG goes first, unmeasured).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.airflow_cluster import (  # noqa: E402  (after the path set-up above)
    SYSTEMS, CeleryCluster, Metadata, Processes, airflow_cli, airflow_env, api_ready, pg_database, pg_schema,
    rabbit_vhost, sandbox, wait_for, write_mappings,
)

DAGS = [f"ingest__{s}" for s in SYSTEMS]


def _phase(env, meta: Metadata, processes: Processes, runs: int, label: str) -> float:
    """Trigger `runs` runs of every ingest DAG while paused, then unpause and time them to the last one's end."""
    airflow_cli(env, "dags", "pause", "--treat-dag-id-as-regex", "--yes", "^ingest__")
    before = {d: len(meta.runs(d)) for d in DAGS}
    for dag in DAGS:
        for n in range(runs):
            airflow_cli(env, "dags", "trigger", dag, "--run-id", f"bench-{label}-{n}")
    start = time.perf_counter()
    airflow_cli(env, "dags", "unpause", "--treat-dag-id-as-regex", "--yes", "^ingest__")

    def finished():
        return all(sum(1 for r in meta.runs(d) if r["state"] in ("success", "failed")) >= before[d] + runs
                   for d in DAGS)

    wait_for(f"{runs * len(DAGS)} runs ({label})", finished, 900, processes, every=0.5)
    elapsed = time.perf_counter() - start
    failed = [r["run_id"] for d in DAGS for r in meta.runs(d) if r["state"] == "failed"]
    if failed:
        raise SystemExit(f"runs failed: {failed}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per ingest DAG in each phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tongban-bench-airflow-") as tmp_name:
        tmp = Path(tmp_name)
        with pg_database() as metadata_url, pg_schema() as store_url, rabbit_vhost() as broker, \
                sandbox(tmp / "home", cases=40) as sb:
            mappings = write_mappings(tmp / "mappings", schedule=None)
            env = airflow_env(tmp, metadata_url, store_url, sb.env, mappings,
                              **CeleryCluster.settings(metadata_url, broker))
            processes, meta = Processes(tmp / "logs"), Metadata(metadata_url)
            cluster = CeleryCluster(tmp, env, processes)
            try:
                cluster.start(workers=1)
                wait_for("the ingest DAGs", lambda: set(DAGS) <= set(meta.dags()), 240, processes)
                wait_for("the API server", lambda: api_ready(env), 180, processes)
                _phase(env, meta, processes, 1, "warm-up")  # first parses, first connections: not measured
                one = _phase(env, meta, processes, args.runs, "1-worker")
                cluster.add_worker("w2")
                time.sleep(10)  # let the second worker join the queue
                two = _phase(env, meta, processes, args.runs, "2-workers")
            finally:
                processes.stop()
                meta.dispose()
    total = args.runs * len(DAGS)
    print(f"{total} ingest DAG runs ({len(DAGS)} DAGs × {args.runs}), one task at a time per worker:")
    print(f"  1 Celery worker : {one:6.1f} s")
    print(f"  2 Celery workers: {two:6.1f} s")
    print(f"  ratio 1 worker / 2 workers: {one / two:.2f}× (2.00× would be perfect scaling)")


if __name__ == "__main__":
    main()
