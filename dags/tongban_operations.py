"""Operations DAGs: the periodic chores around the bus (later issues add theirs here).

ops__replay     every 10 minutes: replays the parked deliveries and quarantined records an operator marked for
                replay (tongban.operator.replay_marks.mark_for_replay), through the same code as `tongban parked replay`.
ops__reconcile  hourly: every delivered event has its signed receipt, and per 实施编码 the platform's case count
                matches the ledger's; fails, listing the gaps, when they differ.
ops__catalog_sync     daily: syncs the unified item catalogue (统一事项标准, tongban.catalog.sync_and_report);
                logs per mapping file the withdrawn 实施编码 it still sends (with their open and quarantined case
                counts) and its other catalogue problems; fails, without retry, while any file has one.
ops__identity_retry   hourly: asks the unified user service (统一用户) again about waiting applicants and
                replays the cases that now resolve (tongban.identity.retry_unresolved); a throttled run
                raises so that Airflow retries it.

None touches the per-message hot path: replay re-publishes to the bus and the bus workers deliver.
"""
from __future__ import annotations

from datetime import timedelta

from tongban.scheduling.common import retry_args
from tongban.scheduling.dag_parts import chore_dag

TASKS = "tongban.scheduling.tasks"
# The platform or the bus being briefly away is worth a retry; a reconciliation gap is not (it is the finding).
OPS_RETRIES = retry_args(2, timedelta(seconds=60), timedelta(minutes=10))
# A catalogue finding is not worth a retry (Permanent); the platform being away is, soon.
CATALOG_RETRIES = retry_args(2, timedelta(seconds=30), timedelta(minutes=5))
# A throttled unified user service asks for patience: the waits grow, but stay inside the hour.
IDENTITY_RETRIES = retry_args(3, timedelta(minutes=2), timedelta(minutes=15))

chore_dag("ops__replay", schedule="*/10 * * * *", task_id="replay_marked", call=f"{TASKS}:replay_task",
          retries=OPS_RETRIES, tags=["operations"],
          doc="Replays parked deliveries and quarantined records marked for replay by an operator.")

chore_dag("ops__reconcile", schedule="@hourly", task_id="reconcile", call=f"{TASKS}:reconcile_task",
          retries=OPS_RETRIES, tags=["operations"],
          doc="Reconciles the ledger with 渝快办: receipts for every delivery, case counts per 实施编码.")

chore_dag("ops__catalog_sync", schedule="@daily", task_id="catalog_sync", call=f"{TASKS}:catalog_sync_task",
          retries=CATALOG_RETRIES, tags=["operations", "catalog"],
          doc="Syncs the unified item catalogue (统一事项标准) and fails while a mapping file sends a withdrawn or "
              "otherwise unfit 实施编码; the log lists each file with its open and quarantined cases.")

chore_dag("ops__identity_retry", schedule="@hourly", task_id="identity_retry", call=f"{TASKS}:identity_retry_task",
          retries=IDENTITY_RETRIES, tags=["operations", "identity"],
          doc="Asks the unified user service (统一用户) again about unknown or ambiguous applicants and replays the "
              "cases waiting for them; retried when the service throttles.")
