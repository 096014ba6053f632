"""Bundle DAGs (一件事一次办, docs/bundles.md): two Airflow chores (tongban.scheduling.dag_parts.chore_dag).

bundles__run      every 10 minutes: fetch new bundle applications, evaluate every open bundle (submit the members
                  that are ready, gather the cases the departments' ingest brought back, push 受理/办结, raise 预警).
ops__bundle_late  hourly: the members past their 承诺时限, per department, in the task log and its result.
"""
from __future__ import annotations

from datetime import timedelta

from tongban.scheduling.common import retry_args
from tongban.scheduling.dag_parts import chore_dag

RETRIES = retry_args(2, timedelta(seconds=60), timedelta(minutes=10))

chore_dag("bundles__run", schedule="*/10 * * * *", task_id="run", call="tongban.bundle.schedule:bundle_run_task",
          retries=RETRIES, tags=["bundles"], permanent_fails=False,
          doc="One scatter-gather run of the bundled applications (tongban bundle run).")

chore_dag("ops__bundle_late", schedule="@hourly", task_id="late_members", call="tongban.bundle.schedule:bundle_late_task",
          retries=RETRIES, tags=["operations", "bundles"], permanent_fails=False,
          doc="Members of bundled applications past their 承诺时限, per department (预警).")
