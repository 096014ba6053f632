"""The flowback DAG factory (数据回流): every ministry source file in mappings/flowback/sources/ becomes a DAG
`flowback__<system>`, on the schedule the file declares (`schedule:`, cron or preset, Asia/Shanghai time;
none = triggered by hand; the source configuration's default is @hourly).

One task, `flowback`: tongban.flowback.run_flowback_source(<the file>) reads the source's waiting batches through
the source file's adapter, maps and routes each record by its own 行政区划 to its district or county (or the city),
delivers to the source's district sinks and reconciles every batch against its manifest (docs/flowback.md). The
task returns the report (`FlowbackRunReport.to_dict()`) as its XCom and fails — without retry — when the report
is not balanced: the gap is the finding; a batch that is not done stays in the source for the next scheduled run.
A ministry service that is away fails the fetch, and Airflow retries it (2 more tries, backoff from 60 s).

A broken source file is left out here; dags/tongban_mapping_errors.py reports it as the import error naming the
file and the rule, while every other DAG keeps loading.
"""
from __future__ import annotations

from airflow.sdk import dag, task

from tongban.scheduling.dag_parts import START, build_each, fail_fast
from tongban.scheduling.flowback_plans import FLOWBACK_RETRIES, FlowbackPlan, discover_flowback
from tongban.scheduling.tasks import run_flowback_task


def build_flowback_dag(plan: FlowbackPlan):
    doc = (f"**{plan.name or plan.source}** — national data flowback (数据回流) by {plan.transport}.\n\n"
           f"Source file: `{plan.path}`. Schedule: `{plan.schedule or 'manual'}`. Fails without retry when a "
           f"batch does not reconcile (`tongban flowback report`).")

    @dag(dag_id=plan.dag_id, schedule=plan.schedule, start_date=START, catchup=False,
         # One run at a time per source: two runs would compete for the same batches.
         max_active_runs=1, default_args=FLOWBACK_RETRIES, tags=["tongban", "flowback"], doc_md=doc,
         description=f"flowback {plan.source} ({plan.transport})"[:200])
    def flowback_dag():
        @task
        def flowback(path: str) -> dict:
            return fail_fast(run_flowback_task, path)

        flowback(str(plan.path))

    return flowback_dag()


def build_all() -> dict[str, object]:
    plans, _errors = discover_flowback()  # the errors are reported by tongban_mapping_errors.py
    return build_each(plans, build_flowback_dag, "flowback source file")


globals().update(build_all())
