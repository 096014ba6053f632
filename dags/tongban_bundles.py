"""Bundle DAGs (一件事一次办, docs/bundles.md).

bundles__run      every 10 minutes: fetch new bundle applications, evaluate every open bundle (submit the members
                  that are ready, gather the cases the departments' ingest brought back, push 受理/办结, raise 预警).
ops__bundle_late  hourly: the members past their 承诺时限, per department, in the task log and its result.
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from tongban.scheduling.common import retry_args
from tongban.scheduling.dag_parts import START

RETRIES = retry_args(2, timedelta(seconds=60), timedelta(minutes=10))


@dag(dag_id="bundles__run", schedule="*/10 * * * *", start_date=START, catchup=False, max_active_runs=1,
     default_args=RETRIES, tags=["tongban", "bundles"],
     doc_md="One scatter-gather run of the bundled applications (tongban bundle run).")
def bundles_run():
    @task
    def run() -> dict:
        from tongban.bundle.schedule import bundle_run_task

        return bundle_run_task()

    run()


@dag(dag_id="ops__bundle_late", schedule="@hourly", start_date=START, catchup=False, max_active_runs=1,
     default_args=RETRIES, tags=["tongban", "operations", "bundles"],
     doc_md="Members of bundled applications past their 承诺时限, per department (预警).")
def ops_bundle_late():
    @task
    def late_members() -> dict:
        from tongban.bundle.schedule import bundle_late_task

        return bundle_late_task()

    late_members()


bundles_run()
ops_bundle_late()
