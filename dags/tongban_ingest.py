"""The ingest DAG factory: every mapping file in mappings/ becomes a DAG `ingest__<system>`.

A department onboards a legacy system by writing one YAML file; no Python. The file declares the schedule
(`schedule:`, cron or preset, in Asia/Shanghai time; none = triggered by hand) and the retry policy
(`retries: {attempts, delay_seconds, max_delay_seconds}`; exponential backoff, doubling up to the maximum).

Tasks (TaskFlow): check_mapping → ingest → report.
  check_mapping  re-reads the file at run time; a broken file fails at once, no retries.
  ingest         skipped (state `skipped`, no alert) while a maintenance window (维护窗口, 报备) covers now;
                 otherwise fetch from the watermark → map and validate → publish with confirms → advance the watermark.
                 Legacy or platform outages propagate and Airflow retries; the watermark only moves after the
                 broker confirmed everything, so a run that fails after its retries leaves nothing half-done.
  report         counts into the log and XCom; fails when every fetched record was quarantined.
The ingest task takes a slot of the system's pool `legacy__<system>` (`concurrency:` slots, created by
scripts/airflow-env.sh from the mapping files), so a fragile system never sees more parallel calls than that.
Watermarks live in the tongban store, not in Airflow Variables, so `tongban ingest` and Airflow agree.

A broken mapping file is left out here; dags/tongban_mapping_errors.py turns it into the import error that
names the file, the line and the rule, while every other DAG keeps loading.
"""
from __future__ import annotations

from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk import dag, task

from tongban.scheduling.dag_parts import START, build_each, fail_fast
from tongban.scheduling.ingest_plans import IngestPlan, discover
from tongban.scheduling.tasks import check_mapping_task, maintenance_skip, report_task, run_ingest_task


def build_ingest_dag(plan: IngestPlan):
    doc = (f"**{plan.department or plan.system}** — {plan.description}\n\n"
           f"Mapping file: `{plan.path}`. Schedule: `{plan.schedule or 'manual'}`. "
           f"Attempts: {plan.attempts}, first retry after {plan.delay_seconds:g} s, doubling up to "
           f"{plan.max_delay_seconds:g} s. Pool `{plan.pool}` ({plan.concurrency} slots); "
           f"{len(plan.maintenance)} maintenance windows in the file.")

    @dag(dag_id=plan.dag_id, schedule=plan.schedule, start_date=START, catchup=False,
         # One run at a time per source: two runs from the same watermark would only publish duplicates.
         max_active_runs=1, default_args=plan.retry_args(), tags=["tongban", "ingest"], doc_md=doc,
         description=f"ingest {plan.system} ({plan.department})"[:200])
    def ingest_dag():
        @task(retries=0)
        def check_mapping(path: str) -> dict:
            return fail_fast(check_mapping_task, path)

        @task(pool=plan.pool)
        def ingest(path: str, run_id: str | None = None) -> dict:
            skip = fail_fast(maintenance_skip, path, run_id)
            if skip:
                raise AirflowSkipException(skip)
            return fail_fast(run_ingest_task, path)

        @task(retries=0)
        def report(result: dict) -> dict:
            return fail_fast(report_task, result)

        checked = check_mapping(str(plan.path))
        result = ingest(str(plan.path))
        checked >> result
        report(result)

    return ingest_dag()


def build_all() -> dict[str, object]:
    plans, _errors = discover()  # the errors are reported by tongban_mapping_errors.py
    return build_each(plans, build_ingest_dag, "mapping file")


globals().update(build_all())
