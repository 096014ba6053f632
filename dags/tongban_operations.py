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

from airflow.sdk import dag, task

from tongban.scheduling.common import retry_args
from tongban.scheduling.dag_parts import START, fail_fast
from tongban.scheduling.tasks import catalog_sync_task, identity_retry_task, reconcile_task, replay_task

# The platform or the bus being briefly away is worth a retry; a reconciliation gap is not (it is the finding).
OPS_RETRIES = retry_args(2, timedelta(seconds=60), timedelta(minutes=10))


# A catalogue finding is not worth a retry (Permanent); the platform being away is, soon.
CATALOG_RETRIES = retry_args(2, timedelta(seconds=30), timedelta(minutes=5))
# A throttled unified user service asks for patience: the waits grow, but stay inside the hour.
IDENTITY_RETRIES = retry_args(3, timedelta(minutes=2), timedelta(minutes=15))


@dag(dag_id="ops__replay", schedule="*/10 * * * *", start_date=START, catchup=False, max_active_runs=1,
     default_args=OPS_RETRIES, tags=["tongban", "operations"],
     doc_md="Replays parked deliveries and quarantined records marked for replay by an operator.")
def ops_replay():
    @task
    def replay_marked() -> dict:
        return fail_fast(replay_task)

    replay_marked()


@dag(dag_id="ops__reconcile", schedule="@hourly", start_date=START, catchup=False, max_active_runs=1,
     default_args=OPS_RETRIES, tags=["tongban", "operations"],
     doc_md="Reconciles the ledger with 渝快办: receipts for every delivery, case counts per 实施编码.")
def ops_reconcile():
    @task
    def reconcile() -> dict:
        return fail_fast(reconcile_task)

    reconcile()


@dag(dag_id="ops__catalog_sync", schedule="@daily", start_date=START, catchup=False, max_active_runs=1,
     default_args=CATALOG_RETRIES, tags=["tongban", "operations", "catalog"],
     doc_md="Syncs the unified item catalogue (统一事项标准) and fails while a mapping file sends a withdrawn or "
            "otherwise unfit 实施编码; the log lists each file with its open and quarantined cases.")
def ops_catalog_sync():
    @task
    def catalog_sync() -> dict:
        return fail_fast(catalog_sync_task)

    catalog_sync()


@dag(dag_id="ops__identity_retry", schedule="@hourly", start_date=START, catchup=False, max_active_runs=1,
     default_args=IDENTITY_RETRIES, tags=["tongban", "operations", "identity"],
     doc_md="Asks the unified user service (统一用户) again about unknown or ambiguous applicants and replays the "
            "cases waiting for them; retried when the service throttles.")
def ops_identity_retry():
    @task
    def identity_retry() -> dict:
        return fail_fast(identity_retry_task)

    identity_retry()


ops_replay()
ops_reconcile()
ops_catalog_sync()
ops_identity_retry()
