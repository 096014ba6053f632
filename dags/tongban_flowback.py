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

import pendulum
from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException

from tongban.scheduling.common import TIMEZONE, Permanent, log
from tongban.scheduling.flowback_plans import FLOWBACK_RETRIES, FlowbackPlan, discover_flowback
from tongban.scheduling.tasks import run_flowback_task

START = pendulum.datetime(2026, 1, 1, tz=TIMEZONE)


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
            try:
                return run_flowback_task(path)
            except Permanent as exc:
                raise AirflowFailException(str(exc)) from exc

        flowback(str(plan.path))

    return flowback_dag()


def build_all() -> dict[str, object]:
    plans, _errors = discover_flowback()  # the errors are reported by tongban_mapping_errors.py
    dags = {}
    for plan in plans:
        try:
            dags[plan.dag_id] = build_flowback_dag(plan)
        except Exception:
            # flowback_plan_for already checked what Airflow checks; should Airflow still refuse one file, that
            # file alone goes missing and the processor's log names it.
            log.exception("flowback source file %s: Airflow refused its DAG", plan.path)
    return dags


globals().update(build_all())
